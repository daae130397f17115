// SPDX-License-Identifier: MIT
// IRIX locks (ulock_t): usnewlock … usctllock, on shmkit's robust Mutex.
//
// A ulock_t is the address of an IrixLock in the arena. The fast path is the Mutex's: one
// compare-and-swap, no system call; a busy lock is spun on briefly, then slept on (IRIX spun,
// then yielded). A holder that dies is noticed by the kernel: the next ussetlock gets the lock
// as usual (IRIX's return values do not change) and, with _uerror set, says so on stderr.
// Locks of a US_DEBUG / US_DEBUGPLUS arena keep lockmeter_t and lockdebug_t figures.
#include <cstdarg>
#include <cstdio>

#include "compat/compat.hpp"
#include "shmkit/detail/robust.hpp"

namespace shmkit::compat {
namespace {

// The lock at `l`, after checking that it is one (never reading outside an arena), with the
// caller made an IRIX user of its arena (a forked child's first use joins, as in IRIX).
IrixLock* lock_of(ulock_t l, const char* call, usptr_s** arena = nullptr) noexcept {
  usptr_s* h = l == nullptr ? nullptr : owner_of(l);
  const auto a = reinterpret_cast<std::uintptr_t>(l);
  if (h == nullptr || a % alignof(IrixLock) != 0 ||
      a + sizeof(IrixLock) > reinterpret_cast<std::uintptr_t>(h->arena().base()) + h->arena().size() ||
      static_cast<IrixLock*>(l)->magic != kLockMagic) {
    (void)fail(EINVAL, call, "%p is not a lock", l);
    return nullptr;
  }
  if (ensure_user(h, call) != 0) return nullptr;
  if (arena != nullptr) *arena = h;
  return static_cast<IrixLock*>(l);
}

bool debug(const IrixLock* k) noexcept { return k->type != US_NODEBUG; }

void complain(const IrixLock* k, const char* call, const char* what) noexcept {
  if (k->type == US_DEBUGPLUS || _uerror != 0) {
    std::fprintf(stderr, "%s: lock %p: %s (pid %d)\n", call, static_cast<const void*>(k), what,
                 static_cast<int>(my_pid()));
  }
}

// Finishes an acquisition: 1, or -1 if the lock cannot be used any more.
int acquired(IrixLock* k, LockStatus st, const char* call) noexcept {
  if (st == LockStatus::owner_died) {
    // IRIX left such a lock held for ever; we hand it over, and say so when asked to.
    k->mutex.mark_consistent();
    if (_uerror != 0) complain(k, call, "its previous holder died holding it");
  } else if (st != LockStatus::acquired) {
    return fail(ENOTRECOVERABLE, call, "lock %p is not recoverable", static_cast<void*>(k));
  }
  if (debug(k)) k->owner_pid.store(my_pid(), std::memory_order_relaxed);
  return 1;
}

// A second set by the holder would wait for ever: IRIX's "double trip".
bool double_trip(IrixLock* k, const char* call) noexcept {
  if (k->mutex.owner() != detail::this_thread().tid) return false;
  complain(k, call, "set twice by its holder (double trip)");
  (void)fail(EDEADLK, call, "lock %p is already held by the caller", static_cast<void*>(k));
  return true;
}

// Spins up to `spins` tries; true once taken (`st` then says how).
bool spin_for(IrixLock* k, unsigned spins, LockStatus& st) noexcept {
  for (unsigned i = 0; i < (spins == 0 ? 1u : spins); ++i) {
    st = k->mutex.try_acquire();
    if (st != LockStatus::busy) return true;
    detail::cpu_relax();
  }
  return false;
}

int set_lock(ulock_t lock, unsigned spins, const char* call) noexcept {
  IrixLock* k = lock_of(lock, call);
  if (k == nullptr) return -1;
  if (debug(k)) k->tries.fetch_add(1, std::memory_order_relaxed);
  if (double_trip(k, call)) return -1;
  LockStatus st = LockStatus::busy;
  if (!spin_for(k, spins, st)) {
    if (debug(k)) k->spins.fetch_add(1, std::memory_order_relaxed);
    st = k->mutex.acquire();  // spins a little more, then sleeps (IRIX: yield, try again)
  }
  return acquired(k, st, call);
}

}  // namespace
}  // namespace shmkit::compat

using namespace shmkit;
using namespace shmkit::compat;

extern "C" SHMKIT_ULOCKS_API ulock_t usnewlock(usptr_t* handle) {
  usptr_s* h = checked(handle, "usnewlock");
  if (h == nullptr || ensure_user(h, "usnewlock") != 0) return nullptr;
  auto* k = static_cast<IrixLock*>(arena_alloc(h, sizeof(IrixLock), alignof(IrixLock)));
  if (k == nullptr) {
    fail(ENOMEM, "usnewlock", "no room in the arena");
    return nullptr;
  }
  // Zero bytes are a free Mutex.
  k->type = h->hdr->lock_type;
  k->owner_pid.store(-1, std::memory_order_relaxed);
  if (debug(k)) k->mutex.set_metering(true);
  __atomic_store_n(&k->magic, kLockMagic, __ATOMIC_RELEASE);
  trace("usnewlock", "%p", static_cast<void*>(k));
  return k;
}

extern "C" SHMKIT_ULOCKS_API int usinitlock(ulock_t lock) {
  IrixLock* k = lock_of(lock, "usinitlock");
  if (k == nullptr) return -1;
  k->mutex.reset();
  k->mutex.reset_meter();
  k->tries.store(0, std::memory_order_relaxed);
  k->spins.store(0, std::memory_order_relaxed);
  k->owner_pid.store(-1, std::memory_order_relaxed);
  return 0;
}

