// SPDX-License-Identifier: MIT
// How every sync object waits: spin briefly (a hand-off between cores takes ~100 ns, a sleep
// and wake-up across cores ~35 µs on a small VM), then sleep on the futex, waking now and then
// to look for dead peers that the kernel could not report.
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>

#include "os/os.hpp"
#include "shmkit/detail/robust.hpp"

namespace shmkit::sync {

/// PAUSE iterations before a lock sleeps (~5-10 µs on current x86).
inline constexpr int kSpinLimit = 200;

/// How long a semaphore or barrier waiter spins before it sleeps. It must outlast one
/// sleep-to-wake of the partner (about 35-45 µs across cores on a small VM): if it were
/// shorter, two processes handing a unit back and forth would each find the other asleep on
/// every exchange and never get back to spinning.
inline constexpr std::int64_t kSpinNs = 100'000;

/// How often a sleeper wakes to check peers' liveness.
inline constexpr std::int64_t kPeerCheckNs = 100'000'000;

/// The longest sleep of a thread that could not issue a heavy fence (a wake-up may be lost).
inline constexpr std::int64_t kUnfencedSleepNs = 1'000'000;

enum class Sleep { woken, timed_out, check_peer };

/// Sleeps while `*word == expected`, until woken, `deadline_ns` (absolute CLOCK_MONOTONIC,
/// negative = none), or the next peer check (after `check_ns`, or kPeerCheckNs when
/// negative), whichever is first.
inline Sleep sleep_on(const std::atomic<std::uint32_t>* word, std::uint32_t expected,
                      std::int64_t deadline_ns, std::int64_t check_ns = -1) noexcept {
  const std::int64_t now = os::monotonic_ns();
  if (deadline_ns >= 0 && now >= deadline_ns) return Sleep::timed_out;
  std::int64_t wake_at = now + (check_ns >= 0 ? check_ns : kPeerCheckNs);
  const bool deadline_first = deadline_ns >= 0 && deadline_ns <= wake_at;
  if (deadline_first) wake_at = deadline_ns;
  if (os::futex_wait(word, expected, wake_at) != ETIMEDOUT) return Sleep::woken;
  return deadline_first ? Sleep::timed_out : Sleep::check_peer;
}

/// What one pass of wait_for_owner() did.
enum class Step { again, woken, timed_out, check_peer };

/// One pass of waiting for an owned word (Mutex, SharedMutex) whose last value was `v`, held
/// by someone: spin a while (spins), then count in as a waiter and fence (INV-MUTEX-2, once:
/// counted), then flag the word kWaiters and sleep. The caller loops until it can take the
/// word, and counts itself out of `waiters` when it leaves if `counted`.
inline Step wait_for_owner(detail::ThreadState& ts, std::atomic<std::uint32_t>& word,
                           std::uint32_t v, std::atomic_ref<std::uint32_t> waiters, int& spins,
                           bool& counted, std::int64_t deadline_ns) noexcept {
  if (ts.spin && spins < kSpinLimit) {
    ++spins;
    detail::cpu_relax();
    return Step::again;
  }
  if (!counted) {
    // INV-MUTEX-2, the sleeper's side: count in, fence, then look at the word again.
    waiters.fetch_add(1, std::memory_order_seq_cst);
    if (ts.heavy_fence) (void)os::heavy_fence();
    counted = true;
    return Step::again;
  }
  if ((v & detail::kWaiters) == 0) {
    if (!word.compare_exchange_weak(v, v | detail::kWaiters, std::memory_order_relaxed)) {
      return Step::again;
    }
    v |= detail::kWaiters;
  }
  // Without heavy fences a release may slip past us: never sleep long then.
  switch (sleep_on(&word, v, deadline_ns, ts.heavy_fence ? -1 : kUnfencedSleepNs)) {
    case Sleep::woken: return Step::woken;
    case Sleep::timed_out: return Step::timed_out;
    case Sleep::check_peer: return Step::check_peer;
  }
  return Step::again;
}

/// Converts a steady_clock deadline to the futex's absolute nanoseconds.
template <class TimePoint>
std::int64_t deadline_ns(TimePoint deadline) noexcept {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
      deadline.time_since_epoch()).count();
  return ns < 0 ? 0 : static_cast<std::int64_t>(ns);
}

}  // namespace shmkit::sync
