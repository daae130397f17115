// SPDX-License-Identifier: MIT
// The IRIX compat layer's private structures: what it keeps inside an IRIX arena next to the
// program's data, and each process's handle on an arena. Shared by src/compat/*.cpp.
//
// IRIX programs store raw pointers in their arenas (lock handles, the first datum), so an IRIX
// arena sits at the same address in every process (DESIGN invariant 1's one exception). The
// structures below therefore hold plain pointers too (the user table, history records, a
// semaphore's arena); the layout is not shared with processes of another word size, which
// IRIX never allowed either.
//
//   arena (file:<path>, same address everywhere)
//   +--------------+------------------------+---------------------------------------------+
//   | shmkit Arena | "shmkit.irix" IrixArena| IrixLock / IrixSema / IrixBarrier / hist_t / |
//   | header+users | (named object)         | program data: all from the arena allocator   |
//   +--------------+------------------------+---------------------------------------------+
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>

#include "shmkit/arena.hpp"
#include "shmkit/compat/ulocks.h"
#include "shmkit/event.hpp"
#include "shmkit/mutex.hpp"
#include "shmkit/semaphore.hpp"

namespace shmkit::compat {

// ---- In the arena ----

inline constexpr std::uint32_t kArenaMagic = 0x58495249;    // "IRIX"
inline constexpr std::uint32_t kLockMagic = 0x4b434c55;     // "ULCK"
inline constexpr std::uint32_t kSemaMagic = 0x4d455355;     // "USEM"
inline constexpr std::uint32_t kBarrierMagic = 0x52414255;  // "UBAR"
inline constexpr std::uint32_t kFreedMagic = 0x44414544;    // "DEAD": freed by us
inline constexpr std::uint32_t kFormat = 1;
inline constexpr char kHeaderName[] = "shmkit.irix";

/// The IRIX state of one arena: a named object made by whoever creates the arena. Besides
/// the creator's settings it holds the IRIX user table. An IRIX arena does not outlive its
/// users: a process that finds only dead ones marks it retired, removes the file and makes a
/// new arena, while processes still waiting on join_lock see `retired` and start over.
struct IrixArena {
  std::uint32_t magic = kArenaMagic;
  std::uint32_t format = kFormat;
  std::uint32_t max_users = 8;          // CONF_INITUSERS at creation (IRIX's limit)
  std::uint32_t lock_type = US_NODEBUG; // CONF_LOCKTYPE at creation
  std::atomic<std::uint64_t> info{0};   // the first datum (any pointer-sized value)
  Mutex join_lock;                      // guards users[] and retired
  std::int32_t* users = nullptr;        // pids of the IRIX users, max_users entries, 0 = free
  std::uint32_t retired = 0;            // 1: abandoned and removed, join a new one
  std::atomic<std::uint32_t> malloc_debug{0};  // M_DEBUG: check the arena on every call
  std::atomic<std::int32_t> clear_on_free{-1}; // M_CLRONFREE: fill byte, -1 = off
  std::atomic<std::uint32_t> opts[8] = {};     // other usmallopt values, recorded only
  // Semaphore history (CONF_HIST*): a doubly linked list of hist_t in the arena.
  Mutex hist_lock;                      // guards the fields below
  std::atomic<std::uint32_t> hist_on{0};  // the global flag (CONF_HISTON)
  std::uint32_t hist_max = 0;           // CONF_HISTSIZE, 0 = no limit but room
  hist_t* hist_newest = nullptr;
  hist_t* hist_oldest = nullptr;
  std::int32_t hist_entries = 0;
  std::int32_t hist_errors = 0;
};
static_assert(std::is_standard_layout_v<IrixArena>);

/// A lock (ulock_t points here). The mutex comes first so that it is 64-byte aligned.
struct alignas(64) IrixLock {
  Mutex mutex;
  std::uint32_t magic;                  // kLockMagic while allocated
  std::uint32_t type;                   // US_* of the arena when made
  std::atomic<std::int32_t> owner_pid;  // US_DEBUG*: the holder, -1 when free
  std::atomic<std::uint32_t> tries;     // US_DEBUG*: lm_tries (hits come from the mutex's meter)
  std::atomic<std::uint32_t> spins;     // US_DEBUG*: lm_spins
};
static_assert(sizeof(IrixLock) == 128 && std::is_standard_layout_v<IrixLock>);

inline constexpr std::uint32_t kSemMeter = 1, kSemDebug = 2, kSemHist = 4, kSemRecursive = 8,
                               kSemPollable = 16;

/// A semaphore (usema_t * points here). IRIX's count is `sem.value() - waiting`: negative
/// while processes wait.
struct alignas(64) IrixSema {
  Semaphore sem;
  std::uint32_t magic;                  // kSemaMagic while allocated
  std::atomic<std::uint32_t> flags;     // kSem*
  std::atomic<std::int32_t> waiting;    // P's that found no unit and have not got one yet
  std::atomic<std::int32_t> phits, psemas, vsemas, vnowait, maxnwait;  // semameter_t
  std::atomic<std::int32_t> owner_pid, last_pid;                       // semadebug_t
  std::atomic<std::uint64_t> owner_pc, last_pc;
  std::atomic<std::int32_t> rec_pid;    // CS_RECURSIVEON: the holder (pid and thread)
  std::atomic<std::uint64_t> rec_thread;
  std::int32_t rec_depth;               // extra acquisitions by the holder (holder only)
  IrixArena* arena;                     // its arena's IRIX state (history)
};
static_assert(std::is_standard_layout_v<IrixSema> && sizeof(IrixSema) == 192);

/// A barrier (barrier_t * points here). IRIX names the party count at each call, so a round
/// takes the count its first arrival gives; the last arrival bumps `generation` (never reset,
/// so a sleeper of an old round can never mistake a new one for its own) and wakes everyone.
struct alignas(64) IrixBarrier {
  Mutex guard;                           // count, round_parties
  std::uint32_t magic;                   // kBarrierMagic while allocated
  std::uint32_t count;                   // arrivals in this round (under guard)
  std::uint32_t round_parties;           // this round's n (under guard)
  std::atomic<std::uint32_t> generation; // completed rounds, mod 2^32 (written under guard)
  Event released;                        // notified when a round completes
};
static_assert(std::is_standard_layout_v<IrixBarrier> && sizeof(IrixBarrier) == 128);

}  // namespace shmkit::compat

