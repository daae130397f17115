// SPDX-License-Identifier: MIT
// `shmkit demo`: a short tour of shared memory between processes, printing each step as it
// runs it: a POSIX segment that forked children open by name and write into, a reader child,
// a System V segment, the `ls` view of both, growth seen by a child through refresh(), and
// removal. Every claim it prints is checked; a failed check ends the demo with status 1.
//
// Steps are a table (kSteps) of functions over one Demo, so later layers (arena, locks,
// channels) add a section by adding a function and a row. Everything the demo creates is
// remove_on_close and every child is a Child that is killed and reaped if left running, so
// an error at any step still leaves nothing behind.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "cli.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::cli {
namespace {

// ---- Processes and pipes ----

/// A forked child that runs a function and exits with its result. If it is still running
/// when the Child is destroyed (the parent met an error), it is killed and reaped.
class Child {
 public:
  explicit Child(const std::function<int()>& body) {
    std::fflush(nullptr);  // or the child would print the parent's buffered lines again
    pid_ = ::fork();
    if (pid_ < 0) throw Error(errno, "demo", "fork");
    if (pid_ == 0) {
      int status = 1;
      try {
        status = body();
      } catch (const Error& e) {
        report(e);
      } catch (const std::exception& e) {
        report(e.what());
      }
      std::fflush(nullptr);
      ::_exit(status);  // never run the parent's destructors (they would remove its segments)
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      (void)wait();
    }
  }

  pid_t pid() const { return pid_; }

  /// Waits for the child and returns its exit status (128+N if killed by signal N).
  int wait() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0) {
      if (errno != EINTR) throw Error(errno, fmt::format("child {}", pid_), "wait");
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  /// Waits and throws unless the child exited 0.
  void expect_success() {
    const pid_t pid = pid_;
    if (const int status = wait(); status != 0) {
      throw std::runtime_error(fmt::format("demo: child {} failed with status {}", pid, status));
    }
  }

 private:
  pid_t pid_ = -1;
};

/// A pipe used as a one-byte handshake between parent and child; closes on destruction.
class Pipe {
 public:
  Pipe() {
    if (::pipe(fds_.data()) != 0) throw Error(errno, "demo", "pipe");
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  ~Pipe() {
    close_read();
    close_write();
  }
  void close_read() { close_end(0); }
  void close_write() { close_end(1); }
  void signal() {
    const char c = '!';
    if (::write(fds_[1], &c, 1) != 1) throw Error(errno, "demo", "write pipe");
  }
  /// Returns false when the other side closed without signalling (it failed).
  bool wait() {
    char c = 0;
    ssize_t n;
    while ((n = ::read(fds_[0], &c, 1)) < 0 && errno == EINTR) {
    }
    return n == 1;
  }

 private:
  void close_end(int i) {
    if (fds_[i] >= 0) ::close(fds_[i]);
    fds_[i] = -1;
  }
  std::array<int, 2> fds_{-1, -1};
};

/// Holds SIGINT and SIGTERM back while it lives, so Ctrl-C during the demo takes effect
/// only after everything has been cleaned up (the demo takes well under a second).
class DeferSignals {
 public:
  DeferSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &set_, &old_);
  }
  DeferSignals(const DeferSignals&) = delete;
  DeferSignals& operator=(const DeferSignals&) = delete;
  ~DeferSignals() { ::sigprocmask(SIG_SETMASK, &old_, nullptr); }

 private:
  sigset_t set_{};
  sigset_t old_{};
};

// ---- The demo's shared data ----

constexpr int kWriters = 3;

/// What the writer children fill in: a pid per slot and a greeting. It lives in shared
/// memory, so it is standard-layout with no pointers, and all-zero means "nothing yet".
struct Board {
  std::int32_t pids[kWriters];  ///< written by writer i, read after it exits
  char greeting[52];            ///< NUL-terminated, written by writer 0
};
static_assert(std::is_standard_layout_v<Board> && std::is_trivially_copyable_v<Board>);
static_assert(sizeof(Board) == 64);

