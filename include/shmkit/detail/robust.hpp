// SPDX-License-Identifier: MIT
// The robust futex word every owned lock is built on, and the per-thread state its inline
// fast paths need. Not for users: names here may change.
//
// How owner death is noticed. Linux keeps, per thread, a "robust list" of the futex words
// the thread owns; when a thread exits for any reason (SIGKILL included) the kernel walks it
// and, for each word still holding the thread's id, sets FUTEX_OWNER_DIED and wakes one
// waiter. glibc registers one list per thread for its robust pthread mutexes; shmkit links
// its words into that same list, in glibc's own node format, so both coexist:
//
//   RobustWord (40 bytes, identical in 32- and 64-bit processes)
//   +0  word    tid | WAITERS | OWNER_DIED      <- the futex
//   +4  aux[4]  free for the owning type (state, metering)
//   +20 next32  list link when the owner is a 32-bit process (glibc i386: futex_offset -20)
//   +24 prev64  \ list links when the owner is a 64-bit process
//   +32 next64  / (glibc x86-64: doubly linked, futex_offset -32)
//
// The links hold addresses that mean something only to the owning thread while it owns the
// word (the one exception to "no addresses in shared memory"; nobody else reads them). If the
// registered list does not have glibc's futex_offset (another libc), words are not linked
// and waiters fall back to checking the owner's liveness on a timer.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shmkit/detail/config.hpp"

namespace shmkit::detail {

inline constexpr std::uint32_t kWaiters = 0x80000000u;    // FUTEX_WAITERS
inline constexpr std::uint32_t kOwnerDied = 0x40000000u;  // FUTEX_OWNER_DIED
inline constexpr std::uint32_t kTidMask = 0x3fffffffu;    // FUTEX_TID_MASK
inline constexpr std::size_t kCacheLine = 64;

/// Tells the core a spin-wait is in progress (x86 PAUSE).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

/// The kernel's struct robust_list_head, as registered by the C library.
struct RobustHead {
  void* list;           // first node (its link field), or the head itself when empty
  long futex_offset;    // word address minus node address
  void* list_op_pending;
};

/// A futex word with robust-list links. See the diagram above.
struct alignas(8) RobustWord {
  std::atomic<std::uint32_t> word;  // owner tid | kWaiters | kOwnerDied; 0 = free
  std::uint32_t aux[4];             // the owning type's fields
  std::uint32_t next32;             // 32-bit owner's link (address, owner-private)
  std::uint64_t prev64;             // 64-bit owner's back link (address, owner-private)
  std::uint64_t next64;             // 64-bit owner's link (address, owner-private)
};
static_assert(sizeof(RobustWord) == 40 && alignof(RobustWord) == 8);
static_assert(offsetof(RobustWord, next32) == 20 && offsetof(RobustWord, prev64) == 24 &&
              offsetof(RobustWord, next64) == 32);
static_assert(std::is_standard_layout_v<RobustWord>);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

/// What a thread caches to lock without system calls. All zero until first use.
struct ThreadState {
  std::int32_t tid;    // kernel thread id; 0 = not yet initialised
  bool robust;         // words are linked into `head`
  bool light_release;  // this process answers heavy fences: release may be store + load
  bool heavy_fence;    // this thread can issue heavy fences when it goes to sleep
  bool spin;           // the machine has more than one CPU: spinning can see a partner's progress
  RobustHead* head;    // this thread's robust list (glibc's)
};

/// This thread's state. Reset in the child after fork(), where the tid changes.
SHMKIT_API extern thread_local constinit ThreadState tls_state;

/// Fills tls_state (gettid, get_robust_list); the first lock of each thread calls it.
SHMKIT_API ThreadState& init_thread_state() noexcept;

inline ThreadState& this_thread() noexcept {
  ThreadState& ts = tls_state;
  if (ts.tid == 0) [[unlikely]] return init_thread_state();
  return ts;
}

#if UINTPTR_MAX > 0xffffffffu
inline void* link_of(RobustWord& w) noexcept { return &w.next64; }
#else
inline void* link_of(RobustWord& w) noexcept { return &w.next32; }
#endif

/// Marks `w` as being acquired or released, so the kernel looks at it even if the thread
/// dies before the list is consistent again.
inline void robust_begin(ThreadState& ts, RobustWord& w) noexcept {
  if (ts.robust) ts.head->list_op_pending = link_of(w);
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

inline void robust_end(ThreadState& ts) noexcept {
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (ts.robust) ts.head->list_op_pending = nullptr;
}

/// Links `w` (now owned by this thread) at the head of the thread's list. The kernel may
/// read the list at any instruction (the thread can die anywhere), so the new node is
/// complete before the head points at it.
inline void robust_link(ThreadState& ts, RobustWord& w) noexcept {
  if (!ts.robust) return;
  RobustHead* head = ts.head;
  void* first = head->list;
#if UINTPTR_MAX > 0xffffffffu
  // glibc x86-64: a node's back link sits one pointer before its forward link.
  auto* first_prev = reinterpret_cast<void**>(
      (reinterpret_cast<std::uintptr_t>(first) & ~std::uintptr_t{1}) - sizeof(void*));
  *first_prev = &w.next64;
  w.next64 = reinterpret_cast<std::uintptr_t>(first);
  w.prev64 = reinterpret_cast<std::uintptr_t>(head);
#else
  w.next32 = static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(first));
#endif
  std::atomic_signal_fence(std::memory_order_seq_cst);
  head->list = link_of(w);
}

/// Unlinks `w` from this thread's list (before the word is released).
inline void robust_unlink(ThreadState& ts, RobustWord& w) noexcept {
  if (!ts.robust) return;
#if UINTPTR_MAX > 0xffffffffu
  (void)ts;
  const std::uintptr_t next = static_cast<std::uintptr_t>(w.next64) & ~std::uintptr_t{1};
  const std::uintptr_t prev = static_cast<std::uintptr_t>(w.prev64) & ~std::uintptr_t{1};
  *reinterpret_cast<void**>(next - sizeof(void*)) = reinterpret_cast<void*>(w.prev64);
  *reinterpret_cast<void**>(prev) = reinterpret_cast<void*>(w.next64);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  w.prev64 = 0;
  w.next64 = 0;
#else
  // glibc i386: singly linked; our node is almost always the first.
  void** runp = &ts.head->list;
  void* mine = link_of(w);
  while ((reinterpret_cast<std::uintptr_t>(*runp) & ~std::uintptr_t{1}) !=
         reinterpret_cast<std::uintptr_t>(mine)) {
    if (*runp == static_cast<void*>(ts.head)) return;  // not linked: nothing to do
    runp = reinterpret_cast<void**>(reinterpret_cast<std::uintptr_t>(*runp) & ~std::uintptr_t{1});
  }
  *runp = reinterpret_cast<void*>(static_cast<std::uintptr_t>(w.next32));
  std::atomic_signal_fence(std::memory_order_seq_cst);
  w.next32 = 0;
#endif
}

}  // namespace shmkit::detail
