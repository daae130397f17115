// SPDX-License-Identifier: MIT
// IRIX semaphores (usema_t): usnewsema … usctlsema, history records, and the pollable
// semaphore calls, on shmkit's Semaphore.
//
// IRIX's count goes negative while processes wait; shmkit's Semaphore counts only units. The
// IrixSema keeps the number of blocked P's beside it, so the IRIX count (ustestsema, history)
// is value() - waiting. Meter, debug and recursion data are kept here, by the same rules as
// IRIX (semameter_t, semadebug_t, CS_RECURSIVEON).
#include <pthread.h>

#include <cstdarg>
#include <cstdio>

#include "compat/compat.hpp"

namespace shmkit::compat {
namespace {

IrixSema* sema_of(usema_t* s, const char* call, usptr_s** arena = nullptr) noexcept {
  usptr_s* h = s == nullptr ? nullptr : owner_of(s);
  const auto a = reinterpret_cast<std::uintptr_t>(s);
  if (h == nullptr || a % alignof(IrixSema) != 0 ||
      a + sizeof(IrixSema) > reinterpret_cast<std::uintptr_t>(h->arena().base()) + h->arena().size() ||
      static_cast<IrixSema*>(s)->magic != kSemaMagic) {
    (void)fail(EINVAL, call, "%p is not a semaphore", s);
    return nullptr;
  }
  if (ensure_user(h, call) != 0) return nullptr;
  if (arena != nullptr) *arena = h;
  return static_cast<IrixSema*>(s);
}

bool has(const IrixSema* k, std::uint32_t flag) noexcept {
  return (k->flags.load(std::memory_order_relaxed) & flag) != 0;
}

int count_of(const IrixSema* k) noexcept {
  return static_cast<int>(k->sem.value()) - k->waiting.load(std::memory_order_relaxed);
}

std::uint64_t self_thread() noexcept { return static_cast<std::uint64_t>(pthread_self()); }

bool holder_is_me(const IrixSema* k) noexcept {
  return k->rec_pid.load(std::memory_order_relaxed) == my_pid() &&
         k->rec_thread.load(std::memory_order_relaxed) == self_thread();
}

void bump(std::atomic<std::int32_t>& c) noexcept { c.fetch_add(1, std::memory_order_relaxed); }

void reset_meter(IrixSema* k) noexcept {
  for (auto* c : {&k->phits, &k->psemas, &k->vsemas, &k->vnowait, &k->maxnwait}) {
    c->store(0, std::memory_order_relaxed);
  }
}

void reset_debug(IrixSema* k) noexcept {
  k->owner_pid.store(-1, std::memory_order_relaxed);
  k->last_pid.store(-1, std::memory_order_relaxed);
  k->owner_pc.store(0, std::memory_order_relaxed);
  k->last_pc.store(0, std::memory_order_relaxed);
}

// After a P got the semaphore.
void took(IrixSema* k, const void* caller) noexcept {
  if (has(k, kSemRecursive)) {
    k->rec_pid.store(my_pid(), std::memory_order_relaxed);
    k->rec_thread.store(self_thread(), std::memory_order_relaxed);
    k->rec_depth = 0;
  }
  if (has(k, kSemDebug)) {
    const auto pc = reinterpret_cast<std::uintptr_t>(caller);
    k->owner_pid.store(my_pid(), std::memory_order_relaxed);
    k->owner_pc.store(pc, std::memory_order_relaxed);
    k->last_pid.store(my_pid(), std::memory_order_relaxed);
    k->last_pc.store(pc, std::memory_order_relaxed);
  }
}

int p_sema(usema_t* sema, bool conditional, const void* caller, const char* call) noexcept {
  IrixSema* k = sema_of(sema, call);
  if (k == nullptr) return -1;
  const bool meter = has(k, kSemMeter);
  if (meter) bump(k->psemas);
  if (has(k, kSemRecursive) && holder_is_me(k)) {
    ++k->rec_depth;
    if (meter) bump(k->phits);
    log_history(k, conditional ? HOP_CPHIT : HOP_PHIT, count_of(k), caller);
    return 1;
  }
  if (k->sem.try_wait()) {
    if (meter) bump(k->phits);
    took(k, caller);
    log_history(k, conditional ? HOP_CPHIT : HOP_PHIT, count_of(k), caller);
    return 1;
  }
  if (conditional) {
    log_history(k, HOP_CPMISS, count_of(k), caller);
    return 0;
  }
  if (has(k, kSemPollable)) {
    // A pollable P queues the caller and returns 0; the wake-up comes through the descriptor
    // from usopenpollsema, which nobody can have here.
    return fail(EBADF, call, "pollable semaphore %p is not open", sema);
  }
  const std::int32_t now = k->waiting.fetch_add(1, std::memory_order_relaxed) + 1;
  if (meter) {
    std::int32_t most = k->maxnwait.load(std::memory_order_relaxed);
    while (now > most && !k->maxnwait.compare_exchange_weak(most, now, std::memory_order_relaxed)) {
    }
  }
  log_history(k, HOP_PSLEEP, count_of(k), caller);
  k->sem.wait();
  k->waiting.fetch_sub(1, std::memory_order_relaxed);
  took(k, caller);
  log_history(k, HOP_PWOKE, count_of(k), caller);
  return 1;
}

}  // namespace

void log_history(IrixSema* k, int op, int count_after, const void* caller) noexcept {
  if (!has(k, kSemHist)) return;
  usptr_s* h = owner_of(k);
  IrixArena& a = *k->arena;
  if (h == nullptr || a.hist_lock.acquire() == LockStatus::not_recoverable) return;
  a.hist_lock.mark_consistent();
  hist_t* r = nullptr;
  if (a.hist_max == 0 || a.hist_entries < static_cast<std::int32_t>(a.hist_max)) {
    r = static_cast<hist_t*>(h->arena().try_allocate(sizeof(hist_t), alignof(hist_t)));
    if (r == nullptr && a.hist_oldest != nullptr) {
      // No room: reuse the oldest record.
      r = a.hist_oldest;
      a.hist_oldest = r->h_next;
      if (a.hist_oldest != nullptr) a.hist_oldest->h_last = nullptr;
      else a.hist_newest = nullptr;
      --a.hist_entries;
    }
  }
  if (r == nullptr) {
    ++a.hist_errors;
  } else {
    r->h_sem = k;
    r->h_op = op;
    r->h_pid = my_pid();
    r->h_scnt = count_after;
    r->h_wpid = 0;
    r->h_cpc = static_cast<char*>(const_cast<void*>(caller));
    r->h_next = nullptr;
    r->h_last = a.hist_newest;
    if (a.hist_newest != nullptr) a.hist_newest->h_next = r;
    a.hist_newest = r;
    if (a.hist_oldest == nullptr) a.hist_oldest = r;
    ++a.hist_entries;
  }
  a.hist_lock.unlock();
}

}  // namespace shmkit::compat

