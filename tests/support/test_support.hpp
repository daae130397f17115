// SPDX-License-Identifier: MIT
// Helpers every test uses: unique object names and RAII removers, so a failing test leaves
// nothing behind, and running a function in a child process.
#pragma once

#include <atomic>
#include <csignal>
#include <cstddef>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "shmkit/barrier.hpp"
#include "shmkit/mutex.hpp"

namespace shmkit {

/// Lets gtest print lock and barrier outcomes by name ("owner_died", not "1-byte object").
void PrintTo(LockStatus status, std::ostream* os);
void PrintTo(BarrierStatus status, std::ostream* os);

}  // namespace shmkit

namespace shmkit::test {

/// Returns a name no other test run uses: "<prefix>shmkit-test-<pid>-<n>-<tag>", e.g.
/// unique_name("/", "seg") -> "/shmkit-test-4242-3-seg". `prefix` is "/", "file:/tmp/" …
std::string unique_name(const std::string& prefix, const std::string& tag);

/// Returns an unused System V key name "sysv:0x...." derived from the pid and a counter.
std::string unique_sysv_key();

/// Removes the named segment (any namespace) when destroyed, ignoring "already gone".
class Remover {
 public:
  explicit Remover(std::string name) : name_(std::move(name)) {}
  ~Remover();
  Remover(const Remover&) = delete;
  Remover& operator=(const Remover&) = delete;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};

/// Runs `body` in a forked child and returns its wait status (as waitpid gives it). The child
/// exits with body's return value; an exception in the child exits 99 after printing it.
int run_in_child(const std::function<int()>& body);

/// Decodes a wait status: exit code, or 128+signal for a killed child.
int exit_code(int wait_status);

/// Starts `body` in a forked child without waiting (as run_in_child) and returns its pid,
/// or -1 if fork failed. Collect it with wait_child().
int start_child(const std::function<int()>& body);

/// Waits for a child started by start_child() and returns its wait status (-1 on error).
int wait_child(int pid);

/// The child processes of one test. Each child dies with the test process (PR_SET_PDEATHSIG)
/// and by SIGALRM after its time limit, so a library bug that hangs it fails the test instead
/// of hanging CI; whatever has not been reaped when the object is destroyed (an assertion
/// returned early) is SIGKILLed and reaped, so no process outlives its test.
class Children {
 public:
  Children() = default;
  ~Children();
  Children(const Children&) = delete;
  Children& operator=(const Children&) = delete;

  /// Forks a child that runs `body` and exits with its return value (99 after printing an
  /// exception). Returns its pid, or -1 if fork failed.
  int start(const std::function<int()>& body, unsigned limit_seconds = 60);
  /// Forks a child that execs `argv` (argv[0] is a path), with the same limits.
  int spawn(const std::vector<std::string>& argv, unsigned limit_seconds = 60);
  /// Reaps `pid` and returns its wait status; SIGKILLs it first if it is still running after
  /// `limit_seconds` (a safety net: the status then says "killed by SIGKILL").
  int wait(int pid, int limit_seconds = 60);
  /// Reaps every child not yet reaped, in start order, and returns their wait statuses.
  std::vector<int> wait_all(int limit_seconds = 60);
  /// Sends `sig` to `pid`, a child of this object not yet reaped.
  void kill(int pid, int sig = SIGKILL);
  /// Children not yet reaped.
  const std::vector<int>& running() const { return pids_; }

 private:
  std::vector<int> pids_;
};

/// Waits until thread `tid` sleeps in a futex wait (/proc/<tid>/syscall names futex; where
/// that file cannot be read, /proc/<tid>/stat must say it sleeps). With `object`, the futex
/// word must lie in [object, object + size): the address as this process maps it, which a
/// forked child shares. False after `limit_seconds`.
bool wait_until_blocked(int tid, const void* object = nullptr, std::size_t size = 0,
                        int limit_seconds = 10);

/// Waits until thread `tid` sleeps in a futex wait on a word inside `object`.
template <class T>
bool wait_until_blocked_on(int tid, const T& object, int limit_seconds = 10) {
  return wait_until_blocked(tid, &object, sizeof(T), limit_seconds);
}

/// Waits until `word` holds `value` (another process stores it). Returns false if that has
/// not happened after `limit_seconds`: a safety net against hangs, not a timing assertion.
bool wait_for_value(const std::atomic<int>& word, int value, int limit_seconds = 60);

/// A fresh directory under /tmp ("/tmp/shmkit-test-<pid>-<n>-<tag>.XXXXXX"), removed with
/// everything in it when destroyed.
class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// True if /proc/meminfo reports HugePages_Total of 0 (no huge pages reserved).
bool no_huge_pages();

/// The named namespaces a test can run in (System V twice: by key and by ftok).
enum class Kind { posix, sysv_key, sysv_ftok, file };

/// "posix", "sysv_key", "sysv_ftok" or "file" (usable as a gtest parameter name).
const char* to_string(Kind kind);

/// Prints a Kind in gtest messages.
void PrintTo(Kind kind, std::ostream* os);

/// Returns a unique name of `kind`. For sysv_ftok it creates the file the key is made from
/// in `dir`; for file the object's path is in `dir` (neither outlives `dir`).
std::string make_name(Kind kind, const TempDir& dir, const std::string& tag);

/// Runs a program (argv[0] looked up in PATH) without a shell and returns its wait status,
/// or -1 if it could not be started. Its stdout goes to `output` when given.
int run_program(const std::vector<std::string>& argv, std::string* output = nullptr);

}  // namespace shmkit::test