struct Demo {
  std::string posix_name;  ///< "/shmkit-demo-<pid>"
  std::string sysv_name;   ///< "sysv:id=N", once created
  Segment posix;
  Segment sysv;
  std::vector<pid_t> writers;
};

/// Prints one line of the tour. Flushed at once, so parent and child lines keep their order.
void say(const std::string& line) {
  fmt::print("    {}\n", line);
  std::fflush(stdout);
}

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("demo: check failed: " + what);
}

// ---- Steps ----

void create_posix(Demo& d) {
  CreateOptions options;
  options.mode = 0600;
  options.remove_on_close = true;  // gone when `d.posix` is, even if a later step throws
  d.posix = Segment::create(d.posix_name, 4096, options);
  say(fmt::format("Segment::create(\"{}\", 4096): {} bytes, committed and zeroed, mode {}",
                  d.posix_name, d.posix.size(), octal_mode(d.posix.stat().mode)));
  say(fmt::format("it is the file /dev/shm{}, mapped here at {}", d.posix_name, d.posix.data()));
}

void children_write(Demo& d) {
  std::vector<std::unique_ptr<Child>> children;
  for (int slot = 0; slot < kWriters; ++slot) {
    children.push_back(std::make_unique<Child>([&d, slot] {
      // A child could use the inherited mapping; opening by name is what unrelated programs do.
      const Segment segment = Segment::open(d.posix_name);
      Board& board = segment.as<Board>();
      board.pids[slot] = ::getpid();
      if (slot == 0) {
        fmt::format_to_n(board.greeting, sizeof board.greeting - 1, "hello from pid {}",
                         ::getpid());
      }
      return 0;
    }));
    d.writers.push_back(children.back()->pid());
  }
  say(fmt::format("started {} children ({})", kWriters, fmt::join(d.writers, ", ")));
  say(fmt::format("each opens {} by name and writes its pid into its own slot", d.posix_name));
  say("the first one also writes a greeting");
  for (auto& child : children) child->expect_success();
  say("all of them exited 0");
}

void child_reads(Demo& d) {
  Child reader([&d] {
    OpenOptions options;
    options.access = Access::read_only;
    const Segment segment = Segment::open(d.posix_name, options);
    const Board& board = segment.as<const Board>();
    fmt::print("    reader child {} opened it read-only and sees:\n", ::getpid());
    for (int slot = 0; slot < kWriters; ++slot) {
      fmt::print("      slot {}: pid {}\n", slot, board.pids[slot]);
    }
    // Bytes from another process are input: print only up to the array's end.
    const std::string_view greeting(board.greeting,
                                    ::strnlen(board.greeting, sizeof board.greeting));
    fmt::print("      greeting: \"{}\"\n", greeting);
    return 0;
  });
  reader.expect_success();

  const Board& board = d.posix.as<const Board>();
  for (int slot = 0; slot < kWriters; ++slot) {
    check(board.pids[slot] == d.writers[static_cast<std::size_t>(slot)], "writer pid in its slot");
  }
  say("the parent's own mapping shows the same bytes");
}

void create_sysv(Demo& d) {
  CreateOptions options;
  options.remove_on_close = true;
  d.sysv = Segment::create("sysv:private", 4096, options);
  d.sysv_name = display_name(d.sysv.stat());
  say("Segment::create(\"sysv:private\", 4096): a new System V segment without a key");
  say(fmt::format("others reach it by its id: {}", d.sysv_name));
  Child writer([&d] {
    const Segment segment = Segment::open(d.sysv_name);
    segment.as<std::uint32_t>() = static_cast<std::uint32_t>(::getpid());
    return 0;
  });
  const pid_t pid = writer.pid();
  writer.expect_success();
  const std::uint32_t word = d.sysv.as<const std::uint32_t>();
  check(word == static_cast<std::uint32_t>(pid), "System V word written by the child");
  say(fmt::format("child {} attached {} and stored its pid in the first word: parent reads {}", pid,
                  d.sysv_name, word));
}