using namespace shmkit;
using namespace shmkit::compat;

extern "C" SHMKIT_ULOCKS_API usema_t* usnewsema(usptr_t* handle, int val) {
  usptr_s* h = checked(handle, "usnewsema");
  if (h == nullptr || ensure_user(h, "usnewsema") != 0) return nullptr;
  if (val < 0 || val > 30000) {
    fail(EINVAL, "usnewsema", "value %d is not 0..30000", val);
    return nullptr;
  }
  auto* k = static_cast<IrixSema*>(arena_alloc(h, sizeof(IrixSema), alignof(IrixSema)));
  if (k == nullptr) {
    fail(ENOMEM, "usnewsema", "no room in the arena");
    return nullptr;
  }
  new (&k->sem) Semaphore(static_cast<std::uint32_t>(val));
  k->arena = h->hdr;
  reset_debug(k);
  if (h->hdr->hist_on.load(std::memory_order_relaxed) != 0) {
    k->flags.store(kSemHist, std::memory_order_relaxed);
  }
  __atomic_store_n(&k->magic, kSemaMagic, __ATOMIC_RELEASE);
  trace("usnewsema", "%p = %d", static_cast<void*>(k), val);
  return k;
}

extern "C" SHMKIT_ULOCKS_API int usinitsema(usema_t* sema, int val) {
  IrixSema* k = sema_of(sema, "usinitsema");
  if (k == nullptr) return -1;
  if (val < 0 || val >= 30000) return fail(EINVAL, "usinitsema", "value %d is not 0..29999", val);
  k->sem.reset(static_cast<std::uint32_t>(val));
  k->waiting.store(0, std::memory_order_relaxed);
  reset_meter(k);
  reset_debug(k);
  k->rec_pid.store(0, std::memory_order_relaxed);
  k->rec_depth = 0;
  std::uint32_t f = k->flags.load(std::memory_order_relaxed) & ~kSemHist;
  if (k->arena->hist_on.load(std::memory_order_relaxed) != 0) f |= kSemHist;
  k->flags.store(f, std::memory_order_relaxed);
  return 0;
}

