// SPDX-License-Identifier: MIT
// Mutex: a robust, process-shared lock that lives inside shared memory.
//
// Place it anywhere in a segment (zero bytes are an unlocked Mutex; no init call is needed)
// and lock it from any thread of any process. Uncontended lock and unlock are one atomic
// instruction each plus a few plain stores; the kernel is entered only to sleep or to wake.
//
// When the owner dies holding it (SIGKILL included), the kernel marks the lock and wakes one
// sleeper; the next locker gets LockStatus::owner_died (lock() throws OwnerDied) and owns the
// lock. It repairs the protected data and calls mark_consistent(); if it unlocks without doing
// so, the mutex becomes not recoverable, as POSIX robust mutexes do.
//
// States of word (see detail/robust.hpp):
//   0                    free
//   tid                  owned by thread tid, nobody sleeping
//   tid | WAITERS        owned, sleepers exist: the kernel wakes one if tid dies
//   OWNER_DIED [|WAIT]   free, previous owner died: the next locker is told (INV-MUTEX-1)
// Unlock wakes a sleeper when the separate waiters count is non-zero (INV-MUTEX-2), so the
// uncontended unlock is a plain store: sleepers pay for the fence instead (membarrier).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "shmkit/detail/config.hpp"
#include "shmkit/detail/robust.hpp"
#include "shmkit/error.hpp"

namespace shmkit {

/// The outcome of acquiring a lock. Only `acquired` and `owner_died` mean the caller holds it.
enum class LockStatus : std::uint8_t {
  acquired,         ///< the caller holds the lock
  owner_died,       ///< the caller holds the lock; the previous owner died holding it
  busy,             ///< try_acquire: someone else holds it
  timed_out,        ///< the deadline passed first
  not_recoverable,  ///< an owner died and nobody repaired it: the lock is unusable
};

/// Returns "acquired", "owner_died", … for messages.
SHMKIT_API const char* to_string(LockStatus status) noexcept;

/// Thrown by lock() / try_lock*() when the previous owner died. The thrower holds the lock:
/// repair the data, call mark_consistent(), then unlock().
class SHMKIT_API OwnerDied : public Error {
 public:
  explicit OwnerDied(const char* what_lock);
};

/// Lock metering (IRIX usctllock CL_METERFETCH), kept only while metering is on.
struct LockMeter {
  std::uint64_t acquisitions = 0;  ///< successful acquisitions
  std::uint64_t contended = 0;     ///< acquisitions that had to wait
  std::uint64_t wait_ns = 0;       ///< total time spent waiting
  std::uint64_t longest_wait_ns = 0;
  std::uint64_t owner_deaths = 0;  ///< times an owner died holding the lock
};

/// A robust, process-shared mutex. Not recursive. Only the owning thread may unlock.
/// Thread- and process-safe; 64 bytes; layout identical in 32- and 64-bit processes.
class SHMKIT_API Mutex {
 public:
  constexpr Mutex() noexcept = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  /// Blocks until acquired. Returns acquired, owner_died or not_recoverable.
  [[nodiscard]] LockStatus acquire() noexcept {
    detail::ThreadState& ts = detail::this_thread();
    detail::robust_begin(ts, rw_);
    std::uint32_t expected = 0;
    if (rw_.word.compare_exchange_strong(expected, static_cast<std::uint32_t>(ts.tid),
                                         std::memory_order_acquire, std::memory_order_relaxed))
        [[likely]] {
      detail::robust_link(ts, rw_);
      detail::robust_end(ts);
      if ((state().load(std::memory_order_relaxed) |
           waiters().load(std::memory_order_relaxed)) != 0) [[unlikely]] {
        return after_fast_acquire();
      }
      return LockStatus::acquired;
    }
    return acquire_slow(ts, -1, false);
  }

  /// Acquires only if free: acquired, owner_died, busy or not_recoverable. Never sleeps.
  [[nodiscard]] LockStatus try_acquire() noexcept;

  /// Blocks until acquired or until `deadline`: may also return timed_out.
  [[nodiscard]] LockStatus acquire_until(std::chrono::steady_clock::time_point deadline) noexcept;
  template <class Rep, class Period>
  [[nodiscard]] LockStatus acquire_for(std::chrono::duration<Rep, Period> timeout) noexcept {
    return acquire_until(std::chrono::steady_clock::now() + timeout);
  }

