// SPDX-License-Identifier: MIT
// Runs each example program as a real process (fork + exec, stdin/stdout/stderr on pipes) and
// checks what its seed promises: exit statuses, the first word passed between runs, a waiting
// reader seeing a writer, text persisting in a System V segment. Every object gets a unique
// shmkit-test-<pid>-… name and a Remover, so a failing test leaves nothing behind.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "shmkit/error.hpp"
#include "shmkit/segment.hpp"
#include "test_support.hpp"

extern char** environ;

namespace shmkit {
namespace {

using test::Remover;
using test::unique_name;
using test::unique_sysv_key;
using namespace std::chrono_literals;

constexpr const char* kShmOpen = SHM_OPEN_EXAMPLE_PATH;
constexpr const char* kShmget = SHMGET_EXAMPLE_PATH;
constexpr const char* kShmat = SHMAT_EXAMPLE_PATH;
constexpr const char* kShmdemo = SHMDEMO_PATH;
constexpr const char* kOpenShm = OPEN_SHM_PATH;
constexpr const char* kSharedStruct = SHARED_STRUCT_PATH;

// ---- Running a program ----

struct Output {
  pid_t pid = -1;
  int status = -1;  // as waitpid gives it
  std::string out, err;
  int exit() const { return test::exit_code(status); }
};

// A running program with its stdin, stdout and stderr on pipes.
class Process {
 public:
  Process(const char* path, const std::vector<std::string>& args,
          const std::vector<std::string>& env = {}) {
    ::signal(SIGPIPE, SIG_IGN);  // a child that exits early must not kill the test
    std::vector<char*> argv{const_cast<char*>(path)};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;  // extras first: getenv finds the first match
    for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
    envp.push_back(nullptr);

    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 ||
        ::pipe2(err, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2: " << std::strerror(errno);
      return;
    }
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      ::execve(path, argv.data(), envp.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    in_ = in[1];
    out_ = out[0];
    err_ = err[0];
    if (pid_ < 0) ADD_FAILURE() << "fork: " << std::strerror(errno);
  }

  ~Process() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    for (int fd : {in_, out_, err_}) {
      if (fd >= 0) ::close(fd);
    }
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }

  // Reads stdout until it contains `marker`; false on timeout or end of output.
  bool read_until(std::string_view marker, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out_text_.find(marker) == std::string::npos) {
      if (out_ < 0 || std::chrono::steady_clock::now() >= deadline) return false;
      pump(100);
    }
    return true;
  }