// ---- In the process ----

/// One process's handle on an arena (usptr_t). Handles live in a fixed table and are never
/// freed, so a stale or foreign usptr_t * is recognised instead of followed.
struct usptr_s {
  std::atomic<std::uint32_t> live{0};        // 1 between usinit and the last usdetach
  alignas(shmkit::Arena) unsigned char storage[sizeof(shmkit::Arena)] = {};
  shmkit::compat::IrixArena* hdr = nullptr;
  std::string* key = nullptr;                // the canonical path; nullptr: anonymous
  int refs = 0;                              // usinit calls of this path in this process
  std::atomic<std::uint64_t> joined_gen{0};  // fork generation in which we registered
  std::atomic<std::uintptr_t> lo{0}, hi{0};  // the arena's address range

  shmkit::Arena& arena() noexcept {
    return *std::launder(reinterpret_cast<shmkit::Arena*>(storage));
  }
};

namespace shmkit::compat {

/// The per-process state shared by the compat files.
struct Process {
  std::mutex mutex;                        // handles' allocation and keys, pending settings
  std::atomic<std::uint64_t> fork_gen{0};  // bumped in every forked child
  std::atomic<std::int32_t> pid{0};        // this process's pid once known, 0 after fork
};
Process& process() noexcept;

/// Returns the live handle `u`, or nullptr (errno EINVAL) for NULL, a detached or foreign one.
usptr_s* checked(usptr_t* u, const char* call) noexcept;
/// Returns the handle of the arena holding address `p` in this process, or nullptr.
usptr_s* owner_of(const void* p) noexcept;
/// Registers the calling process as an IRIX user of `h` if it is not yet (a forked child:
/// IRIX's automatic usadd). Returns 0, or -1 with errno (EUSERS when the arena is full).
int ensure_user(usptr_s* h, const char* call) noexcept;
inline bool is_user(const usptr_s* h) noexcept {
  return h->joined_gen.load(std::memory_order_acquire) ==
         process().fork_gen.load(std::memory_order_relaxed);
}
/// This process's pid (known once it is a user of some arena).
inline std::int32_t my_pid() noexcept { return process().pid.load(std::memory_order_relaxed); }

/// Sets errno to `err`, prints `call: message` when _uerror or _utrace is set, and returns -1.
int fail(int err, const char* call, const char* fmt = nullptr, ...) noexcept
    __attribute__((format(printf, 3, 4)));
/// Prints `call: message` on stderr when _utrace is set.
void trace(const char* call, const char* fmt, ...) noexcept __attribute__((format(printf, 2, 3)));

/// Appends a semaphore history record if `s` logs history.
void log_history(IrixSema* s, int op, int count_after, const void* caller) noexcept;

/// Allocates `size` zeroed bytes aligned to `align` in `h`'s arena, or nullptr.
void* arena_alloc(usptr_s* h, std::size_t size, std::size_t align) noexcept;

}  // namespace shmkit::compat