  /// Releases the lock. If an owner death was reported and mark_consistent() was not called,
  /// the mutex becomes not recoverable and every waiter is told so.
  void unlock() noexcept {
    detail::ThreadState& ts = detail::tls_state;
    if (state().load(std::memory_order_relaxed) != 0) [[unlikely]] return unlock_slow();
    detail::robust_begin(ts, rw_);
    detail::robust_unlink(ts, rw_);
    if (ts.light_release) [[likely]] {
      // INV-MUTEX-2: a sleeper counts itself in waiters() and then issues a heavy fence
      // before it reads the word, so either it sees this store or this load sees it.
      rw_.word.store(0, std::memory_order_release);
      std::atomic_signal_fence(std::memory_order_seq_cst);
    } else {
      rw_.word.exchange(0, std::memory_order_acq_rel);
    }
    if (waiters().load(std::memory_order_relaxed) != 0) [[unlikely]] wake_one();
    detail::robust_end(ts);
  }

  /// Lockable: acquire(); throws OwnerDied (holding the lock) or Error(ENOTRECOVERABLE).
  void lock() { check(acquire()); }
  /// Lockable: try_acquire(); throws like lock().
  [[nodiscard]] bool try_lock() { return check(try_acquire()); }
  /// TimedLockable: acquire_until(); throws like lock().
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(std::chrono::time_point<Clock, Duration> deadline) {
    const auto left = deadline - Clock::now();
    return check(acquire_until(std::chrono::steady_clock::now() +
                               std::chrono::duration_cast<std::chrono::nanoseconds>(left)));
  }
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
    return check(acquire_for(timeout));
  }

  /// Declares the data repaired after owner_died; call before unlock().
  void mark_consistent() noexcept;
  /// True while an owner death has been reported and not yet repaired.
  bool inconsistent() const noexcept;
  /// True once an unrepaired owner death made the mutex unusable.
  bool not_recoverable() const noexcept;
  /// True if some thread holds the lock (a snapshot; IRIX ustestlock).
  bool is_locked() const noexcept;
  /// The owner's thread id, or 0 (a snapshot; IRIX lockdebug).
  std::int32_t owner() const noexcept;

  /// Turns metering on or off; when off it costs nothing. Counts start from zero.
  void set_metering(bool on) noexcept;
  bool metering() const noexcept;
  /// Reads the counters (zeros when metering is off).
  LockMeter meter() const noexcept;
  void reset_meter() noexcept;

  /// If the owner's thread no longer exists, marks the mutex as the kernel does when an owner
  /// dies, so the next locker gets owner_died; returns true if it did. Looks the thread up in
  /// /proc: only for locks whose users share a pid namespace, on recovery paths (slow).
  bool break_if_owner_gone() noexcept;

  /// Makes the mutex usable again after not_recoverable, unlocked and consistent. Only
  /// when no thread uses it (e.g. from an init routine).
  void reset() noexcept;

 private:
  friend class SharedMutex;  // shares the writer word's protocol
  static constexpr std::uint32_t kInconsistent = 1, kNotRecoverable = 2, kMetered = 4;

  std::atomic_ref<std::uint32_t> state() const noexcept {
    return std::atomic_ref<std::uint32_t>(const_cast<std::uint32_t&>(rw_.aux[0]));
  }
  std::atomic_ref<std::uint32_t> waiters() const noexcept {
    return std::atomic_ref<std::uint32_t>(const_cast<std::uint32_t&>(rw_.aux[1]));
  }
  bool check(LockStatus status);
  LockStatus after_fast_acquire() noexcept;
  LockStatus acquire_slow(detail::ThreadState& ts, std::int64_t deadline_ns, bool once) noexcept;
  LockStatus finish_acquire(std::uint32_t seen, std::int64_t wait_start_ns) noexcept;
  void unlock_slow() noexcept;
  void release_word(detail::ThreadState& ts, bool wake_all) noexcept;
  void wake_one() noexcept;

  // aux[0] state (kInconsistent | kNotRecoverable | kMetered), written by the owner;
  // aux[1] threads sleeping or about to sleep (atomic; each counts itself in and out);
  // aux[2] owner deaths, aux[3] longest wait in µs (metering), written by the owner.
  detail::RobustWord rw_{};
  std::uint64_t acquisitions_ = 0;  // metering: written by the owner
  std::uint64_t wait_ns_ = 0;       // metering: total wait, written by the owner
  std::uint64_t contended_ = 0;     // metering: acquisitions that waited, written by the owner
};
static_assert(sizeof(Mutex) == 64 && alignof(Mutex) == 8, "Mutex layout is shared");
static_assert(std::is_standard_layout_v<Mutex>);

}  // namespace shmkit