extern "C" SHMKIT_ULOCKS_API void usfreesema(usema_t* sema, usptr_t* handle) {
  usptr_s* h = nullptr;
  IrixSema* k = sema_of(sema, "usfreesema", &h);
  if (k == nullptr) return;
  if (handle != nullptr && checked(handle, "usfreesema") != h) return;
  __atomic_store_n(&k->magic, kFreedMagic, __ATOMIC_RELEASE);
  h->arena().deallocate(k);
}

extern "C" SHMKIT_ULOCKS_API int uspsema(usema_t* sema) {
  return p_sema(sema, false, __builtin_return_address(0), "uspsema");
}

extern "C" SHMKIT_ULOCKS_API int uscpsema(usema_t* sema) {
  return p_sema(sema, true, __builtin_return_address(0), "uscpsema");
}

extern "C" SHMKIT_ULOCKS_API int usvsema(usema_t* sema) {
  IrixSema* k = sema_of(sema, "usvsema");
  if (k == nullptr) return -1;
  const void* caller = __builtin_return_address(0);
  const bool meter = has(k, kSemMeter);
  if (meter) bump(k->vsemas);
  if (has(k, kSemRecursive) && holder_is_me(k)) {
    if (k->rec_depth > 0) {
      --k->rec_depth;
      return 0;
    }
    k->rec_pid.store(0, std::memory_order_relaxed);
  }
  if (has(k, kSemDebug)) {
    k->owner_pid.store(-1, std::memory_order_relaxed);
    k->owner_pc.store(0, std::memory_order_relaxed);
    k->last_pid.store(my_pid(), std::memory_order_relaxed);
    k->last_pc.store(reinterpret_cast<std::uintptr_t>(caller), std::memory_order_relaxed);
  }
  const bool waiter = k->waiting.load(std::memory_order_relaxed) > 0;
  if (meter && !waiter) bump(k->vnowait);
  k->sem.post(1);
  log_history(k, waiter ? HOP_VWAKE : HOP_VNOWAKE, count_of(k), caller);
  return 0;
}

extern "C" SHMKIT_ULOCKS_API int ustestsema(usema_t* sema) {
  IrixSema* k = sema_of(sema, "ustestsema");
  return k == nullptr ? -1 : count_of(k);
}

