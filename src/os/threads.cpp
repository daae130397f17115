// SPDX-License-Identifier: MIT
// Threads and futexes: gettid, robust lists, liveness, fork hooks, futex wait and wake.
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "os/os.hpp"

namespace shmkit::os {

std::int32_t gettid() noexcept { return static_cast<std::int32_t>(::syscall(SYS_gettid)); }

bool thread_alive(std::int32_t tid) noexcept {
  if (tid <= 0) return false;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", tid);
  auto text = read_small_file(path);
  if (!text.ok()) return text.error() != ENOENT && text.error() != ESRCH;
  // "tid (comm) S ...": the state follows the last ')', since comm may hold ')' itself.
  const auto paren = text.value().rfind(')');
  if (paren == std::string::npos || paren + 2 >= text.value().size()) return true;
  const char state = text.value()[paren + 2];
  return state != 'Z' && state != 'X' && state != 'x';
}

std::uint64_t process_start_time(std::int32_t pid) noexcept {
  if (pid <= 0) return 0;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  auto text = read_small_file(path);
  if (!text.ok()) return 0;
  const std::string& t = text.value();
  const auto paren = t.rfind(')');
  if (paren == std::string::npos) return 0;
  // After "pid (comm)": field 3 is the state, field 22 the start time.
  std::size_t pos = paren + 2;
  if (pos < t.size() && (t[pos] == 'Z' || t[pos] == 'X' || t[pos] == 'x')) return 0;
  for (int field = 3; field < 22; ++field) {
    pos = t.find(' ', pos);
    if (pos == std::string::npos) return 0;
    ++pos;
  }
  return std::strtoull(t.c_str() + pos, nullptr, 10);
}

std::int64_t realtime_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void* robust_list_head(std::size_t* length) noexcept {
  void* head = nullptr;
  std::size_t len = 0;
  if (::syscall(SYS_get_robust_list, 0, &head, &len) != 0) return nullptr;
  if (length != nullptr) *length = len;
  return head;
}

Status at_fork_child(void (*child)()) noexcept {
  const int err = ::pthread_atfork(nullptr, nullptr, child);
  return err == 0 ? Status{} : Status::fail(err);
}

int cpus_online() noexcept {
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

std::int64_t monotonic_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void yield() noexcept { (void)::sched_yield(); }

Status register_for_heavy_fence() noexcept {
  if (::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) != 0) {
    return Status::fail(errno);
  }
  return {};
}

Status heavy_fence() noexcept {
  if (::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) != 0) {
    return Status::fail(errno);
  }
  return {};
}

int futex_wait(const void* word, std::uint32_t expected, std::int64_t deadline_ns) noexcept {
  timespec ts{};
  timespec* timeout = nullptr;
  if (deadline_ns >= 0) {
    ts.tv_sec = deadline_ns / 1'000'000'000;
    ts.tv_nsec = deadline_ns % 1'000'000'000;
    timeout = &ts;
  }
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so a wait interrupted and
  // resumed never stretches past it.
  const long rc = ::syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, timeout, nullptr,
                            FUTEX_BITSET_MATCH_ANY);
  if (rc == 0) return 0;
  if (errno == EINTR) return 0;
  return errno;
}

int futex_wake(const void* word, int count) noexcept {
  const long rc = ::syscall(SYS_futex, word, FUTEX_WAKE, count, nullptr, nullptr, 0);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

}  // namespace shmkit::os
