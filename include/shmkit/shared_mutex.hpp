// SPDX-License-Identifier: MIT
// SharedMutex: a readers/writer lock across processes that prefers writers and survives the
// death of a writer or a reader.
//
// Writers take a robust Mutex (so a dead writer is reported exactly as Mutex reports it),
// then wait for readers to drain. Each reader holds a slot with its thread id: a writer that
// waits finds readers that died and frees their slots. Readers do not enter while a writer
// holds or waits for the lock, so writers never starve.
//
// A reader that finds the previous writer died is not handed a shared lock over data that may
// be half-written: it gets LockStatus::owner_died and holds the lock *exclusively*, to repair,
// mark_consistent() and unlock() like a writer.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "shmkit/detail/config.hpp"
#include "shmkit/mutex.hpp"

namespace shmkit {

/// A process-shared readers/writer lock. Thread- and process-safe; 256 bytes; zero bytes are
/// an unlocked SharedMutex. Up to kReaderSlots readers at once are tracked for death; more
/// may read, untracked (a dead untracked reader blocks writers).
class SHMKIT_API SharedMutex {
 public:
  static constexpr std::uint32_t kReaderSlots = 40;

  constexpr SharedMutex() noexcept = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  /// Exclusive access: as Mutex::acquire(), then waits for readers to leave.
  [[nodiscard]] LockStatus acquire() noexcept { return acquire_until_ns(-1); }
  [[nodiscard]] LockStatus try_acquire() noexcept;
  [[nodiscard]] LockStatus acquire_until(std::chrono::steady_clock::time_point deadline) noexcept;
  /// Releases exclusive access, waking every waiter. Same repair rule as Mutex::unlock().
  void unlock() noexcept;

  /// Shared access. Returns acquired, or owner_died (then the caller holds the lock
  /// exclusively and must repair and unlock()), or not_recoverable.
  [[nodiscard]] LockStatus acquire_shared() noexcept { return acquire_shared_until_ns(-1, false); }
  [[nodiscard]] LockStatus try_acquire_shared() noexcept;
  [[nodiscard]] LockStatus acquire_shared_until(
      std::chrono::steady_clock::time_point deadline) noexcept;
  /// Releases shared access.
  void unlock_shared() noexcept;

  /// Lockable / SharedLockable forms (std::unique_lock, std::shared_lock); they throw
  /// OwnerDied (holding the lock exclusively) or Error(ENOTRECOVERABLE).
  void lock() { check(acquire()); }
  [[nodiscard]] bool try_lock() { return check(try_acquire()); }
  void lock_shared() { check(acquire_shared()); }
  [[nodiscard]] bool try_lock_shared() { return check(try_acquire_shared()); }

  /// As Mutex: declare the data repaired after owner_died, before unlock().
  void mark_consistent() noexcept { writer_.mark_consistent(); }
  bool not_recoverable() const noexcept { return writer_.not_recoverable(); }
  /// Readers holding the lock now (a snapshot, tracked and untracked).
  std::uint32_t readers() const noexcept;
  /// The writer's thread id, or 0 (a snapshot).
  std::int32_t writer() const noexcept { return writer_.owner(); }

 private:
  bool check(LockStatus status);
  LockStatus acquire_until_ns(std::int64_t deadline_ns) noexcept;
  LockStatus acquire_shared_until_ns(std::int64_t deadline_ns, bool once) noexcept;
  bool try_enter_shared(std::int32_t tid) noexcept;
  void leave_shared(std::int32_t tid) noexcept;
  bool drain_readers(std::int64_t deadline_ns) noexcept;
  void wake_writer_if_waiting() noexcept;
  void back_out(LockStatus st) noexcept;

  Mutex writer_;                               // exclusive owner (robust)
  std::atomic<std::uint32_t> drain_{0};        // futex: bumped when a reader leaves
  std::atomic<std::uint32_t> overflow_{0};     // readers beyond the slots (untracked)
  std::uint32_t reserved_[6] = {};
  std::atomic<std::uint32_t> slots_[kReaderSlots] = {};  // reader tids; 0 = free
};
static_assert(sizeof(SharedMutex) == 256, "SharedMutex layout is shared");
static_assert(std::is_standard_layout_v<SharedMutex>);

}  // namespace shmkit