extern "C" SHMKIT_ULOCKS_API void usfreelock(ulock_t lock, usptr_t* handle) {
  usptr_s* h = nullptr;
  IrixLock* k = lock_of(lock, "usfreelock", &h);
  if (k == nullptr) return;
  if (handle != nullptr && checked(handle, "usfreelock") != h) return;
  // A held Mutex is linked into its holder's robust list, which the kernel writes through when
  // the thread exits: never free it held.
  if (k->mutex.owner() == detail::this_thread().tid) k->mutex.unlock();
  __atomic_store_n(&k->magic, kFreedMagic, __ATOMIC_RELEASE);
  h->arena().deallocate(k);
}

extern "C" SHMKIT_ULOCKS_API int ussetlock(ulock_t lock) { return set_lock(lock, 0, "ussetlock"); }

extern "C" SHMKIT_ULOCKS_API int uswsetlock(ulock_t lock, unsigned spins) {
  return set_lock(lock, spins, "uswsetlock");
}

extern "C" SHMKIT_ULOCKS_API int uscsetlock(ulock_t lock, unsigned spins) {
  IrixLock* k = lock_of(lock, "uscsetlock");
  if (k == nullptr) return -1;
  if (debug(k)) k->tries.fetch_add(1, std::memory_order_relaxed);
  if (k->mutex.owner() == detail::this_thread().tid) {
    complain(k, "uscsetlock", "set twice by its holder (double trip)");
    return 0;
  }
  LockStatus st = LockStatus::busy;
  if (!spin_for(k, spins, st)) {
    if (debug(k)) k->spins.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  return acquired(k, st, "uscsetlock");
}

extern "C" SHMKIT_ULOCKS_API int ustestlock(ulock_t lock) {
  IrixLock* k = lock_of(lock, "ustestlock");
  if (k == nullptr) return -1;
  return k->mutex.is_locked() ? 1 : 0;
}

extern "C" SHMKIT_ULOCKS_API int usunsetlock(ulock_t lock) {
  IrixLock* k = lock_of(lock, "usunsetlock");
  if (k == nullptr) return -1;
  const std::int32_t owner = k->mutex.owner();
  if (owner == 0) {
    complain(k, "usunsetlock", "unset while free");
    return 0;
  }
  if (owner != detail::this_thread().tid) {
    // The Mutex is robust: only its holder may release it (the kernel tracks it per thread).
    complain(k, "usunsetlock", "unset by a process other than its holder");
    return fail(EPERM, "usunsetlock", "lock %p is held by thread %d", lock, static_cast<int>(owner));
  }
  if (debug(k)) k->owner_pid.store(-1, std::memory_order_relaxed);
  k->mutex.unlock();
  return 0;
}

extern "C" SHMKIT_ULOCKS_API int usctllock(ulock_t lock, int cmd, ...) {
  IrixLock* k = lock_of(lock, "usctllock");
  if (k == nullptr) return -1;
  if (!debug(k)) return fail(EINVAL, "usctllock", "the arena's locks are US_NODEBUG");
  va_list ap;
  va_start(ap, cmd);
  int result = 0;
  switch (cmd) {
    case CL_METERFETCH: {
      auto* out = va_arg(ap, lockmeter_t*);
      if (out == nullptr) {
        result = fail(EINVAL, "usctllock", "no lockmeter_t");
        break;
      }
      out->lm_spins = static_cast<int>(k->spins.load(std::memory_order_relaxed));
      out->lm_tries = static_cast<int>(k->tries.load(std::memory_order_relaxed));
      out->lm_hits = static_cast<int>(k->mutex.meter().acquisitions);
      break;
    }
    case CL_METERRESET:
      k->mutex.reset_meter();
      k->tries.store(0, std::memory_order_relaxed);
      k->spins.store(0, std::memory_order_relaxed);
      break;
    case CL_DEBUGFETCH: {
      auto* out = va_arg(ap, lockdebug_t*);
      if (out == nullptr) {
        result = fail(EINVAL, "usctllock", "no lockdebug_t");
        break;
      }
      out->ld_owner_pid = k->mutex.is_locked() ? k->owner_pid.load(std::memory_order_relaxed) : -1;
      break;
    }
    case CL_DEBUGRESET: k->owner_pid.store(-1, std::memory_order_relaxed); break;
    default: result = fail(EINVAL, "usctllock", "unknown command %d", cmd); break;
  }
  va_end(ap);
  return result;
}

extern "C" SHMKIT_ULOCKS_API int usdumplock(ulock_t lock, FILE* fd, const char* str) {
  IrixLock* k = lock_of(lock, "usdumplock");
  if (k == nullptr) return -1;
  if (fd == nullptr) return fail(EINVAL, "usdumplock", "no FILE");
  const bool held = k->mutex.is_locked();
  std::fprintf(fd, "lock %p: %s", static_cast<void*>(k), held ? "held" : "free");
  if (debug(k)) {
    std::fprintf(fd, " owner pid %d, spins %u, tries %u, hits %llu",
                 held ? static_cast<int>(k->owner_pid.load(std::memory_order_relaxed)) : -1,
                 k->spins.load(std::memory_order_relaxed), k->tries.load(std::memory_order_relaxed),
                 static_cast<unsigned long long>(k->mutex.meter().acquisitions));
  }
  std::fprintf(fd, "\n%s\n", str != nullptr ? str : "");
  return 0;
}