void show_listing(Demo& d) {
  std::vector<SegmentStat> ours;
  const std::int32_t sysv_id = d.sysv.native_handle();
  for (SegmentStat& s : Segment::list()) {
    if ((s.ns == Namespace::posix && s.name == d.posix_name) ||
        (s.ns == Namespace::sysv && s.id == sysv_id)) {
      ours.push_back(std::move(s));
    }
  }
  say("Segment::list(), as `shmkit ls` shows it, narrowed to the demo's two segments:");
  print_table(ours, "    ");
  check(ours.size() == 2, "both demo segments are listed");
}

void grow_and_refresh(Demo& d) {
  constexpr std::size_t kNewSize = 64 * 1024;
  Pipe opened;
  Pipe grown;
  Child child([&] {
    opened.close_read();
    grown.close_write();
    Segment segment = Segment::open(d.posix_name);
    say(fmt::format("child {} opened it: it maps {} bytes", ::getpid(), segment.size()));
    opened.signal();
    if (!grown.wait()) return 1;
    const bool changed = segment.refresh();
    say(fmt::format("child {}: refresh() -> {}, it now maps {} bytes", ::getpid(), changed,
                    segment.size()));
    segment.as_span<std::uint32_t>().back() = 0xc0ffee;
    return 0;
  });
  opened.close_write();
  grown.close_read();

  check(opened.wait(), "child opened the segment");
  d.posix.grow(kNewSize);
  say(fmt::format("parent: grow({}) commits the new pages and remaps: now {} bytes", kNewSize,
                  d.posix.size()));
  grown.signal();
  child.expect_success();
  const std::uint32_t last = d.posix.as_span<const std::uint32_t>().back();
  check(last == 0xc0ffee, "child's store into the grown part");
  say(fmt::format("parent reads 0x{:x} at offset {}, written by the child into the new part", last,
                  kNewSize - 4));
}

void remove_all(Demo& d) {
  // Removed by hand here to show it; remove_on_close stays as the net for the error paths.
  d.sysv.set_remove_on_close(false);
  d.sysv.remove();
  const SegmentStat dying = Segment::stat(d.sysv_name);
  say(fmt::format("remove() on {} while still attached: status {}, nattch {}", d.sysv_name,
                  dying.removed ? "dest" : "not dest", dying.attach_count.value_or(0)));
  d.sysv.close();
  say("close(): the last detach, so the kernel destroys it");

  d.posix.close();
  say(fmt::format("close() on {}: unmapped, and removed because of remove_on_close", d.posix_name));
  try {
    (void)Segment::stat(d.posix_name);
    check(false, "the POSIX segment is gone");
  } catch (const Error& e) {
    check(e.errnum() == ENOENT, "stat of a removed segment says ENOENT");
    say(fmt::format("Segment::stat(\"{}\") now throws: {}", d.posix_name, e.what()));
  }
  const auto left = Segment::list();
  const bool any = std::any_of(left.begin(), left.end(), [&](const SegmentStat& s) {
    return s.name == d.posix_name || display_name(s) == d.sysv_name;
  });
  check(!any, "nothing of the demo is listed any more");
  say("Segment::list(): none of the demo's segments is left");
}

struct Step {
  const char* title;
  void (*run)(Demo&);
};

constexpr std::array kSteps = {
    Step{"create a POSIX shared-memory segment", create_posix},
    Step{"child processes write into it", children_write},
    Step{"another child reads what they wrote", child_reads},
    Step{"System V works the same way", create_sysv},
    Step{"list what exists", show_listing},
    Step{"grow the POSIX segment; a child sees it with refresh()", grow_and_refresh},
    Step{"remove everything", remove_all},
};

}  // namespace

int cmd_demo(const DemoArgs&) {
  const DeferSignals defer;  // declared first: destroyed after `demo` has removed everything
  Demo demo;
  demo.posix_name = fmt::format("/shmkit-demo-{}", ::getpid());
  fmt::print("shmkit demo (pid {}): shared memory between processes, step by step\n", ::getpid());
  for (std::size_t i = 0; i < kSteps.size(); ++i) {
    fmt::print("\n[{}/{}] {}\n", i + 1, kSteps.size(), kSteps[i].title);
    kSteps[i].run(demo);
  }
  fmt::print("\ndone: everything the demo created is gone\n");
  return 0;
}

}  // namespace shmkit::cli
