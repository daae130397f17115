// SPDX-License-Identifier: MIT
// Event slow paths: registering (with the heavy fence that lets notify skip a real one),
// sleeping and waking.
#include "shmkit/event.hpp"

#include <cerrno>

#include "os/os.hpp"
#include "sync/wait.hpp"

namespace shmkit {

std::uint32_t Event::prepare_wait() noexcept {
  detail::ThreadState& ts = detail::this_thread();
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  // INV-EVENT-1, the waiter's side: notifiers in registered processes use only a compiler
  // fence, so make their earlier stores visible to the condition check that follows.
  if (ts.heavy_fence) (void)os::heavy_fence();
  return epoch_.load(std::memory_order_seq_cst);
}

bool Event::wait(std::uint32_t key) noexcept {
  return wait_until(key, std::chrono::steady_clock::time_point::max());
}

bool Event::wait_until(std::uint32_t key,
                       std::chrono::steady_clock::time_point deadline) noexcept {
  const std::int64_t deadline_ns = deadline == std::chrono::steady_clock::time_point::max()
                                       ? -1
                                       : sync::deadline_ns(deadline);
  // A thread that could not fence may miss a notify: it sleeps in short slices instead.
  const std::int64_t slice = detail::tls_state.heavy_fence ? -1 : sync::kUnfencedSleepNs;
  bool woken = true;
  while (epoch_.load(std::memory_order_acquire) == key) {
    const sync::Sleep s = sync::sleep_on(&epoch_, key, deadline_ns, slice);
    if (s == sync::Sleep::timed_out) {
      woken = epoch_.load(std::memory_order_acquire) != key;
      break;
    }
    if (s == sync::Sleep::check_peer) break;  // let the caller re-check its condition
  }
  waiters_.fetch_sub(1, std::memory_order_relaxed);
  return woken;
}

void Event::wake(int count) noexcept {
  epoch_.fetch_add(1, std::memory_order_release);
  os::futex_wake(&epoch_, count);
}

}  // namespace shmkit
