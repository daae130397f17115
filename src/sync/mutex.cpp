// SPDX-License-Identifier: MIT
// Mutex slow paths: spinning, sleeping on the futex, owner death, metering.
#include "shmkit/mutex.hpp"

#include <cerrno>
#include <climits>

#include "os/os.hpp"
#include "sync/wait.hpp"

namespace shmkit {

using detail::kOwnerDied;
using detail::kTidMask;
using detail::kWaiters;

const char* to_string(LockStatus status) noexcept {
  switch (status) {
    case LockStatus::acquired: return "acquired";
    case LockStatus::owner_died: return "owner_died";
    case LockStatus::busy: return "busy";
    case LockStatus::timed_out: return "timed_out";
    case LockStatus::not_recoverable: return "not_recoverable";
  }
  return "?";
}

OwnerDied::OwnerDied(const char* what_lock)
    : Error(EOWNERDEAD, what_lock, "lock",
            "the previous owner died holding it; repair the data, call mark_consistent(), "
            "then unlock()") {}

bool Mutex::check(LockStatus status) {
  switch (status) {
    case LockStatus::acquired: return true;
    case LockStatus::busy:
    case LockStatus::timed_out: return false;
    case LockStatus::owner_died: throw OwnerDied("mutex");
    case LockStatus::not_recoverable: break;
  }
  throw Error(ENOTRECOVERABLE, "mutex", "lock");
}

LockStatus Mutex::after_fast_acquire() noexcept {
  // Sleepers exist: flag the word so that the kernel wakes one if this thread dies.
  if (waiters().load(std::memory_order_relaxed) != 0) {
    rw_.word.fetch_or(kWaiters, std::memory_order_relaxed);
  }
  return finish_acquire(0, -1);
}

// The caller holds the word; `seen` is the word's value just before it took it.
LockStatus Mutex::finish_acquire(std::uint32_t seen, std::int64_t wait_start_ns) noexcept {
  const std::uint32_t st = state().load(std::memory_order_relaxed);
  if ((st & kNotRecoverable) != 0) {
    release_word(detail::tls_state, false);
    return LockStatus::not_recoverable;
  }
  if ((st & kMetered) != 0) {
    ++acquisitions_;
    if (wait_start_ns >= 0) {
      const auto waited = static_cast<std::uint64_t>(os::monotonic_ns() - wait_start_ns);
      ++contended_;
      wait_ns_ += waited;
      const auto us = static_cast<std::uint32_t>(waited / 1000);
      if (us > rw_.aux[3]) rw_.aux[3] = us;
    }
  }
  if ((seen & kOwnerDied) != 0) {
    // INV-MUTEX-1: exactly the thread that takes a word marked OWNER_DIED is told.
    ++rw_.aux[2];
    state().store(st | kInconsistent, std::memory_order_relaxed);
    return LockStatus::owner_died;
  }
  return LockStatus::acquired;
}

LockStatus Mutex::acquire_slow(detail::ThreadState& ts, std::int64_t deadline_ns,
                               bool once) noexcept {
  // robust_begin() is in force from the caller: if this thread dies right after taking the
  // word, the kernel still finds it through list_op_pending.
  const auto tid = static_cast<std::uint32_t>(ts.tid);
  const bool metered = (state().load(std::memory_order_relaxed) & kMetered) != 0;
  const std::int64_t start = metered ? os::monotonic_ns() : -1;
  bool counted = false;  // this thread is counted in waiters()
  int spins = 0;
  const auto leave = [&] {
    if (counted) waiters().fetch_sub(1, std::memory_order_relaxed);
    detail::robust_end(ts);
  };
  for (;;) {
    std::uint32_t v = rw_.word.load(std::memory_order_relaxed);
    if ((v & kTidMask) == 0) {
      // Keep kWaiters while others sleep, so the kernel wakes one should we die.
      const std::uint32_t others = waiters().load(std::memory_order_relaxed) - (counted ? 1 : 0);
      const std::uint32_t desired = tid | (others != 0 ? kWaiters : 0);
      if (rw_.word.compare_exchange_weak(v, desired, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
        detail::robust_link(ts, rw_);
        leave();
        return finish_acquire(v, (counted || spins > 0) ? start : -1);
      }
      continue;
    }
    if (once) {
      leave();
      return LockStatus::busy;
    }
    const sync::Step step =
        sync::wait_for_owner(ts, rw_.word, v, waiters(), spins, counted, deadline_ns);
    if (step == sync::Step::timed_out) {
      leave();
      return LockStatus::timed_out;
    }
    if (step == sync::Step::check_peer && !ts.robust) {
      // Without a robust list the kernel cannot tell us of a dead owner: look ourselves.
      const std::int32_t owner = static_cast<std::int32_t>(v & kTidMask);
      if (owner != 0 && !os::thread_alive(owner)) {
        (void)rw_.word.compare_exchange_strong(v, (v & kWaiters) | kOwnerDied,
                                               std::memory_order_relaxed);
      }
    }
  }
}

LockStatus Mutex::try_acquire() noexcept {
  detail::ThreadState& ts = detail::this_thread();
  detail::robust_begin(ts, rw_);
  return acquire_slow(ts, -1, true);
}

LockStatus Mutex::acquire_until(std::chrono::steady_clock::time_point deadline) noexcept {
  detail::ThreadState& ts = detail::this_thread();
  detail::robust_begin(ts, rw_);
  return acquire_slow(ts, sync::deadline_ns(deadline), false);
}

void Mutex::release_word(detail::ThreadState& ts, bool wake_all) noexcept {
  detail::robust_begin(ts, rw_);
  detail::robust_unlink(ts, rw_);
  rw_.word.exchange(0, std::memory_order_acq_rel);
  if (wake_all || waiters().load(std::memory_order_relaxed) != 0) {
    os::futex_wake(&rw_.word, wake_all ? INT_MAX : 1);
  }
  detail::robust_end(ts);
}

void Mutex::wake_one() noexcept { os::futex_wake(&rw_.word, 1); }

void Mutex::unlock_slow() noexcept {
  const std::uint32_t st = state().load(std::memory_order_relaxed);
  if ((st & kInconsistent) != 0) {
    // Unlocked without repair: nobody may trust the data again (POSIX ENOTRECOVERABLE).
    state().store((st & ~kInconsistent) | kNotRecoverable, std::memory_order_relaxed);
    release_word(detail::tls_state, true);
    return;
  }
  release_word(detail::tls_state, false);
}

bool Mutex::break_if_owner_gone() noexcept {
  std::uint32_t v = rw_.word.load(std::memory_order_relaxed);
  const auto owner = static_cast<std::int32_t>(v & kTidMask);
  if (owner == 0 || os::thread_alive(owner)) return false;
  if (!rw_.word.compare_exchange_strong(v, (v & kWaiters) | kOwnerDied, std::memory_order_relaxed)) {
    return false;
  }
  os::futex_wake(&rw_.word, INT_MAX);
  return true;
}

void Mutex::mark_consistent() noexcept {
  state().fetch_and(~kInconsistent, std::memory_order_relaxed);
}

bool Mutex::inconsistent() const noexcept {
  return (state().load(std::memory_order_relaxed) & kInconsistent) != 0;
}

bool Mutex::not_recoverable() const noexcept {
  return (state().load(std::memory_order_relaxed) & kNotRecoverable) != 0;
}

bool Mutex::is_locked() const noexcept {
  return (rw_.word.load(std::memory_order_relaxed) & kTidMask) != 0;
}

std::int32_t Mutex::owner() const noexcept {
  return static_cast<std::int32_t>(rw_.word.load(std::memory_order_relaxed) & kTidMask);
}

void Mutex::set_metering(bool on) noexcept {
  if (on) {
    reset_meter();
    state().fetch_or(kMetered, std::memory_order_relaxed);
  } else {
    state().fetch_and(~kMetered, std::memory_order_relaxed);
  }
}

bool Mutex::metering() const noexcept {
  return (state().load(std::memory_order_relaxed) & kMetered) != 0;
}

LockMeter Mutex::meter() const noexcept {
  LockMeter m;
  if (!metering()) return m;
  m.owner_deaths = rw_.aux[2];
  m.acquisitions = acquisitions_;
  m.contended = contended_;
  m.wait_ns = wait_ns_;
  m.longest_wait_ns = std::uint64_t{rw_.aux[3]} * 1000;
  return m;
}

void Mutex::reset_meter() noexcept {
  acquisitions_ = 0;
  wait_ns_ = 0;
  contended_ = 0;
  rw_.aux[2] = 0;
  rw_.aux[3] = 0;
}

void Mutex::reset() noexcept {
  state().store(state().load(std::memory_order_relaxed) & kMetered, std::memory_order_relaxed);
  rw_.word.store(0, std::memory_order_release);
  os::futex_wake(&rw_.word, INT_MAX);
}

}  // namespace shmkit
