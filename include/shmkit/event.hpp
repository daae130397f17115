// SPDX-License-Identifier: MIT
// Event: an event count, the building block for sleeping until a condition in shared memory
// becomes true, without a lock and without spinning while idle.
//
//   Waiter:                                   Notifier:
//     while (!ready()) {                        make ready() true (release store)
//       auto key = ev.prepare_wait();           ev.notify_all();
//       if (ready()) { ev.cancel_wait(); break; }
//       ev.wait(key);
//     }
//
// notify_*() is a load and a branch when nobody waits: the kernel is entered only when a
// waiter has registered. wait_for_condition() packages the loop with a brief spin first.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "shmkit/detail/config.hpp"
#include "shmkit/detail/robust.hpp"

namespace shmkit {

/// A process-shared event count. Thread- and process-safe; 16 bytes; zero bytes are a valid
/// Event. A waiter that dies registered only makes notifiers enter the kernel needlessly.
class SHMKIT_API Event {
 public:
  constexpr Event() noexcept = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  /// Registers the caller as a waiter; returns the key to pass to wait(). Re-check the
  /// condition after this call, then either wait(key) or cancel_wait().
  [[nodiscard]] std::uint32_t prepare_wait() noexcept;
  /// Withdraws a prepare_wait() without sleeping.
  void cancel_wait() noexcept { waiters_.fetch_sub(1, std::memory_order_relaxed); }
  /// Sleeps until a notify after prepare_wait() returned `key` (returns at once if one came
  /// already), or until `deadline`. Returns false on timeout. Ends the registration.
  bool wait(std::uint32_t key) noexcept;
  bool wait_until(std::uint32_t key, std::chrono::steady_clock::time_point deadline) noexcept;

  /// Wakes one or all registered waiters; costs a load when there are none.
  void notify_one() noexcept { notify(1); }
  void notify_all() noexcept { notify(0x7fffffff); }

  /// Waits until `ready()` is true: spins for up to `spin` (not at all on a machine with
  /// one CPU), then sleeps. Returns false if `deadline` passed first.
  template <class Pred>
  bool wait_for_condition(Pred ready, std::chrono::steady_clock::time_point deadline =
                                          std::chrono::steady_clock::time_point::max(),
                          std::chrono::nanoseconds spin = std::chrono::microseconds(20)) {
    if (ready()) return true;
    const auto spin_end = std::chrono::steady_clock::now() + spin;
    for (unsigned i = 1; detail::this_thread().spin; ++i) {
      if (ready()) return true;
      detail::cpu_relax();
      if ((i & 63) == 0 && std::chrono::steady_clock::now() >= spin_end) break;
    }
    for (;;) {
      const std::uint32_t key = prepare_wait();
      if (ready()) {
        cancel_wait();
        return true;
      }
      if (!wait_until(key, deadline)) return ready();
    }
  }

  /// Registered waiters (a snapshot).
  std::uint32_t waiting() const noexcept { return waiters_.load(std::memory_order_relaxed); }

 private:
  void notify(int count) noexcept {
    // Pairs with prepare_wait(): either the waiter's re-check sees the caller's earlier
    // stores, or this load sees the waiter (INV-EVENT-1; a heavy fence on the waiter's side
    // lets this one be a compiler fence where the process is registered for it).
    if (detail::this_thread().light_release) {
      std::atomic_signal_fence(std::memory_order_seq_cst);
    } else {
      std::atomic_thread_fence(std::memory_order_seq_cst);
    }
    if (waiters_.load(std::memory_order_relaxed) != 0) [[unlikely]] wake(count);
  }
  void wake(int count) noexcept;

  std::atomic<std::uint32_t> epoch_{0};    // futex word: bumped by each notify with waiters
  std::atomic<std::uint32_t> waiters_{0};  // registered waiters
  std::uint64_t reserved_ = 0;
};
static_assert(sizeof(Event) == 16, "Event layout is shared");
static_assert(std::is_standard_layout_v<Event>);

}  // namespace shmkit
