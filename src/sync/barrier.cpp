// SPDX-License-Identifier: MIT
// Barrier: arrivals by compare-and-swap on the packed state word, sleeping on it, and
// detecting parties that died before arriving.
#include "shmkit/barrier.hpp"

#include <climits>

#include "os/os.hpp"
#include "shmkit/detail/robust.hpp"
#include "sync/wait.hpp"

namespace shmkit {
namespace {
constexpr std::uint32_t kArrivedMask = 0xffff;
}

void Barrier::init(std::uint32_t parties) noexcept {
  parties_ = parties == 0 ? 1 : (parties > kMaxParties ? kMaxParties : parties);
  for (Member& m : members_) {
    m.tid.store(0, std::memory_order_relaxed);
    m.gen.store(0, std::memory_order_relaxed);
  }
  broken_.store(0, std::memory_order_relaxed);
  waiters_.store(0, std::memory_order_relaxed);
  state_.store(0, std::memory_order_release);
}

int Barrier::member_slot(std::int32_t tid, bool claim) noexcept {
  const auto me = static_cast<std::uint32_t>(tid);
  int free_slot = -1;
  for (int i = 0; i < static_cast<int>(kTrackedParties); ++i) {
    const std::uint32_t t = members_[i].tid.load(std::memory_order_relaxed);
    if (t == me) return i;
    if (t == 0 && free_slot < 0) free_slot = i;
  }
  if (!claim) return -1;
  for (int i = free_slot < 0 ? 0 : free_slot; i < static_cast<int>(kTrackedParties); ++i) {
    std::uint32_t expected = 0;
    if (members_[i].tid.compare_exchange_strong(expected, me, std::memory_order_relaxed)) {
      return i;
    }
  }
  return -1;  // more parties than tracked: this one takes part untracked
}

void Barrier::join() noexcept { (void)member_slot(detail::this_thread().tid, true); }

void Barrier::leave() noexcept {
  const int slot = member_slot(detail::this_thread().tid, false);
  if (slot >= 0) {
    members_[slot].gen.store(0, std::memory_order_relaxed);
    members_[slot].tid.store(0, std::memory_order_release);
  }
}

bool Barrier::party_died(std::uint32_t gen) noexcept {
  for (Member& m : members_) {
    const std::uint32_t tid = m.tid.load(std::memory_order_acquire);
    if (tid == 0 || m.gen.load(std::memory_order_relaxed) == gen + 1) continue;
    if (!os::thread_alive(static_cast<std::int32_t>(tid))) return true;
  }
  return false;
}

void Barrier::break_now() noexcept {
  broken_.store(1, std::memory_order_release);
  // Move the word so that sleepers about to sleep on the old value return at once.
  state_.fetch_add(1u << 16, std::memory_order_acq_rel);
  os::futex_wake(&state_, INT_MAX);
}

void Barrier::reset() noexcept { break_now(); }

BarrierStatus Barrier::arrive_and_wait() noexcept {
  return arrive_and_wait_until(std::chrono::steady_clock::time_point::max());
}

BarrierStatus Barrier::arrive_and_wait_until(
    std::chrono::steady_clock::time_point deadline) noexcept {
  if (broken()) return BarrierStatus::broken;
  const int slot = member_slot(detail::this_thread().tid, true);
  std::uint32_t s = state_.load(std::memory_order_relaxed);
  std::uint32_t gen = 0;
  for (;;) {
    gen = s >> 16;
    const std::uint32_t arrived = (s & kArrivedMask) + 1;
    const std::uint32_t next = arrived >= parties_ ? ((gen + 1) & 0xffff) << 16 : s + 1;
    if (slot >= 0) members_[slot].gen.store(gen + 1, std::memory_order_relaxed);
    if (state_.compare_exchange_weak(s, next, std::memory_order_acq_rel,
                                     std::memory_order_relaxed)) {
      if (arrived >= parties_) {
        os::futex_wake(&state_, INT_MAX);
        return BarrierStatus::released_last;
      }
      break;
    }
  }
  const std::int64_t deadline_ns = deadline == std::chrono::steady_clock::time_point::max()
                                       ? -1
                                       : sync::deadline_ns(deadline);
  // Spin briefly: the last party is often just behind.
  const std::int64_t spin_end = os::monotonic_ns() + sync::kSpinNs;
  for (unsigned i = 1; detail::tls_state.spin; ++i) {
    if ((state_.load(std::memory_order_acquire) >> 16) != gen) {
      return broken() ? BarrierStatus::broken : BarrierStatus::released;
    }
    detail::cpu_relax();
    if ((i & 63) == 0 && os::monotonic_ns() >= spin_end) break;
  }
  waiters_.fetch_add(1, std::memory_order_relaxed);
  BarrierStatus result = BarrierStatus::released;
  for (;;) {
    s = state_.load(std::memory_order_acquire);
    if ((s >> 16) != gen) {
      result = broken() ? BarrierStatus::broken : BarrierStatus::released;
      break;
    }
    const sync::Sleep sleep = sync::sleep_on(&state_, s, deadline_ns);
    if (sleep == sync::Sleep::timed_out) {
      // Withdraw the arrival unless the generation completed meanwhile.
      s = state_.load(std::memory_order_acquire);
      while ((s >> 16) == gen &&
             !state_.compare_exchange_weak(s, s - 1, std::memory_order_acq_rel)) {
      }
      if ((s >> 16) == gen) {
        if (slot >= 0) members_[slot].gen.store(gen, std::memory_order_relaxed);
        result = BarrierStatus::timed_out;
      } else {
        result = broken() ? BarrierStatus::broken : BarrierStatus::released;
      }
      break;
    }
    if (sleep == sync::Sleep::check_peer && party_died(gen)) {
      break_now();
      result = BarrierStatus::broken;
      break;
    }
  }
  waiters_.fetch_sub(1, std::memory_order_relaxed);
  return result;
}

}  // namespace shmkit
