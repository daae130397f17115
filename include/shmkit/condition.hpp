// SPDX-License-Identifier: MIT
// Condition: a condition variable for shmkit::Mutex, across processes.
//
// wait() reads a sequence number while the caller still holds the mutex, then unlocks and
// sleeps unless the number moved; notify_*() bump it. A notify that comes between the unlock
// and the sleep therefore makes the sleep return at once: no wake-up is lost. Zero bytes are
// a valid Condition.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "shmkit/detail/config.hpp"
#include "shmkit/mutex.hpp"

namespace shmkit {

/// What a Condition wait ended with. The mutex is held again whenever `lock` says so
/// (acquired or owner_died), even when `timed_out`.
struct [[nodiscard]] CondWait {
  LockStatus lock = LockStatus::acquired;  ///< how the mutex was re-acquired
  bool timed_out = false;                  ///< the deadline passed before a notify
};

/// A process-shared condition variable used with Mutex. Thread- and process-safe; 16 bytes.
/// Spurious wake-ups are possible (use the predicate forms). A waiter that dies only makes
/// notifiers enter the kernel needlessly.
class SHMKIT_API Condition {
 public:
  constexpr Condition() noexcept = default;
  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;

  /// Unlocks `m` (which the caller holds), sleeps until notified, and locks `m` again.
  CondWait wait(Mutex& m) noexcept { return wait_until(m, std::chrono::steady_clock::time_point::max()); }
  /// As wait(), giving up at `deadline` (the mutex is re-acquired all the same).
  CondWait wait_until(Mutex& m, std::chrono::steady_clock::time_point deadline) noexcept;
  template <class Rep, class Period>
  CondWait wait_for(Mutex& m, std::chrono::duration<Rep, Period> timeout) noexcept {
    return wait_until(m, std::chrono::steady_clock::now() + timeout);
  }

  /// Waits until `pred()` holds (checked with `m` held). Returns the last wait's result;
  /// stops early if re-acquiring the mutex reports anything but `acquired`.
  template <class Pred>
  CondWait wait(Mutex& m, Pred pred) noexcept {
    CondWait r;
    while (!pred()) {
      r = wait(m);
      if (r.lock != LockStatus::acquired) return r;
    }
    return r;
  }

  /// Wakes one waiter / all waiters. Enters the kernel only when someone waits.
  void notify_one() noexcept { notify(1); }
  void notify_all() noexcept { notify(0x7fffffff); }

 private:
  void notify(int count) noexcept {
    seq_.fetch_add(1, std::memory_order_seq_cst);
    if (waiters_.load(std::memory_order_seq_cst) != 0) wake(count);
  }
  void wake(int count) noexcept;

  std::atomic<std::uint32_t> seq_{0};      // futex word: bumped by every notify
  std::atomic<std::uint32_t> waiters_{0};  // threads inside wait()
  std::uint64_t reserved_ = 0;
};
static_assert(sizeof(Condition) == 16, "Condition layout is shared");
static_assert(std::is_standard_layout_v<Condition>);

}  // namespace shmkit
