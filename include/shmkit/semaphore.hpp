// SPDX-License-Identifier: MIT
// Semaphore: a counting semaphore that lives inside shared memory (IRIX usema_t).
//
// post() is one atomic add, and enters the kernel only when someone sleeps. wait() takes a
// unit with one atomic compare-and-swap when one is there; otherwise it spins briefly (a
// hand-off between cores takes well under a microsecond, a sleep and wake-up tens of them)
// before it sleeps on the futex. Zero bytes are a semaphore with value 0.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "shmkit/detail/config.hpp"

namespace shmkit {

/// Semaphore metering (IRIX usctlsema CS_METERFETCH), kept only while metering is on.
struct SemaphoreMeter {
  std::uint64_t posts = 0;          ///< post() calls (sm_vsemas)
  std::uint64_t waits = 0;          ///< completed waits (sm_psemas)
  std::uint64_t immediate = 0;      ///< waits that found a unit at once (sm_phits)
  std::uint64_t blocked = 0;        ///< waits that had to sleep (sm_nwait)
  std::uint64_t posts_no_waiter = 0;  ///< posts that found nobody waiting (sm_vnowait)
  std::uint32_t most_waiters = 0;   ///< most sleepers seen at once (sm_maxnwait)
};

/// A process-shared counting semaphore. Thread- and process-safe; 64 bytes; the same layout
/// in 32- and 64-bit processes. A waiter that dies while sleeping leaves no unit taken; it
/// only makes later posts enter the kernel once each.
class SHMKIT_API Semaphore {
 public:
  constexpr Semaphore() noexcept = default;
  constexpr explicit Semaphore(std::uint32_t initial) noexcept : count_(initial) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  /// Adds `n` units, waking up to `n` sleepers.
  void post(std::uint32_t n = 1) noexcept {
    count_.fetch_add(n, std::memory_order_seq_cst);
    if (flags_.load(std::memory_order_relaxed) != 0 ||
        waiters_.load(std::memory_order_seq_cst) != 0) [[unlikely]] {
      post_slow(n);
    }
  }

  /// Takes a unit if one is there. Never sleeps.
  [[nodiscard]] bool try_wait() noexcept {
    std::uint32_t c = count_.load(std::memory_order_relaxed);
    while (c != 0) {
      if (count_.compare_exchange_weak(c, c - 1, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        if (flags_.load(std::memory_order_relaxed) != 0) [[unlikely]] note_wait(false);
        return true;
      }
    }
    return false;
  }

  /// Takes a unit, sleeping until one is posted.
  void wait() noexcept {
    if (!try_wait()) (void)wait_slow(-1);
  }

  /// Takes a unit, or returns false once `deadline` has passed.
  [[nodiscard]] bool wait_until(std::chrono::steady_clock::time_point deadline) noexcept;
  template <class Rep, class Period>
  [[nodiscard]] bool wait_for(std::chrono::duration<Rep, Period> timeout) noexcept {
    return wait_until(std::chrono::steady_clock::now() + timeout);
  }

  /// The number of units now (a snapshot).
  std::uint32_t value() const noexcept { return count_.load(std::memory_order_relaxed); }
  /// Threads sleeping or about to sleep in wait() (a snapshot).
  std::uint32_t waiting() const noexcept { return waiters_.load(std::memory_order_relaxed); }

  /// Turns metering on (counters from zero) or off.
  void set_metering(bool on) noexcept;
  bool metering() const noexcept { return flags_.load(std::memory_order_relaxed) != 0; }
  SemaphoreMeter meter() const noexcept;

  /// Sets the value and forgets waiters and counters. Only while nobody uses it.
  void reset(std::uint32_t value) noexcept;

 private:
  void post_slow(std::uint32_t n) noexcept;
  bool wait_slow(std::int64_t deadline_ns) noexcept;
  bool try_wait_raw() noexcept;
  void note_wait(bool blocked) noexcept;

  std::atomic<std::uint32_t> count_{0};    // units available
  std::atomic<std::uint32_t> waiters_{0};  // sleepers, each counts itself in and out
  std::atomic<std::uint32_t> flags_{0};    // 1 = metering
  std::atomic<std::uint32_t> most_waiters_{0};
  std::atomic<std::uint64_t> posts_{0}, waits_{0}, immediate_{0}, blocked_{0}, no_waiter_{0};
  std::uint64_t reserved_ = 0;
};
static_assert(sizeof(Semaphore) == 64, "Semaphore layout is shared");
static_assert(std::is_standard_layout_v<Semaphore>);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

}  // namespace shmkit