  void send(std::string_view text) {
    if (in_ < 0) return;
    EXPECT_EQ(::write(in_, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  }

  // Closes stdin, collects all output and the exit status; kills the program on timeout.
  Output finish(std::chrono::milliseconds timeout = 20s) {
    if (in_ >= 0) ::close(in_);
    in_ = -1;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while ((out_ >= 0 || err_ >= 0) && std::chrono::steady_clock::now() < deadline) pump(100);
    if (out_ >= 0 || err_ >= 0) {
      ADD_FAILURE() << "timed out; killing pid " << pid_;
      ::kill(pid_, SIGKILL);
    }
    Output o{.pid = pid_, .out = out_text_, .err = err_text_};
    while (pid_ > 0 && ::waitpid(pid_, &o.status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    return o;
  }

 private:
  void pump(int timeout_ms) {
    pollfd fds[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
    if (::poll(fds, 2, timeout_ms) <= 0) return;
    drain(fds[0], out_, out_text_);
    drain(fds[1], err_, err_text_);
  }
  static void drain(const pollfd& p, int& fd, std::string& text) {
    if (fd < 0 || p.revents == 0) return;
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      text.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      ::close(fd);
      fd = -1;
    }
  }

  pid_t pid_ = -1;
  bool reaped_ = false;
  int in_ = -1, out_ = -1, err_ = -1;
  std::string out_text_, err_text_;
};

Output run(const char* path, const std::vector<std::string>& args,
           const std::vector<std::string>& env = {}) {
  return Process(path, args, env).finish();
}

// ---- Checking output ----

std::string hex(long value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%lx", value);
  return buf;
}

bool has(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// Error messages are one line: "<program>: <Error::what()>".
void expect_one_line_error(const Output& o, std::string_view part) {
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << o.err;
  EXPECT_TRUE(has(o.err, part)) << o.err;
}

// The number printed after `label` in `text` (base 0: decimal or 0x hex), or -1.
long number_after(const std::string& text, std::string_view label) {
  const std::size_t at = text.find(label);
  if (at == std::string::npos) return -1;
  return std::strtol(text.c_str() + at + label.size(), nullptr, 0);
}

// The System V key of a "sysv:0x…" name, as the examples' -k option takes it.
std::string key_of(const std::string& sysv_name) { return sysv_name.substr(5); }

std::int32_t first_word_of(const std::string& name) {
  const Segment segment = Segment::open(name, {.access = Access::read_only});
  return segment.as<const std::int32_t>();
}

// ---- shm_open_example (seed 001, Example 3-1) ----

TEST(ShmOpenExample, MissingPathSaysSegmentPathnameRequired) {
  const Output o = run(kShmOpen, {"-c"});
  EXPECT_NE(o.exit(), 0);
  expect_one_line_error(o, "Segment pathname required");
}

TEST(ShmOpenExample, SecondExclusiveCreateFailsWithEexist) {
  const std::string name = unique_name("/", "shm-open");
  Remover remover(name);
  const Output first = run(kShmOpen, {"-c", "-x", "-p", "0640", "-s", "0x8000", name});
  ASSERT_EQ(first.exit(), 0) << first.err;
  EXPECT_TRUE(has(first.out, "first word = 0x0\n")) << first.out;
  EXPECT_TRUE(has(first.out, "Set first word to " + hex(first.pid) + "\n")) << first.out;
  const SegmentStat stat = Segment::stat(name);
  EXPECT_EQ(stat.mode, 0640u);
  EXPECT_EQ(stat.size, 0x8000u);

  const Output second = run(kShmOpen, {"-c", "-x", name});
  EXPECT_EQ(second.exit(), EEXIST);
  expect_one_line_error(second, name);
  EXPECT_EQ(first_word_of(name), first.pid);
}

TEST(ShmOpenExample, OpenMissingFailsWithEnoent) {
  const std::string name = unique_name("/", "missing");
  Remover remover(name);
  const Output o = run(kShmOpen, {name});
  EXPECT_EQ(o.exit(), ENOENT);
  expect_one_line_error(o, name);
}

TEST(ShmOpenExample, ReadOnlyRunLeavesTheFirstWordAlone) {
  const std::string name = unique_name("/", "read-only");
  Remover remover(name);
  const Output creator = run(kShmOpen, {"-c", "-r", name});  // creates, then maps read-only
  ASSERT_EQ(creator.exit(), 0) << creator.err;
  EXPECT_TRUE(has(creator.out, "first word = 0x0\n")) << creator.out;
  EXPECT_FALSE(has(creator.out, "Set first word")) << creator.out;
  const Output writer = run(kShmOpen, {"-c", name});  // open_or_create finds it
  ASSERT_EQ(writer.exit(), 0) << writer.err;
  const Output reader = run(kShmOpen, {"-r", name});
  ASSERT_EQ(reader.exit(), 0) << reader.err;
  EXPECT_TRUE(has(reader.out, "first word = " + hex(writer.pid) + "\n")) << reader.out;
  EXPECT_FALSE(has(reader.out, "Set first word")) << reader.out;
  EXPECT_EQ(first_word_of(name), writer.pid);
}

TEST(ShmOpenExample, WaitingReaderSeesTheWritersPidAfterEnter) {
  const std::string name = unique_name("/", "wait");
  Remover remover(name);
  ASSERT_EQ(run(kShmOpen, {"-c", "-x", name}).exit(), 0);
  Process reader(kShmOpen, {"-r", "-w", name});
  ASSERT_TRUE(reader.read_until("Waiting for return key before unmapping..."));
  const Output writer = run(kShmOpen, {name});
  ASSERT_EQ(writer.exit(), 0) << writer.err;
  reader.send("\n");
  const Output o = reader.finish();
  EXPECT_EQ(o.exit(), 0) << o.err;
  EXPECT_TRUE(has(o.out, "First word is now " + hex(writer.pid) + "\n")) << o.out;
}

TEST(ShmOpenExample, FileNamesAndTruncateWork) {
  const std::string name = unique_name("file:/tmp/", "shm-open");
  Remover remover(name);
  const Output first = run(kShmOpen, {"-c", "-s", "4096", name});
  ASSERT_EQ(first.exit(), 0) << first.err;
  const Output second = run(kShmOpen, {name});
  ASSERT_EQ(second.exit(), 0) << second.err;
  EXPECT_TRUE(has(second.out, "first word = " + hex(first.pid) + "\n")) << second.out;
  const Output truncated = run(kShmOpen, {"-c", "-t", "-s", "4096", name});
  ASSERT_EQ(truncated.exit(), 0) << truncated.err;
  EXPECT_TRUE(has(truncated.out, "first word = 0x0\n")) << truncated.out;
  EXPECT_EQ(run(kShmOpen, {"-t", name}).exit(), EINVAL);  // -t needs -c
}

// ---- shmget_example (Example 3-5) and shmat_example (Example 3-6) ----

TEST(ShmgetExample, CreatesByKeyAndReportsOwnerAndCreator) {
  const std::string name = unique_sysv_key();
  Remover remover(name);
  const Output o = run(kShmget, {"-k", key_of(name), "-s", "4096", "-p", "0640", "-c", "-x"});
  ASSERT_EQ(o.exit(), 0) << o.err;
  const long shmid = number_after(o.out, "shmid = ");
  EXPECT_TRUE(has(o.out, "(" + hex(shmid) + ")\n")) << o.out;
  const std::string ids = std::to_string(::getuid()) + "/" + std::to_string(::getgid()) + "\n";
  EXPECT_TRUE(has(o.out, "owner uid/gid: " + ids)) << o.out;
  EXPECT_TRUE(has(o.out, "creator uid/gid: " + ids)) << o.out;
  const SegmentStat stat = Segment::stat(name);
  EXPECT_EQ(stat.id, shmid);
  EXPECT_EQ(stat.mode, 0640u);

  const Output again = run(kShmget, {"-k", key_of(name), "-c", "-x"});
  EXPECT_EQ(again.exit(), EEXIST);
  expect_one_line_error(again, std::strerror(EEXIST));
  const Output found = run(kShmget, {"-k", key_of(name), "-s", "4096"});
  ASSERT_EQ(found.exit(), 0) << found.err;
  EXPECT_EQ(number_after(found.out, "shmid = "), shmid);
}

TEST(ShmgetExample, PrivateKeyMakesANewSegmentEachRun) {
  const Output a = run(kShmget, {"-s", "4096"});
  const Output b = run(kShmget, {"-s", "4096"});
  const long id_a = number_after(a.out, "shmid = "), id_b = number_after(b.out, "shmid = ");
  std::unique_ptr<Remover> remove_a, remove_b;
  if (id_a >= 0) remove_a = std::make_unique<Remover>("sysv:id=" + std::to_string(id_a));
  if (id_b >= 0) remove_b = std::make_unique<Remover>("sysv:id=" + std::to_string(id_b));
  ASSERT_EQ(a.exit(), 0) << a.err;
  ASSERT_EQ(b.exit(), 0) << b.err;
  EXPECT_GE(id_a, 0);
  EXPECT_NE(id_a, id_b);
}

TEST(ShmatExample, EachRunShowsThePreviousRunsPid) {
  const std::string name = unique_sysv_key();
  Remover remover(name);
  const int shmid = Segment::create(name, 4096).native_handle();
  const Output first = run(kShmat, {"-k", key_of(name)});
  ASSERT_EQ(first.exit(), 0) << first.err;
  EXPECT_TRUE(has(first.out, "first word = 0x0\n")) << first.out;
  EXPECT_TRUE(has(first.out, "Set first word to " + hex(first.pid) + "\n")) << first.out;
  const Output second = run(kShmat, {"-i", std::to_string(shmid)});
  ASSERT_EQ(second.exit(), 0) << second.err;
  EXPECT_TRUE(has(second.out, "first word = " + hex(first.pid) + "\n")) << second.out;
  const Output reader = run(kShmat, {"-r", "-i", std::to_string(shmid)});
  ASSERT_EQ(reader.exit(), 0) << reader.err;
  EXPECT_TRUE(has(reader.out, "first word = " + hex(second.pid) + "\n")) << reader.out;
  EXPECT_FALSE(has(reader.out, "Set first word")) << reader.out;
  EXPECT_EQ(first_word_of(name), second.pid);
}

TEST(ShmatExample, AttachesAtTheRequestedAddress) {
  const std::string name = unique_sysv_key();
  Remover remover(name);
  (void)Segment::create(name, 4096);
  const Output first = run(kShmat, {"-r", "-k", key_of(name)});
  ASSERT_EQ(first.exit(), 0) << first.err;
  const long address = number_after(first.out, "Attached at ");
  ASSERT_GT(address, 0) << first.out;
  // Another process's layout is randomised differently, so this address is free there.
  const Output second = run(kShmat, {"-r", "-a", hex(address), "-k", key_of(name)});
  ASSERT_EQ(second.exit(), 0) << second.err;
  EXPECT_TRUE(has(second.out, "Attached at " + hex(address) + ",")) << second.out;
}

TEST(ShmatExample, MissingKeyFailsWithEnoent) {
  const std::string name = unique_sysv_key();
  Remover remover(name);
  const Output o = run(kShmat, {"-k", key_of(name)});
  EXPECT_EQ(o.exit(), ENOENT);
  expect_one_line_error(o, std::strerror(ENOENT));
  EXPECT_EQ(run(kShmat, {"-r"}).exit(), EINVAL);  // neither -k nor -i
}

// ---- shmdemo (seed 003) ----

// A file for ftok that outlives the Remover declared after it.
struct KeyFile {
  std::string path = unique_name("/tmp/", "shmdemo-key");
  KeyFile() { std::ofstream(path) << "ftok needs an existing file\n"; }
  ~KeyFile() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
};

TEST(Shmdemo, WriteThenReadShowsTheTextThenRemoveDeletesIt) {
  const KeyFile key_file;
  Remover remover("sysv:@" + key_file.path + ":82");  // ftok(file, 'R')
  const std::vector<std::string> env{"SHMDEMO_KEYFILE=" + key_file.path};
  const Output w = run(kShmdemo, {"Hello, shared memory!"}, env);
  ASSERT_EQ(w.exit(), 0) << w.err;
  EXPECT_EQ(w.out, "writing to segment: \"Hello, shared memory!\"\n");
  const SegmentStat stat = Segment::stat(remover.name());
  EXPECT_EQ(stat.mode, 0644u);
  EXPECT_EQ(stat.size, 1024u);

  const Output r = run(kShmdemo, {}, env);
  ASSERT_EQ(r.exit(), 0) << r.err;
  EXPECT_EQ(r.out, "segment contains: \"Hello, shared memory!\"\n");

  const Output rm = run(kShmdemo, {"--remove"}, env);
  ASSERT_EQ(rm.exit(), 0) << rm.err;
  EXPECT_THROW((void)Segment::stat(remover.name()), Error);
  EXPECT_EQ(run(kShmdemo, {"--remove"}, env).exit(), 1);
}

// ---- open_shm (seed 000) ----

TEST(OpenShm, WritesGrowsAndReadsBackThenRemoves) {
  const std::string name = unique_name("/", "open-shm");
  Remover remover(name);
  const Output o = run(kOpenShm, {name, "some text"});
  ASSERT_EQ(o.exit(), 0) << o.err;
  std::string expected = "wrote \"some text\" to " + name + " (4096 bytes)\n";
  expected += "grew " + name + " to 65536 bytes; it still holds \"some text\"\n";
  expected += "read \"some text\" from " + name + " (65536 bytes, read-only)\n";
  expected += "removed " + name + "\n";
  EXPECT_EQ(o.out, expected);
  EXPECT_THROW((void)Segment::stat(name), Error);
}

TEST(OpenShm, KeptSegmentIsReadByAnotherProcess) {
  const std::string name = unique_name("/", "open-shm");
  Remover remover(name);
  ASSERT_EQ(run(kOpenShm, {"-k", name, "kept"}).exit(), 0);
  const Output r = run(kOpenShm, {"-r", name});
  ASSERT_EQ(r.exit(), 0) << r.err;
  EXPECT_EQ(r.out, "read \"kept\" from " + name + " (65536 bytes)\n");
  EXPECT_EQ(run(kOpenShm, {"-r", unique_name("/", "missing")}).exit(), 1);
}

// ---- shared_struct (seed 004) ----

TEST(SharedStruct, CreatorInitialisesOthersWriteAndRead) {
  const std::string name = unique_sysv_key();
  Remover remover(name);
  const Output created = run(kSharedStruct, {"-n", name, "create"});
  ASSERT_EQ(created.exit(), 0) << created.err;
  EXPECT_EQ(Segment::stat(name).mode, 0600u);
  const Output again = run(kSharedStruct, {"-n", name, "create"});
  EXPECT_EQ(again.exit(), EEXIST);
  expect_one_line_error(again, std::strerror(EEXIST));

  const Output empty = run(kSharedStruct, {"-n", name, "read"});
  ASSERT_EQ(empty.exit(), 0) << empty.err;
  EXPECT_EQ(empty.out, "id = 0, pid = 0, buf = \"\"\n");
  const Output w = run(kSharedStruct, {"-n", name, "write", "a system call"});
  ASSERT_EQ(w.exit(), 0) << w.err;
  const Output r = run(kSharedStruct, {"-n", name, "read"});
  ASSERT_EQ(r.exit(), 0) << r.err;
  EXPECT_EQ(r.out, "id = 1, pid = " + std::to_string(w.pid) + ", buf = \"a system call\"\n");

  ASSERT_EQ(run(kSharedStruct, {"-n", name, "remove"}).exit(), 0);
  EXPECT_THROW((void)Segment::stat(name), Error);
}

TEST(SharedStruct, TypedViewRefusesASegmentSmallerThanTheStruct) {
  const std::string name = unique_name("/", "small");
  Remover remover(name);
  (void)Segment::create(name, 64);  // a peer that disagrees on the layout
  for (const char* command : {"read", "write"}) {
    std::vector<std::string> args{"-n", name, command};
    if (std::string_view(command) == "write") args.push_back("text");
    const Output o = run(kSharedStruct, args);
    EXPECT_EQ(o.exit(), EINVAL) << command;
    expect_one_line_error(o, name);
  }
}

}  // namespace
}  // namespace shmkit
