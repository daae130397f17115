// SPDX-License-Identifier: MIT
// Condition: sleeping on the sequence number, re-acquiring the mutex.
#include "shmkit/condition.hpp"

#include "os/os.hpp"
#include "shmkit/detail/robust.hpp"
#include "sync/wait.hpp"

namespace shmkit {

CondWait Condition::wait_until(Mutex& m, std::chrono::steady_clock::time_point deadline) noexcept {
  const std::int64_t deadline_ns = deadline == std::chrono::steady_clock::time_point::max()
                                       ? -1
                                       : sync::deadline_ns(deadline);
  // Read while `m` is held: a notify after our unlock moves seq_ and the sleep returns.
  const std::uint32_t seq = seq_.load(std::memory_order_relaxed);
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  m.unlock();
  CondWait r;
  // A notify usually follows soon in a producer/consumer hand-off: spin before sleeping
  // (a cross-core wake-up costs tens of microseconds on small VMs).
  if (detail::this_thread().spin) {
    const std::int64_t spin_end = os::monotonic_ns() + sync::kSpinNs;
    for (unsigned i = 1; seq_.load(std::memory_order_acquire) == seq; ++i) {
      detail::cpu_relax();
      if ((i & 63) == 0 && (os::monotonic_ns() >= spin_end ||
                            (deadline_ns >= 0 && os::monotonic_ns() >= deadline_ns))) {
        break;
      }
    }
  }
  for (;;) {
    if (seq_.load(std::memory_order_acquire) != seq) break;
    const sync::Sleep s = sync::sleep_on(&seq_, seq, deadline_ns);
    if (s == sync::Sleep::timed_out) {
      r.timed_out = seq_.load(std::memory_order_relaxed) == seq;
      break;
    }
    if (s == sync::Sleep::woken || seq_.load(std::memory_order_relaxed) != seq) break;
  }
  waiters_.fetch_sub(1, std::memory_order_relaxed);
  r.lock = m.acquire();
  return r;
}

void Condition::wake(int count) noexcept { os::futex_wake(&seq_, count); }

}  // namespace shmkit
