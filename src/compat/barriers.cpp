// SPDX-License-Identifier: MIT
// IRIX barriers (barrier_t): new_barrier, init_barrier, barrier, free_barrier, on shmkit's
// Mutex and Event.
//
// IRIX barriers have no members and no fixed size: barrier(b, n) waits until n processes have
// entered, and any n processes make a round. So the first arrival of a round sets its count,
// the last one bumps a generation counter that is never reset and notifies the Event; the
// others wait (spinning briefly, then sleeping) until the generation moves on. A process that
// leaves round k and enters again belongs to round k+1. As on IRIX, a party that dies before it
// arrives leaves the others waiting; one that dies while waiting has arrived and blocks nobody.
//
// (shmkit::Barrier fixes its party count at init(), and init() restarts its generations, which
// a sleeper of the round just completed could mistake for its own: hence this.)
#include "compat/compat.hpp"

namespace shmkit::compat {
namespace {

constexpr unsigned kMaxParties = 256;  // IRIX: more waiters give EPROCLIM (EINVAL here)

IrixBarrier* barrier_of(barrier_t* b, const char* call, usptr_s** arena = nullptr) noexcept {
  usptr_s* h = b == nullptr ? nullptr : owner_of(b);
  const auto a = reinterpret_cast<std::uintptr_t>(b);
  if (h == nullptr || a % alignof(IrixBarrier) != 0 ||
      a + sizeof(IrixBarrier) > reinterpret_cast<std::uintptr_t>(h->arena().base()) + h->arena().size() ||
      reinterpret_cast<IrixBarrier*>(b)->magic != kBarrierMagic) {
    (void)fail(EINVAL, call, "%p is not a barrier", static_cast<void*>(b));
    return nullptr;
  }
  if (ensure_user(h, call) != 0) return nullptr;
  if (arena != nullptr) *arena = h;
  return reinterpret_cast<IrixBarrier*>(b);
}

// The guard protects two counters that are always consistent between statements, so a holder
// that died is simply accepted.
bool lock_guard(IrixBarrier* k) noexcept {
  const LockStatus st = k->guard.acquire();
  if (st == LockStatus::owner_died) k->guard.mark_consistent();
  return st == LockStatus::acquired || st == LockStatus::owner_died;
}

}  // namespace
}  // namespace shmkit::compat

using namespace shmkit;
using namespace shmkit::compat;

extern "C" SHMKIT_ULOCKS_API barrier_t* new_barrier(usptr_t* handle) {
  usptr_s* h = checked(handle, "new_barrier");
  if (h == nullptr || ensure_user(h, "new_barrier") != 0) return nullptr;
  auto* k = static_cast<IrixBarrier*>(arena_alloc(h, sizeof(IrixBarrier), alignof(IrixBarrier)));
  if (k == nullptr) {
    fail(ENOMEM, "new_barrier", "no room in the arena");
    return nullptr;
  }
  // Zero bytes: a free guard, no arrivals, generation 0, an Event nobody waits on.
  __atomic_store_n(&k->magic, kBarrierMagic, __ATOMIC_RELEASE);
  trace("new_barrier", "%p", static_cast<void*>(k));
  return reinterpret_cast<barrier_t*>(k);
}

extern "C" SHMKIT_ULOCKS_API void init_barrier(barrier_t* b) {
  IrixBarrier* k = barrier_of(b, "init_barrier");
  if (k == nullptr || !lock_guard(k)) return;
  // Forget the arrivals of an unfinished round; anyone still waiting in it is released.
  k->count = 0;
  k->round_parties = 0;
  k->generation.fetch_add(1, std::memory_order_release);
  k->guard.unlock();
  k->released.notify_all();
}

extern "C" SHMKIT_ULOCKS_API void barrier(barrier_t* b, unsigned n) {
  // errno is the only way barrier() reports an error: what the futex calls inside leave
  // there (EAGAIN, EINTR) must not show.
  const int saved_errno = errno;
  IrixBarrier* k = barrier_of(b, "barrier");
  if (k == nullptr) return;
  if (n == 0 || n > kMaxParties) {
    (void)fail(EINVAL, "barrier", "%u parties (1..%u)", n, kMaxParties);
    return;
  }
  if (!lock_guard(k)) {
    (void)fail(ENOTRECOVERABLE, "barrier", "its lock is not recoverable");
    return;
  }
  const std::uint32_t gen = k->generation.load(std::memory_order_relaxed);
  if (k->count == 0) k->round_parties = n;
  if (++k->count >= k->round_parties) {
    k->count = 0;
    k->generation.store(gen + 1, std::memory_order_release);
    k->guard.unlock();
    k->released.notify_all();
  } else {
    k->guard.unlock();
    (void)k->released.wait_for_condition(
        [k, gen] { return k->generation.load(std::memory_order_acquire) != gen; });
  }
  errno = saved_errno;
}

extern "C" SHMKIT_ULOCKS_API void free_barrier(barrier_t* b) {
  usptr_s* h = nullptr;
  IrixBarrier* k = barrier_of(b, "free_barrier", &h);
  if (k == nullptr) return;
  __atomic_store_n(&k->magic, kFreedMagic, __ATOMIC_RELEASE);
  h->arena().deallocate(k);
}
