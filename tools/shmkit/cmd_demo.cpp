// SPDX-License-Identifier: MIT
// `shmkit demo`: a short tour of shared memory between processes, printing each step as it
// runs it: a POSIX segment that forked children open by name and write into, a reader child,
// a System V segment, the `ls` view of both, growth seen by a child through refresh(), an
// arena that children join to allocate, name and free blocks, and removal. Every claim it
// prints is checked; a failed check ends the demo with status 1.
//
// Steps are a table (kSteps) of functions over one Demo, so later layers (arena, locks,
// channels) add a section by adding a function and a row. Everything the demo creates is
// remove_on_close (the arena: held by an ArenaRemover) and every child is a Child that is
// killed and reaped if left running, so an error at any step still leaves nothing behind.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
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
#include "shmkit/arena.hpp"
#include "shmkit/channel/queue.hpp"
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
  std::string arena_name;  ///< "/shmkit-demo-<pid>-arena"
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
  std::vector<Entry> ours;
  const std::int32_t sysv_id = d.sysv.native_handle();
  for (Entry& e : list_entries()) {
    const SegmentStat& s = e.stat;
    if ((s.ns == Namespace::posix && s.name == d.posix_name) ||
        (s.ns == Namespace::sysv && s.id == sysv_id)) {
      ours.push_back(std::move(e));
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

// ---- The arena step ----

/// A named object in the demo's arena. Child i allocates a greeting and publishes its offset
/// here (offsets, not pointers: the arena may sit at another address in each process).
struct Greetings {
  std::uint64_t offsets[kWriters];  ///< written by child i (release) before it signals
  std::int32_t pids[kWriters];      ///< written by child i
  std::int32_t freed_by;            ///< the child that freed child 0's spare block
  std::uint64_t freed_offset;       ///< where that block was
};
static_assert(std::is_standard_layout_v<Greetings> && std::is_trivially_copyable_v<Greetings>);

constexpr std::size_t kGreetingBytes = 64;
constexpr std::size_t kSpareBytes = 1000;

/// Removes the arena's name when destroyed, unless disarmed: the arena counterpart of
/// remove_on_close, so a failed check leaves nothing behind.
class ArenaRemover {
 public:
  explicit ArenaRemover(std::string name) : name_(std::move(name)) {}
  ArenaRemover(const ArenaRemover&) = delete;
  ArenaRemover& operator=(const ArenaRemover&) = delete;
  ~ArenaRemover() {
    std::error_code ignored;
    if (armed_) Segment::remove(name_, ignored);
  }
  void disarm() { armed_ = false; }

 private:
  std::string name_;
  bool armed_ = true;
};

/// What child `slot` does: join by name, allocate and publish a greeting; child 0 also puts a
/// spare block in the root datum, which child 2 frees once the parent says go.
int arena_child(const std::string& name, int slot, Pipe& ready, Pipe& go) {
  ready.close_read();
  go.close_write();
  Arena arena = Arena::open(name);
  auto* greetings = arena.find<Greetings>("greetings");
  if (greetings == nullptr) return 1;
  auto* text = static_cast<char*>(arena.allocate(kGreetingBytes));
  const auto end =
      fmt::format_to_n(text, kGreetingBytes - 1, "hello from child {}, pid {}", slot, ::getpid());
  *end.out = '\0';
  greetings->pids[slot] = ::getpid();
  std::atomic_ref(greetings->offsets[slot]).store(arena.offset_of(text), std::memory_order_release);
  if (slot == 0) arena.set_root(arena.allocate_zeroed(kSpareBytes));
  ready.signal();
  (void)go.wait();  // the parent closes its end: go on
  if (slot == kWriters - 1) {
    void* spare = arena.root();  // child 0 set it before the parent said go
    if (spare == nullptr) return 1;
    greetings->freed_offset = arena.offset_of(spare);
    arena.set_root(nullptr);
    arena.deallocate(spare);  // a block another process allocated
    greetings->freed_by = ::getpid();
  }
  return 0;  // `arena` closes here: the child leaves the users' table
}

void share_an_arena(Demo& d) {
  ArenaConfig config;
  config.size = 256 * 1024;
  config.max_size = 4 << 20;
  config.max_users = 8;
  ArenaRemover remover(d.arena_name);
  Arena arena = Arena::create(d.arena_name, config, [](Arena& a) {
    a.construct<Greetings>("greetings");  // runs once, before anyone else can join
  });
  say(fmt::format("Arena::create(\"{}\"): {} committed, may grow to {}, room for {} users",
                  d.arena_name, human_size(arena.size()), human_size(arena.max_size()),
                  config.max_users));
  say("its initialiser constructed a Greetings object named \"greetings\" in it");
  const std::size_t initial_size = arena.size();

  Pipe ready;
  Pipe go;
  std::vector<std::unique_ptr<Child>> children;
  std::vector<pid_t> pids;
  for (int slot = 0; slot < kWriters; ++slot) {
    children.push_back(std::make_unique<Child>(
        [&d, slot, &ready, &go] { return arena_child(d.arena_name, slot, ready, go); }));
    pids.push_back(children.back()->pid());
  }
  ready.close_write();
  go.close_read();
  say(fmt::format("started {} children ({}); each joins with Arena::open(name),", kWriters,
                  fmt::join(pids, ", ")));
  say(fmt::format("allocates {} bytes, writes a greeting there and stores its offset in",
                  kGreetingBytes));
  say("greetings.offsets[slot], a named object it found with find<Greetings>(\"greetings\")");
  say(fmt::format("child 0 also allocates {} bytes and puts them in the root datum", kSpareBytes));
  for (int i = 0; i < kWriters; ++i) check(ready.wait(), "child joined the arena and wrote");

  const std::vector<ArenaUser> users = arena.users();
  const bool all_alive =
      std::all_of(users.begin(), users.end(), [](const ArenaUser& u) { return u.alive; });
  check(users.size() == kWriters + 1 && all_alive, "the parent and the children are users");
  say(fmt::format("while the children wait, Arena::users() lists {} users, all alive",
                  users.size()));
  std::vector<Entry> row;
  for (Entry& e : list_entries()) {
    if (e.stat.name == d.arena_name) row.push_back(std::move(e));
  }
  check(row.size() == 1 && row[0].arena.has_value(), "`ls` sees the arena");
  say("and `shmkit ls` shows it as an arena:");
  print_table(row, "    ");

  go.close_write();
  for (auto& child : children) child->expect_success();
  say("parent closed the pipe: child 2 freed child 0's block, and all of them exited 0");

  auto* greetings = arena.find<Greetings>("greetings");
  check(greetings != nullptr, "the named object is there");
  for (int slot = 0; slot < kWriters; ++slot) {
    const std::uint64_t offset =
        std::atomic_ref(greetings->offsets[slot]).load(std::memory_order_acquire);
    const auto* text = static_cast<const char*>(arena.at(offset));
    check(text != nullptr && greetings->pids[slot] == pids[static_cast<std::size_t>(slot)],
          "each child published its greeting");
    // Bytes from another process are input: read no further than the block.
    const std::string_view greeting(text, ::strnlen(text, kGreetingBytes));
    say(fmt::format("greetings.offsets[{}] = 0x{:x}: \"{}\"", slot, offset, greeting));
  }
  check(arena.root() == nullptr && greetings->freed_by == pids.back(), "child 2 freed the block");
  say(fmt::format(
      "child {} freed the {}-byte block at 0x{:x} that child {} allocated; root is null",
      greetings->freed_by, kSpareBytes, greetings->freed_offset, pids.front()));

  const ArenaStats stats = arena.stats();
  check(stats.users == 1, "the children left the users' table when they closed the arena");
  say(fmt::format(
      "Arena::stats(): {} in use, {} free of {}{}", human_size(stats.in_use),
      human_size(stats.free), human_size(stats.size),
      stats.size > initial_size ? " (it grew as each process's heap took frames)" : ""));
  say(fmt::format("{} user left: the children left the users' table when their Arena closed",
                  stats.users));
  const std::string problem = arena.check();
  check(problem.empty(), "Arena::check() finds nothing wrong: " + problem);
  say("Arena::check() walks every span and free list: ok");

  for (const std::uint64_t offset : greetings->offsets) arena.deallocate(arena.at(offset));
  check(arena.destroy<Greetings>("greetings"), "the named object is destroyed");
  arena.close();
  Arena::remove(d.arena_name);
  remover.disarm();
  check(!Arena::is_arena(d.arena_name), "the arena is gone");
  say(fmt::format("freed the greetings, destroyed \"greetings\", closed and removed {}",
                  d.arena_name));
}

// What the queue's consumers report: messages each released, in a segment they share.
struct Tally {
  std::atomic<std::uint64_t> released[2];
};
static_assert(std::is_standard_layout_v<Tally> && sizeof(Tally) == 16);

constexpr std::uint64_t kMessages = 20000;
constexpr std::uint64_t kDieAfter = 100;  // the first consumer dies holding message 101

int queue_consumer(Queue& jobs, Tally& tally, int which) {
  jobs.join(Role::consumer);  // this child's own registration, seen by the others
  std::uint64_t released = 0;
  while (const ChannelBase::View msg = jobs.receive()) {
    if (which == 0 && released == kDieAfter) ::raise(SIGKILL);  // dies holding a message
    jobs.release();
    tally.released[which].store(++released, std::memory_order_relaxed);
  }
  return jobs.closed() ? 0 : 1;  // it ends because the producer left and the queue is empty
}

void send_numbers(Queue& jobs, std::uint64_t first, std::uint64_t last) {
  for (std::uint64_t i = first; i <= last; ++i) {
    std::span<std::byte> slot = jobs.loan();  // waits while the queue is full
    std::memcpy(slot.data(), &i, sizeof i);
    jobs.publish(sizeof i);
  }
}

void pass_messages(Demo& d) {
  const std::string name = d.posix_name + "-jobs";
  CreateOptions options;
  options.remove_on_close = true;
  Queue jobs = Queue::create(name, {.slot_size = 64, .capacity = 64, .max_peers = 4},
                             Role::none, options);
  Segment shared = Segment::create_anonymous(sizeof(Tally));
  Tally& tally = shared.as<Tally>();
  say(fmt::format("Queue::create(\"{}\"): 64 slots of 64 bytes, a consumer child joins it",
                  name));
  Child doomed([&jobs, &tally] { return queue_consumer(jobs, tally, 0); });
  jobs.join(Role::producer);
  send_numbers(jobs, 1, kDieAfter + 1);  // loan a slot, write in place, publish
  check(doomed.wait() == 128 + SIGKILL, "the first consumer was killed");
  say(fmt::format("it received {} messages, took one more and was SIGKILLed before releasing it",
                  tally.released[0].load()));
  Child survivor([&jobs, &tally] { return queue_consumer(jobs, tally, 1); });
  send_numbers(jobs, kDieAfter + 2, kMessages);
  jobs.leave();
  survivor.expect_success();
  const ChannelStats stats = jobs.stats();
  const std::uint64_t got = tally.released[1].load(), dead = tally.released[0].load();
  check(stats.peer_deaths == 1 && stats.lost == 1, "the death was found and its message counted");
  check(got + dead + stats.lost == kMessages, "every other message was received once");
  say(fmt::format("a second consumer joined; the parent went on to send {} messages in all",
                  kMessages));
  say("when the queue came round to the slot the dead one held, a waiting peer found it");
  say(fmt::format("dead and freed the slot: stats(): {} peer death, {} message lost",
                  stats.peer_deaths, stats.lost));
  say(fmt::format("the second consumer received the other {}, then saw closed() once the "
                  "parent left and exited 0",
                  got));
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
    return s.name == d.posix_name || s.name == d.arena_name || display_name(s) == d.sysv_name;
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
    Step{"processes share an arena: allocate, name, pass offsets, free each other's blocks",
         share_an_arena},
    Step{"processes pass messages through a queue; one dies holding one; nobody hangs",
         pass_messages},
    Step{"remove everything", remove_all},
};

}  // namespace

int cmd_demo(const DemoArgs&) {
  const DeferSignals defer;  // declared first: destroyed after `demo` has removed everything
  Demo demo;
  demo.posix_name = fmt::format("/shmkit-demo-{}", ::getpid());
  demo.arena_name = demo.posix_name + "-arena";
  fmt::print("shmkit demo (pid {}): shared memory between processes, step by step\n", ::getpid());
  for (std::size_t i = 0; i < kSteps.size(); ++i) {
    fmt::print("\n[{}/{}] {}\n", i + 1, kSteps.size(), kSteps[i].title);
    kSteps[i].run(demo);
  }
  fmt::print("\ndone: everything the demo created is gone\n");
  return 0;
}

}  // namespace shmkit::cli
