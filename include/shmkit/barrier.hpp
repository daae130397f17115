// SPDX-License-Identifier: MIT
// Barrier: a reusable barrier for a fixed number of parties, across processes, that breaks
// instead of hanging when a party dies.
//
// The state word packs the generation (high 16 bits) and the arrivals in it (low 16 bits),
// so an arrival, the last arrival's release, and a timed-out party's withdrawal are each one
// compare-and-swap. The barrier remembers each party thread (up to kTrackedParties) and the
// generation it last reached; a sleeper that finds one of them dead before it arrived marks
// the barrier broken and wakes everyone.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "shmkit/detail/config.hpp"

namespace shmkit {

/// How arrive_and_wait() ended.
enum class BarrierStatus : std::uint8_t {
  released,       ///< every party arrived
  released_last,  ///< every party arrived; the caller was the last (PTHREAD_BARRIER_SERIAL_THREAD)
  broken,         ///< a party died before arriving, or reset() was called: nobody waits more
  timed_out,      ///< the deadline passed; the caller's arrival was withdrawn
};

/// A process-shared, reusable barrier. Thread- and process-safe; 512 bytes. Construct it with
/// the number of parties (or call init()); zero bytes are a barrier that is not set up.
class SHMKIT_API Barrier {
 public:
  /// Parties whose liveness the barrier tracks; more may take part, untracked.
  static constexpr std::uint32_t kTrackedParties = 60;
  /// The most parties a barrier can have.
  static constexpr std::uint32_t kMaxParties = 0xffff;

  constexpr Barrier() noexcept = default;
  constexpr explicit Barrier(std::uint32_t parties) noexcept : parties_(parties) {}
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  /// (Re)initialises for `parties` parties (1..kMaxParties): clears arrivals, breakage and
  /// the tracked parties. Only while nobody waits. Throws nothing; a bad count is clamped.
  void init(std::uint32_t parties) noexcept;

  /// Registers the calling thread as a party before its first arrival, so that its death
  /// breaks the barrier even then. Threads are otherwise registered when they first arrive.
  void join() noexcept;
  /// Unregisters the calling thread (it will not arrive any more and may exit freely).
  void leave() noexcept;

  /// Arrives and waits for the other parties.
  [[nodiscard]] BarrierStatus arrive_and_wait() noexcept;
  /// As arrive_and_wait(), giving up at `deadline` (the arrival is then withdrawn).
  [[nodiscard]] BarrierStatus arrive_and_wait_until(
      std::chrono::steady_clock::time_point deadline) noexcept;

  /// True once a party died (or reset() was called) until init().
  bool broken() const noexcept { return broken_.load(std::memory_order_acquire) != 0; }
  /// Breaks the barrier, releasing every waiter with `broken`.
  void reset() noexcept;

  std::uint32_t parties() const noexcept { return parties_; }
  /// Parties that have arrived in the current generation (a snapshot).
  std::uint32_t arrived() const noexcept { return state_.load(std::memory_order_relaxed) & 0xffff; }
  /// Completed generations, modulo 65536 (a snapshot).
  std::uint32_t generation() const noexcept { return state_.load(std::memory_order_relaxed) >> 16; }

 private:
  struct Member {
    std::atomic<std::uint32_t> tid{0};  // party thread; 0 = free slot
    std::atomic<std::uint32_t> gen{0};  // generation it last arrived in, +1 (0 = never)
  };
  int member_slot(std::int32_t tid, bool claim) noexcept;
  bool party_died(std::uint32_t gen) noexcept;
  void break_now() noexcept;

  std::atomic<std::uint32_t> state_{0};   // futex word: generation << 16 | arrived
  std::uint32_t parties_ = 0;             // set by init / the constructor
  std::atomic<std::uint32_t> broken_{0};  // 1 once broken
  std::atomic<std::uint32_t> waiters_{0}; // sleepers
  std::uint32_t reserved_[4] = {};
  Member members_[kTrackedParties];
};
static_assert(sizeof(Barrier) == 512, "Barrier layout is shared");
static_assert(std::is_standard_layout_v<Barrier>);

}  // namespace shmkit
