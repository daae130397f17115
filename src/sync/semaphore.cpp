// SPDX-License-Identifier: MIT
// Semaphore slow paths: waking sleepers, spinning then sleeping, metering.
#include "shmkit/semaphore.hpp"

#include "os/os.hpp"
#include "shmkit/detail/robust.hpp"
#include "sync/wait.hpp"

namespace shmkit {

void Semaphore::post_slow(std::uint32_t n) noexcept {
  const bool metered = flags_.load(std::memory_order_relaxed) != 0;
  if (metered) posts_.fetch_add(1, std::memory_order_relaxed);
  if (waiters_.load(std::memory_order_seq_cst) == 0) {
    if (metered) no_waiter_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  os::futex_wake(&count_, n > 0x7fffffffu ? 0x7fffffff : static_cast<int>(n));
}

void Semaphore::note_wait(bool blocked) noexcept {
  waits_.fetch_add(1, std::memory_order_relaxed);
  (blocked ? blocked_ : immediate_).fetch_add(1, std::memory_order_relaxed);
}

bool Semaphore::wait_slow(std::int64_t deadline_ns) noexcept {
  // Spin first: the unit usually comes from another core in well under the cost of a sleep.
  // With one CPU to run on, spinning would only keep the poster from running.
  const std::int64_t spin_end = os::monotonic_ns() + sync::kSpinNs;
  for (unsigned i = 1; detail::this_thread().spin; ++i) {
    if (count_.load(std::memory_order_relaxed) != 0 && try_wait_raw()) {
      if (flags_.load(std::memory_order_relaxed) != 0) note_wait(false);
      return true;
    }
    detail::cpu_relax();
    if ((i & 63) == 0 && os::monotonic_ns() >= spin_end) break;
  }
  const std::uint32_t now_waiting = waiters_.fetch_add(1, std::memory_order_seq_cst) + 1;
  if (flags_.load(std::memory_order_relaxed) != 0) {
    std::uint32_t most = most_waiters_.load(std::memory_order_relaxed);
    while (now_waiting > most &&
           !most_waiters_.compare_exchange_weak(most, now_waiting, std::memory_order_relaxed)) {
    }
  }
  bool got = false;
  for (;;) {
    if (count_.load(std::memory_order_seq_cst) != 0 && try_wait_raw()) {
      got = true;
      break;
    }
    if (sync::sleep_on(&count_, 0, deadline_ns) == sync::Sleep::timed_out) {
      got = try_wait_raw();
      break;
    }
  }
  waiters_.fetch_sub(1, std::memory_order_relaxed);
  if (got && flags_.load(std::memory_order_relaxed) != 0) note_wait(true);
  return got;
}

bool Semaphore::try_wait_raw() noexcept {
  std::uint32_t c = count_.load(std::memory_order_relaxed);
  while (c != 0) {
    if (count_.compare_exchange_weak(c, c - 1, std::memory_order_acquire,
                                     std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

bool Semaphore::wait_until(std::chrono::steady_clock::time_point deadline) noexcept {
  return try_wait() || wait_slow(sync::deadline_ns(deadline));
}

void Semaphore::set_metering(bool on) noexcept {
  if (on) {
    posts_.store(0, std::memory_order_relaxed);
    waits_.store(0, std::memory_order_relaxed);
    immediate_.store(0, std::memory_order_relaxed);
    blocked_.store(0, std::memory_order_relaxed);
    no_waiter_.store(0, std::memory_order_relaxed);
    most_waiters_.store(0, std::memory_order_relaxed);
  }
  flags_.store(on ? 1 : 0, std::memory_order_relaxed);
}

SemaphoreMeter Semaphore::meter() const noexcept {
  SemaphoreMeter m;
  if (!metering()) return m;
  m.posts = posts_.load(std::memory_order_relaxed);
  m.waits = waits_.load(std::memory_order_relaxed);
  m.immediate = immediate_.load(std::memory_order_relaxed);
  m.blocked = blocked_.load(std::memory_order_relaxed);
  m.posts_no_waiter = no_waiter_.load(std::memory_order_relaxed);
  m.most_waiters = most_waiters_.load(std::memory_order_relaxed);
  return m;
}

void Semaphore::reset(std::uint32_t value) noexcept {
  set_metering(metering());
  waiters_.store(0, std::memory_order_relaxed);
  count_.store(value, std::memory_order_release);
}

}  // namespace shmkit
