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

/// Converts a steady_clock deadline to the futex's absolute nanoseconds.
template <class TimePoint>
std::int64_t deadline_ns(TimePoint deadline) noexcept {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
      deadline.time_since_epoch()).count();
  return ns < 0 ? 0 : static_cast<std::int64_t>(ns);
}

}  // namespace shmkit::sync
