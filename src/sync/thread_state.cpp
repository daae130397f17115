// SPDX-License-Identifier: MIT
// Per-thread state behind the inline lock paths: the thread id and the robust list that the
// C library registered with the kernel.
#include <atomic>
#include <cstdint>

#include "os/os.hpp"
#include "shmkit/detail/robust.hpp"

namespace shmkit::detail {

thread_local constinit ThreadState tls_state{};

namespace {

// glibc's futex_offset for its own mutexes, which shmkit's RobustWord mirrors.
#if UINTPTR_MAX > 0xffffffffu
constexpr long kGlibcFutexOffset = -32;
#else
constexpr long kGlibcFutexOffset = -20;
#endif

// Whether this process registered for heavy fences (0 unknown, 1 yes, 2 no).
std::atomic<int> fence_registration{0};

// The child of fork() has a new thread id, an emptied robust list and a new mm.
void reset_after_fork() {
  tls_state = ThreadState{};
  fence_registration.store(0, std::memory_order_relaxed);
}

bool registered_for_heavy_fence() {
  int r = fence_registration.load(std::memory_order_acquire);
  if (r == 0) {
    r = os::register_for_heavy_fence().ok() ? 1 : 2;
    fence_registration.store(r, std::memory_order_release);
  }
  return r == 1;
}

}  // namespace

ThreadState& init_thread_state() noexcept {
  static const bool registered = [] {
    (void)os::at_fork_child(&reset_after_fork);
    return true;
  }();
  (void)registered;
  ThreadState& ts = tls_state;
  std::size_t length = 0;
  auto* head = static_cast<RobustHead*>(os::robust_list_head(&length));
  ts.robust = head != nullptr && length == sizeof(RobustHead) &&
              head->futex_offset == kGlibcFutexOffset;
  ts.head = ts.robust ? head : nullptr;
  ts.light_release = registered_for_heavy_fence();
  ts.heavy_fence = os::heavy_fence().ok();
  // Not this thread's affinity: a pinned thread's partner usually runs on another CPU.
  ts.spin = os::cpus_online() > 1;
  ts.tid = os::gettid();
  return ts;
}

}  // namespace shmkit::detail
