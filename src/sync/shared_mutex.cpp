// SPDX-License-Identifier: MIT
// SharedMutex: readers take a slot (one compare-and-swap) and check that no writer is in or
// waiting; writers take the robust writer Mutex and wait for the slots to empty, freeing the
// slots of readers that died.
//
// INV-RW-1: a reader holds a slot only while the writer word has no owner; a writer owns the
// word before it scans the slots. Both sides write (RMW) before they read the other side's
// word, so they cannot both miss each other.
#include "shmkit/shared_mutex.hpp"

#include <cerrno>
#include <climits>

#include "os/os.hpp"
#include "shmkit/detail/robust.hpp"
#include "sync/wait.hpp"

namespace shmkit {

using detail::kOwnerDied;
using detail::kTidMask;
using detail::kWaiters;

bool SharedMutex::check(LockStatus status) {
  switch (status) {
    case LockStatus::acquired: return true;
    case LockStatus::busy:
    case LockStatus::timed_out: return false;
    case LockStatus::owner_died: throw OwnerDied("shared mutex");
    case LockStatus::not_recoverable: break;
  }
  throw Error(ENOTRECOVERABLE, "shared mutex", "lock");
}

std::uint32_t SharedMutex::readers() const noexcept {
  std::uint32_t n = overflow_.load(std::memory_order_relaxed);
  for (const auto& slot : slots_) n += slot.load(std::memory_order_relaxed) != 0 ? 1 : 0;
  return n;
}

// ---- Writers ----

// Gives up the writer word without having used it. After owner_died it goes back still
// marked, so that the next locker is told, as this caller would have been.
void SharedMutex::back_out(LockStatus st) noexcept {
  if (st != LockStatus::owner_died) {
    unlock();
    return;
  }
  detail::ThreadState& ts = detail::tls_state;
  detail::robust_begin(ts, writer_.rw_);
  detail::robust_unlink(ts, writer_.rw_);
  writer_.state().fetch_and(~Mutex::kInconsistent, std::memory_order_relaxed);
  --writer_.rw_.aux[2];  // the death will be counted again by whoever is told
  const bool waiting = writer_.waiters().load(std::memory_order_relaxed) != 0;
  writer_.rw_.word.store(kOwnerDied | (waiting ? kWaiters : 0), std::memory_order_release);
  if (waiting) os::futex_wake(&writer_.rw_.word, INT_MAX);
  detail::robust_end(ts);
}

LockStatus SharedMutex::acquire_until_ns(std::int64_t deadline_ns) noexcept {
  detail::ThreadState& ts = detail::this_thread();
  detail::robust_begin(ts, writer_.rw_);
  const LockStatus st = writer_.acquire_slow(ts, deadline_ns, false);
  if (st != LockStatus::acquired && st != LockStatus::owner_died) return st;
  if (!drain_readers(deadline_ns)) {
    back_out(st);
    return LockStatus::timed_out;
  }
  return st;
}

LockStatus SharedMutex::try_acquire() noexcept {
  detail::ThreadState& ts = detail::this_thread();
  detail::robust_begin(ts, writer_.rw_);
  const LockStatus st = writer_.acquire_slow(ts, -1, true);
  if (st != LockStatus::acquired && st != LockStatus::owner_died) return st;
  if (readers() != 0) {
    back_out(st);  // readers are inside: a try does not wait for them
    return LockStatus::busy;
  }
  return st;
}

LockStatus SharedMutex::acquire_until(std::chrono::steady_clock::time_point deadline) noexcept {
  return acquire_until_ns(sync::deadline_ns(deadline));
}

bool SharedMutex::drain_readers(std::int64_t deadline_ns) noexcept {
  int spins = 0;
  const bool spin = detail::this_thread().spin;
  for (;;) {
    const std::uint32_t seen = drain_.load(std::memory_order_seq_cst);
    if (readers() == 0) return true;
    if (spin && spins < sync::kSpinLimit) {
      ++spins;
      detail::cpu_relax();
      continue;
    }
    const sync::Sleep s = sync::sleep_on(&drain_, seen, deadline_ns);
    if (s == sync::Sleep::timed_out) return readers() == 0;
    if (s == sync::Sleep::check_peer) {
      // Free the slots of readers that died holding them.
      for (auto& slot : slots_) {
        std::uint32_t tid = slot.load(std::memory_order_acquire);
        if (tid != 0 && !os::thread_alive(static_cast<std::int32_t>(tid))) {
          (void)slot.compare_exchange_strong(tid, 0, std::memory_order_acq_rel);
        }
      }
    }
  }
}

void SharedMutex::unlock() noexcept {
  // As Mutex::unlock(), but every sleeper is woken: readers wait on the same word.
  detail::ThreadState& ts = detail::tls_state;
  const std::uint32_t st = writer_.state().load(std::memory_order_relaxed);
  if ((st & Mutex::kInconsistent) != 0) {
    writer_.state().store((st & ~Mutex::kInconsistent) | Mutex::kNotRecoverable,
                          std::memory_order_relaxed);
  }
  writer_.release_word(ts, writer_.waiters().load(std::memory_order_relaxed) != 0 ||
                               (st & Mutex::kInconsistent) != 0);
}

// ---- Readers ----

bool SharedMutex::try_enter_shared(std::int32_t tid) noexcept {
  const auto me = static_cast<std::uint32_t>(tid);
  const std::uint32_t start = me % kReaderSlots;
  std::atomic<std::uint32_t>* slot = nullptr;
  for (std::uint32_t i = 0; i < kReaderSlots; ++i) {
    auto& s = slots_[(start + i) % kReaderSlots];
    std::uint32_t expected = 0;
    if (s.load(std::memory_order_relaxed) == 0 &&
        s.compare_exchange_strong(expected, me, std::memory_order_seq_cst)) {
      slot = &s;
      break;
    }
  }
  if (slot == nullptr) overflow_.fetch_add(1, std::memory_order_seq_cst);
  // INV-RW-1: the slot is taken; now look for a writer.
  if ((writer_.rw_.word.load(std::memory_order_seq_cst) & (kTidMask | kOwnerDied)) == 0) {
    return true;
  }
  leave_shared(tid);
  return false;
}

void SharedMutex::leave_shared(std::int32_t tid) noexcept {
  const auto me = static_cast<std::uint32_t>(tid);
  const std::uint32_t start = me % kReaderSlots;
  bool found = false;
  for (std::uint32_t i = 0; i < kReaderSlots; ++i) {
    auto& s = slots_[(start + i) % kReaderSlots];
    std::uint32_t expected = me;
    if (s.load(std::memory_order_relaxed) == me &&
        s.compare_exchange_strong(expected, 0, std::memory_order_seq_cst)) {
      found = true;
      break;
    }
  }
  if (!found) overflow_.fetch_sub(1, std::memory_order_seq_cst);
  wake_writer_if_waiting();
}

void SharedMutex::wake_writer_if_waiting() noexcept {
  if ((writer_.rw_.word.load(std::memory_order_seq_cst) & kTidMask) != 0) {
    drain_.fetch_add(1, std::memory_order_seq_cst);
    os::futex_wake(&drain_, 1);
  }
}

void SharedMutex::unlock_shared() noexcept { leave_shared(detail::this_thread().tid); }

LockStatus SharedMutex::try_acquire_shared() noexcept { return acquire_shared_until_ns(-1, true); }

LockStatus SharedMutex::acquire_shared_until(
    std::chrono::steady_clock::time_point deadline) noexcept {
  return acquire_shared_until_ns(sync::deadline_ns(deadline), false);
}

LockStatus SharedMutex::acquire_shared_until_ns(std::int64_t deadline_ns, bool once) noexcept {
  detail::ThreadState& ts = detail::this_thread();
  auto& word = writer_.rw_.word;
  bool counted = false;
  int spins = 0;
  const auto leave = [&] {
    if (counted) writer_.waiters().fetch_sub(1, std::memory_order_relaxed);
  };
  for (;;) {
    if (writer_.not_recoverable()) {
      leave();
      return LockStatus::not_recoverable;
    }
    std::uint32_t v = word.load(std::memory_order_acquire);
    if ((v & kTidMask) == 0) {
      if ((v & kOwnerDied) != 0) {
        // The last writer died: this reader takes the lock exclusively to repair.
        detail::robust_begin(ts, writer_.rw_);
        const LockStatus st = writer_.acquire_slow(ts, -1, true);
        if (st == LockStatus::owner_died) {
          leave();
          // Exclusive access needs the readers still inside to leave; a try or a deadline
          // may not wait for that.
          const bool drained = once ? readers() == 0 : drain_readers(deadline_ns);
          if (!drained) {
            back_out(st);
            return once ? LockStatus::busy : LockStatus::timed_out;
          }
          return st;
        }
        if (st == LockStatus::acquired) unlock();  // repaired meanwhile by someone else
        continue;
      }
      if (try_enter_shared(ts.tid)) {
        leave();
        return LockStatus::acquired;
      }
      continue;
    }
    if (once) {
      leave();
      return LockStatus::busy;
    }
    if (sync::wait_for_owner(ts, word, v, writer_.waiters(), spins, counted, deadline_ns) ==
        sync::Step::timed_out) {
      leave();
      return LockStatus::timed_out;
    }
  }
}

}  // namespace shmkit