extern "C" SHMKIT_ULOCKS_API int usctlsema(usema_t* sema, int cmd, ...) {
  IrixSema* k = sema_of(sema, "usctlsema");
  if (k == nullptr) return -1;
  va_list ap;
  va_start(ap, cmd);
  int result = 0;
  const auto set = [&](std::uint32_t flag, bool on) {
    if (on) k->flags.fetch_or(flag, std::memory_order_relaxed);
    else k->flags.fetch_and(~flag, std::memory_order_relaxed);
  };
  switch (cmd) {
    case CS_METERON:
      reset_meter(k);
      set(kSemMeter, true);
      break;
    case CS_METEROFF: set(kSemMeter, false); break;
    case CS_METERRESET: reset_meter(k); break;
    case CS_METERFETCH: {
      auto* out = va_arg(ap, semameter_t*);
      if (out == nullptr || !has(k, kSemMeter)) {
        result = fail(EINVAL, "usctlsema", out == nullptr ? "no semameter_t" : "metering is off");
        break;
      }
      out->sm_phits = k->phits.load(std::memory_order_relaxed);
      out->sm_psemas = k->psemas.load(std::memory_order_relaxed);
      out->sm_vsemas = k->vsemas.load(std::memory_order_relaxed);
      out->sm_vnowait = k->vnowait.load(std::memory_order_relaxed);
      out->sm_nwait = k->waiting.load(std::memory_order_relaxed);
      out->sm_maxnwait = k->maxnwait.load(std::memory_order_relaxed);
      break;
    }
    case CS_DEBUGON:
      reset_debug(k);
      set(kSemDebug, true);
      break;
    case CS_DEBUGOFF: set(kSemDebug, false); break;
    case CS_DEBUGRESET: reset_debug(k); break;
    case CS_DEBUGFETCH: {
      auto* out = va_arg(ap, semadebug_t*);
      if (out == nullptr || !has(k, kSemDebug)) {
        result = fail(EINVAL, "usctlsema", out == nullptr ? "no semadebug_t" : "debugging is off");
        break;
      }
      out->sd_owner_pid = k->owner_pid.load(std::memory_order_relaxed);
      out->sd_owner_pc = reinterpret_cast<char*>(
          static_cast<std::uintptr_t>(k->owner_pc.load(std::memory_order_relaxed)));
      out->sd_last_pid = k->last_pid.load(std::memory_order_relaxed);
      out->sd_last_pc = reinterpret_cast<char*>(
          static_cast<std::uintptr_t>(k->last_pc.load(std::memory_order_relaxed)));
      break;
    }
    case CS_HISTON:
      if (k->arena->hist_on.load(std::memory_order_relaxed) == 0) {
        result = fail(EINVAL, "usctlsema", "the arena's history is off (CONF_HISTON)");
        break;
      }
      set(kSemHist, true);
      break;
    case CS_HISTOFF: set(kSemHist, false); break;
    case CS_RECURSIVEON: set(kSemRecursive, true); break;
    case CS_RECURSIVEOFF: set(kSemRecursive, false); break;
    default: result = fail(EINVAL, "usctlsema", "unknown command %d", cmd); break;
  }
  va_end(ap);
  return result;
}

extern "C" SHMKIT_ULOCKS_API int usdumpsema(usema_t* sema, FILE* fd, const char* str) {
  IrixSema* k = sema_of(sema, "usdumpsema");
  if (k == nullptr) return -1;
  if (fd == nullptr) return fail(EINVAL, "usdumpsema", "no FILE");
  std::fprintf(fd, "semaphore %p: count %d", static_cast<void*>(k), count_of(k));
  if (has(k, kSemMeter)) {
    std::fprintf(fd, ", phits %d psemas %d vsemas %d vnowait %d nwait %d maxnwait %d",
                 k->phits.load(std::memory_order_relaxed), k->psemas.load(std::memory_order_relaxed),
                 k->vsemas.load(std::memory_order_relaxed), k->vnowait.load(std::memory_order_relaxed),
                 k->waiting.load(std::memory_order_relaxed), k->maxnwait.load(std::memory_order_relaxed));
  }
  if (has(k, kSemDebug)) {
    std::fprintf(fd, ", owner pid %d, last pid %d", k->owner_pid.load(std::memory_order_relaxed),
                 k->last_pid.load(std::memory_order_relaxed));
  }
  std::fprintf(fd, "\n%s\n", str != nullptr ? str : "");
  return 0;
}

// ---- Pollable semaphores: no descriptor to poll on Linux (see the porting notes) ----

extern "C" SHMKIT_ULOCKS_API usema_t* usnewpollsema(usptr_t* handle, int val) {
  usema_t* s = usnewsema(handle, val);
  if (s != nullptr) static_cast<IrixSema*>(s)->flags.fetch_or(kSemPollable, std::memory_order_relaxed);
  return s;
}

extern "C" SHMKIT_ULOCKS_API int usopenpollsema(usema_t* sema, mode_t) {
  if (sema_of(sema, "usopenpollsema") == nullptr) return -1;
  return fail(ENXIO, "usopenpollsema", "pollable semaphores have no device on Linux");
}

extern "C" SHMKIT_ULOCKS_API int usclosepollsema(usema_t* sema) {
  if (sema_of(sema, "usclosepollsema") == nullptr) return -1;
  return fail(EBADF, "usclosepollsema", "the semaphore was never opened");
}

extern "C" SHMKIT_ULOCKS_API int usfreepollsema(usema_t* sema, usptr_t* handle) {
  if (sema_of(sema, "usfreepollsema") == nullptr) return -1;
  usfreesema(sema, handle);
  return 0;
}
