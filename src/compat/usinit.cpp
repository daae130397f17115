// SPDX-License-Identifier: MIT
// IRIX arenas: usconfig (settings for the next usinit, queries on an arena), usinit (create or
// join by path, at the creator's address), usadd, usdetach, and the process's handle table.
//
// An IRIX arena is the shmkit arena `file:<absolute path>`. Its IRIX state (settings, first
// datum, user table) is the named object "shmkit.irix", made by the creating process's
// initialiser. IRIX's user limit is kept in that table, under its own lock, while the shmkit
// arena gets room for more users than that: a forked child's first allocation joins the shmkit
// arena by itself, so that join must never be the one that hits the limit.
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <pthread.h>
#include <vector>

#include "compat/compat.hpp"
#include "shmkit/error.hpp"
#include "shmkit/segment.hpp"

extern "C" {
SHMKIT_ULOCKS_API int _utrace = 0;
SHMKIT_ULOCKS_API int _uerror = 0;
}

namespace shmkit::compat {
namespace {

constexpr std::size_t kMaxArenas = 256;       // arenas one process may have at once
constexpr std::uint32_t kMaxIrixUsers = 10000;  // IRIX's CONF_INITUSERS limit
constexpr std::size_t kPage = 4096;
constexpr std::uintptr_t kNoAddress = ~std::uintptr_t{0};

constinit usptr_s g_handles[kMaxArenas];
std::atomic<std::size_t> g_high{0};  // handles ever used: owner_of() looks at these only
constinit Process g_process;
std::mutex g_usinit_mutex;  // one usinit at a time in this process (then, if need be, one
std::mutex g_join_mutex;    // automatic usadd at a time; the fork handlers take both, in order)

// Settings for the next usinit (per process, kept until changed, as IRIX did).
struct Pending {
  std::uint32_t init_size = 65536;
  std::uint32_t init_users = 8;
  std::uint32_t lock_type = US_NODEBUG;
  std::uint32_t arena_type = US_GENERAL;
  std::uintptr_t attach = kNoAddress;
  std::uint32_t autogrow = 1;
  std::uint32_t autoresv = 0;
  std::uint32_t sthread[3] = {1, 1, 1};  // io, misc, malloc: recorded only
};
constinit Pending g_pending{};

void before_fork() noexcept {
  g_usinit_mutex.lock();
  g_join_mutex.lock();
  g_process.mutex.lock();
}
void after_fork_parent() noexcept {
  g_process.mutex.unlock();
  g_join_mutex.unlock();
  g_usinit_mutex.unlock();
}
void after_fork_child() noexcept {
  g_process.mutex.unlock();
  g_join_mutex.unlock();
  g_usinit_mutex.unlock();
  g_process.fork_gen.fetch_add(1, std::memory_order_relaxed);
  g_process.pid.store(0, std::memory_order_relaxed);
}

void setup_process() {
  static std::once_flag once;
  std::call_once(once, [] {
    (void)pthread_atfork(&before_fork, &after_fork_parent, &after_fork_child);
    if (std::getenv("USTRACE") != nullptr) _utrace = 1;
    if (std::getenv("USERROR") != nullptr) _uerror = 1;
  });
}

// ---- Errors ----

// The errno of the exception being handled (inside a catch block).
int current_errno() noexcept {
  try {
    throw;
  } catch (const Error& e) {
    return e.errnum() != 0 ? e.errnum() : EINVAL;
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  } catch (const std::filesystem::filesystem_error& e) {
    return e.code().value() != 0 ? e.code().value() : EINVAL;
  } catch (...) {
    return EINVAL;
  }
}

// Fails `call` with the exception being handled (inside a catch block): its errno, and its
// message on stderr when _uerror or _utrace asks (shmkit's Error already names the cause).
int fail_current(const char* call) noexcept {
  const int err = current_errno();
  if (_uerror != 0 || _utrace != 0) {
    try {
      throw;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", call, e.what());
    } catch (...) {
      std::fprintf(stderr, "%s: %s\n", call, std::strerror(err));
    }
  }
  errno = err;
  return -1;
}

// ---- The arena's IRIX user table ----

std::int32_t self_pid(Arena& a) {
  for (const ArenaUser& u : a.users()) {
    if (u.self) return u.pid;
  }
  return 0;
}

// Takes a robust mutex that guards data we can always repair (the user table is rebuilt from
// the live users each time), so a dead holder is simply accepted.
bool take(Mutex& m) noexcept {
  const LockStatus st = m.acquire();
  if (st == LockStatus::owner_died) m.mark_consistent();
  return st == LockStatus::acquired || st == LockStatus::owner_died;
}

// Clears the entries of processes that are no longer shmkit users of the arena (dead, or
// detached). Under join_lock.
void prune(Arena& a, IrixArena& hdr) {
  std::vector<std::int32_t> live;
  for (const ArenaUser& u : a.users()) {
    if (u.alive) live.push_back(u.pid);
  }
  for (std::uint32_t i = 0; i < hdr.max_users; ++i) {
    const std::int32_t pid = hdr.users[i];
    if (pid != 0 && std::find(live.begin(), live.end(), pid) == live.end()) hdr.users[i] = 0;
  }
}

enum class Join { ok, retry, full, failed };

// Makes `pid` an IRIX user of the arena. A process that is not the creator and finds no live
// IRIX user joined an arena every user has left: IRIX would initialise it again, so it
// retires it (removes the file; those waiting here start over) and asks the caller to retry.
Join register_user(Arena& a, IrixArena& hdr, std::int32_t pid, bool may_retire,
                   const std::string& name) {
  if (!take(hdr.join_lock)) return Join::failed;
  struct Unlock {
    Mutex& m;
    ~Unlock() { m.unlock(); }
  } unlock{hdr.join_lock};
  if (hdr.retired != 0) return Join::retry;
  prune(a, hdr);
  std::uint32_t others = 0;
  bool mine = false;
  for (std::uint32_t i = 0; i < hdr.max_users; ++i) {
    if (hdr.users[i] == pid) mine = true;
    else if (hdr.users[i] != 0) ++others;
  }
  if (mine) return Join::ok;
  if (others == 0 && may_retire && !name.empty()) {
    std::error_code ec;
    if (Segment::remove(name, ec)) {
      hdr.retired = 1;
      trace("usinit", "%s: every user had left; making it anew", name.c_str() + 5);
      return Join::retry;
    }
    // Cannot remove it (directory permissions): keep using what is there.
  }
  if (others >= hdr.max_users) return Join::full;
  for (std::uint32_t i = 0; i < hdr.max_users; ++i) {
    if (hdr.users[i] == 0) {
      hdr.users[i] = pid;
      return Join::ok;
    }
  }
  return Join::full;
}

void unregister_user(IrixArena& hdr, std::int32_t pid) noexcept {
  if (!take(hdr.join_lock)) return;
  for (std::uint32_t i = 0; i < hdr.max_users; ++i) {
    if (hdr.users[i] == pid) hdr.users[i] = 0;
  }
  hdr.join_lock.unlock();
}

IrixArena* find_header(Arena& a) {
  IrixArena* hdr = a.find<IrixArena>(kHeaderName);
  if (hdr == nullptr || hdr->magic != kArenaMagic || hdr->format != kFormat ||
      hdr->users == nullptr || hdr->max_users == 0 || hdr->max_users > kMaxIrixUsers) {
    throw Error(EINVAL, a.name().str(), "open", "a shmkit arena, but not an IRIX arena");
  }
  return hdr;
}

// ---- Opening ----

std::uintptr_t round_up(std::uintptr_t v, std::uintptr_t to) { return (v + to - 1) / to * to; }

// Where a creator maps a new arena when the program did not say (CONF_ATTACHADDR): a range
// that is empty in ordinary 64-bit processes (below the mmap area and the stacks, far above
// the program, its heap and the sanitizers' shadow), at a place derived from the path, so
// that joiners of the same path usually find the same address free at once.
void* default_address(const std::string& key, unsigned attempt, std::size_t max_size) {
  if (sizeof(void*) < 8) return nullptr;
  const std::uint64_t base = std::uint64_t{0x2000} << 32, span = std::uint64_t{0x1000} << 32;
  const std::uint64_t stride = round_up(max_size, std::uint64_t{1} << 30);
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  h += attempt * 0x9e3779b97f4a7c15ull;
  h ^= h >> 29;
  return reinterpret_cast<void*>(static_cast<std::uintptr_t>(base + (h % (span / stride)) * stride));
}

// Runs `open(config)`, raising max_size a page at a time while the shmkit arena says it is
// below what its metadata needs (only for a CONF_INITSIZE of a few pages with many users: the
// figure CONF_GETSIZE reports is then the real one).
template <class Open>
Arena with_room(ArenaConfig config, Open open) {
  for (int i = 0;; ++i) {
    try {
      return open(config);
    } catch (const Error& e) {
      if (e.errnum() != EINVAL || e.operation() != "create" || i > 4096) throw;
      config.max_size += kPage;
      if (!config.autogrow) config.size = config.max_size;
    }
  }
}

// True if `name` is a non-empty file that is neither an arena nor one being made (its first
// bytes are not all zero): IRIX would overwrite it; we refuse (EINVAL).
bool foreign_file(const std::string& name) {
  SegmentStat st;
  try {
    st = Segment::stat(name);
  } catch (const Error&) {
    return false;  // missing, or an error open_or_create will report
  }
  if (st.size == 0 || Arena::is_arena(name)) return false;
  try {
    OpenOptions o;
    o.access = Access::read_only;
    o.size = static_cast<std::size_t>(std::min<std::uint64_t>(st.size, 1024));
    Segment s = Segment::open(name, o);
    for (std::byte b : s.bytes()) {
      // A creator writes its magic first: look again, it may have done so since.
      if (b != std::byte{0}) return !Arena::is_arena(name);
    }
  } catch (const Error&) {
  }
  return false;
}

// Creates or joins the arena `name`. Joining maps it where its header says (EBUSY if that
// range is taken here); creating maps it at `wanted`, or at a default address.
Arena attach_named(const std::string& name, const std::string& key, ArenaConfig config,
                   const Arena::Init& init) {
  const bool chosen = config.attach_address != nullptr;
  bool kernel_chooses = false;
  for (unsigned attempt = 0;; ++attempt) {
    if (Arena::is_arena(name)) {
      try {
        return Arena::open(name);
      } catch (const Error& e) {
        if (e.operation() == "map" && e.errnum() == EEXIST) {
          throw Error(EBUSY, name, "map",
                      "the arena's address range is already in use in this process");
        }
        // ENOENT: removed meanwhile. EINVAL: its creator died before it was ready (or it is
        // of another format, which open_or_create reports again). Both go on below.
        if (e.errnum() != ENOENT && e.errnum() != EINVAL) throw;
      }
    } else if (foreign_file(name)) {
      throw Error(EINVAL, name, "open", "the file exists and is not an arena (not overwritten)");
    }
    if (!chosen) {
      config.attach_address = kernel_chooses ? nullptr : default_address(key, attempt, config.max_size);
      config.same_address = true;
    }
    try {
      return with_room(config, [&](const ArenaConfig& c) { return Arena::open_or_create(name, c, init); });
    } catch (const Error& e) {
      if (e.operation() != "map") throw;
      if (chosen || attempt >= 16) {
        throw Error(e.errnum() == EEXIST ? EBUSY : e.errnum(), name, "map",
                    e.errnum() == EEXIST ? "the address range asked for is already in use"
                                         : "cannot map the arena at the address asked for");
      }
      if (e.errnum() != EEXIST) kernel_chooses = true;  // no such range here (small VA)
    }
  }
}

usptr_s* new_handle() noexcept {
  for (std::size_t i = 0; i < kMaxArenas; ++i) {
    usptr_s& h = g_handles[i];
    if (h.live.load(std::memory_order_relaxed) == 0 && h.refs == 0 && h.key == nullptr) {
      h.refs = -1;  // reserved
      std::size_t high = g_high.load(std::memory_order_relaxed);
      while (high < i + 1 &&
             !g_high.compare_exchange_weak(high, i + 1, std::memory_order_release,
                                           std::memory_order_relaxed)) {
      }
      return &h;
    }
  }
  return nullptr;
}

}  // namespace

Process& process() noexcept { return g_process; }

int fail(int err, const char* call, const char* fmt, ...) noexcept {
  if (_uerror != 0 || _utrace != 0) {
    std::fprintf(stderr, "%s: ", call);
    if (fmt != nullptr) {
      va_list ap;
      va_start(ap, fmt);
      std::vfprintf(stderr, fmt, ap);
      va_end(ap);
      std::fprintf(stderr, ": ");
    }
    std::fprintf(stderr, "%s\n", std::strerror(err));
  }
  errno = err;
  return -1;
}

void trace(const char* call, const char* fmt, ...) noexcept {
  if (_utrace == 0) return;
  std::fprintf(stderr, "%s: ", call);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "\n");
}

usptr_s* checked(usptr_t* u, const char* call) noexcept {
  const auto p = reinterpret_cast<std::uintptr_t>(u);
  const auto first = reinterpret_cast<std::uintptr_t>(&g_handles[0]);
  if (u == nullptr || p < first || p >= first + sizeof(g_handles) ||
      (p - first) % sizeof(usptr_s) != 0 || u->live.load(std::memory_order_acquire) == 0) {
    (void)fail(EINVAL, call, "%p is not an arena from usinit", static_cast<void*>(u));
    return nullptr;
  }
  return u;
}

usptr_s* owner_of(const void* p) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  const std::size_t high = g_high.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < high; ++i) {
    usptr_s& h = g_handles[i];
    if (a >= h.lo.load(std::memory_order_relaxed) && a < h.hi.load(std::memory_order_relaxed) &&
        h.live.load(std::memory_order_acquire) != 0) {
      return &h;
    }
  }
  return nullptr;
}

int ensure_user(usptr_s* h, const char* call) noexcept {
  if (is_user(h)) return 0;
  std::lock_guard guard(g_join_mutex);
  if (is_user(h)) return 0;
  try {
    // Our first allocation makes us a user of the shmkit arena (which has room to spare).
    Arena& a = h->arena();
    a.deallocate(a.try_allocate(1));
    const std::int32_t pid = self_pid(a);
    if (pid == 0) return fail(EUSERS, call, "cannot join the arena");
    g_process.pid.store(pid, std::memory_order_relaxed);
    switch (register_user(a, *h->hdr, pid, false, {})) {
      case Join::ok:
        h->joined_gen.store(g_process.fork_gen.load(std::memory_order_relaxed),
                            std::memory_order_release);
        trace(call, "process %d joined the arena", static_cast<int>(pid));
        return 0;
      case Join::full:
        return fail(EUSERS, call, "the arena has its %u users", h->hdr->max_users);
      default:
        return fail(EINVAL, call, "the arena is no longer in use");
    }
  } catch (...) {
    return fail_current(call);
  }
}

void* arena_alloc(usptr_s* h, std::size_t size, std::size_t align) noexcept {
  void* p = h->arena().try_allocate_zeroed(size == 0 ? 1 : size, align);
  if (p == nullptr) errno = ENOMEM;
  return p;
}

}  // namespace shmkit::compat

using namespace shmkit;
using namespace shmkit::compat;

// ---- usconfig ----

extern "C" SHMKIT_ULOCKS_API ptrdiff_t usconfig(int cmd, ...) {
  setup_process();
  va_list ap;
  va_start(ap, cmd);
  ptrdiff_t result = -1;
  const auto arena_arg = [&](const char* what) { return checked(va_arg(ap, usptr_t*), what); };
  const auto set = [&](std::uint32_t& field, std::uint32_t value) {
    std::lock_guard guard(g_process.mutex);
    result = field;
    field = value;
  };
  switch (cmd) {
    case CONF_INITSIZE: {
      const unsigned v = va_arg(ap, unsigned);
      if (v < 4096) {
        fail(EINVAL, "usconfig", "CONF_INITSIZE %u is below 4096", v);
        break;
      }
      set(g_pending.init_size, v);
      break;
    }
    case CONF_INITUSERS: {
      const unsigned v = va_arg(ap, unsigned);
      if (v == 0 || v > kMaxIrixUsers) {
        fail(EINVAL, "usconfig", "CONF_INITUSERS %u is not 1..%u", v, kMaxIrixUsers);
        break;
      }
      set(g_pending.init_users, v);
      break;
    }
    case CONF_LOCKTYPE: {
      const unsigned v = va_arg(ap, unsigned);
      if (v != US_NODEBUG && v != US_DEBUG && v != US_DEBUGPLUS) {
        fail(EINVAL, "usconfig", "CONF_LOCKTYPE %u is not a lock type", v);
        break;
      }
      set(g_pending.lock_type, v);
      break;
    }
    case CONF_ARENATYPE: {
      const unsigned v = va_arg(ap, unsigned);
      if (v != US_GENERAL && v != US_SHAREDONLY) {
        fail(EINVAL, "usconfig", "CONF_ARENATYPE %u is not US_GENERAL or US_SHAREDONLY", v);
        break;
      }
      set(g_pending.arena_type, v);
      break;
    }
    case CONF_AUTOGROW: set(g_pending.autogrow, va_arg(ap, unsigned) != 0 ? 1 : 0); break;
    case CONF_AUTORESV: set(g_pending.autoresv, va_arg(ap, unsigned) != 0 ? 1 : 0); break;
    case CONF_STHREADIOON: set(g_pending.sthread[0], 1); break;
    case CONF_STHREADIOOFF: set(g_pending.sthread[0], 0); break;
    case CONF_STHREADMISCON: set(g_pending.sthread[1], 1); break;
    case CONF_STHREADMISCOFF: set(g_pending.sthread[1], 0); break;
    case CONF_STHREADMALLOCON: set(g_pending.sthread[2], 1); break;
    case CONF_STHREADMALLOCOFF: set(g_pending.sthread[2], 0); break;
    case CONF_ATTACHADDR: {
      void* v = va_arg(ap, void*);
      std::lock_guard guard(g_process.mutex);
      result = static_cast<ptrdiff_t>(g_pending.attach);
      g_pending.attach = reinterpret_cast<std::uintptr_t>(v);
      break;
    }
    case CONF_GETSIZE:
      if (usptr_s* h = arena_arg("usconfig(CONF_GETSIZE)")) {
        result = static_cast<ptrdiff_t>(h->arena().max_size());
      }
      break;
    case CONF_GETUSERS:
      if (usptr_s* h = arena_arg("usconfig(CONF_GETUSERS)")) result = h->hdr->max_users;
      break;
    case CONF_CHMOD: {
      usptr_s* h = arena_arg("usconfig(CONF_CHMOD)");
      const auto mode = static_cast<std::uint32_t>(va_arg(ap, unsigned));
      if (h == nullptr) break;
      if (h->key == nullptr) {
        result = 0;  // no file: nothing governs access but inheritance
        break;
      }
      try {
        // The arena's own Segment is const to us: change the mode through a second, tiny,
        // read-only mapping of the same file (fchmod needs ownership, not write access).
        OpenOptions o;
        o.access = Access::read_only;
        o.size = 1;
        Segment s = Segment::open("file:" + *h->key, o);
        s.chmod(mode & 07777);
        result = 0;
      } catch (...) {
        fail_current("usconfig(CONF_CHMOD)");
      }
      break;
    }
    case CONF_HISTON:
    case CONF_HISTOFF:
      if (usptr_s* h = arena_arg("usconfig(CONF_HIST*)")) {
        h->hdr->hist_on.store(cmd == CONF_HISTON ? 1 : 0, std::memory_order_relaxed);
        result = 0;
      }
      break;
    case CONF_HISTSIZE: {
      usptr_s* h = arena_arg("usconfig(CONF_HISTSIZE)");
      const unsigned max = va_arg(ap, unsigned);
      if (h != nullptr && take(h->hdr->hist_lock)) {
        h->hdr->hist_max = max;
        h->hdr->hist_lock.unlock();
        result = 0;
      }
      break;
    }
    case CONF_HISTFETCH: {
      usptr_s* h = arena_arg("usconfig(CONF_HISTFETCH)");
      auto* out = va_arg(ap, histptr_t*);
      if (h == nullptr) break;
      if (out == nullptr || h->hdr->hist_on.load(std::memory_order_relaxed) == 0) {
        fail(EINVAL, "usconfig(CONF_HISTFETCH)", out == nullptr ? "no histptr_t" : "history is off");
        break;
      }
      if (take(h->hdr->hist_lock)) {
        out->hp_current = h->hdr->hist_newest;
        out->hp_entries = h->hdr->hist_entries;
        out->hp_errors = h->hdr->hist_errors;
        h->hdr->hist_lock.unlock();
        result = 0;
      }
      break;
    }
    case CONF_HISTRESET:
      if (usptr_s* h = arena_arg("usconfig(CONF_HISTRESET)"); h != nullptr && take(h->hdr->hist_lock)) {
        IrixArena& hdr = *h->hdr;
        for (hist_t* r = hdr.hist_newest; r != nullptr;) {
          hist_t* older = r->h_last;
          h->arena().deallocate(r);
          r = older;
        }
        hdr.hist_newest = hdr.hist_oldest = nullptr;
        hdr.hist_entries = hdr.hist_errors = 0;
        hdr.hist_lock.unlock();
        result = 0;
      }
      break;
    default:
      fail(EINVAL, "usconfig", "unknown command %d", cmd);
      break;
  }
  va_end(ap);
  return result;
}

// ---- usinit ----

extern "C" SHMKIT_ULOCKS_API usptr_t* usinit(const char* filename) {
  setup_process();
  if (filename == nullptr) {
    fail(EINVAL, "usinit", "no file name");
    return nullptr;
  }
  if (*filename == '\0') {
    fail(ENOENT, "usinit", "empty file name");
    return nullptr;
  }
  // Two threads naming one path must not both map it: the second finds the first's handle.
  std::lock_guard serial(g_usinit_mutex);
  Pending p;
  {
    std::lock_guard guard(g_process.mutex);
    p = g_pending;
  }
  const bool anonymous =
      std::strcmp(filename, "/dev/zero") == 0 || p.arena_type == US_SHAREDONLY;
  std::string key;
  if (!anonymous) {
    try {
      key = std::filesystem::absolute(filename).lexically_normal().string();
    } catch (...) {
      fail_current("usinit");
      return nullptr;
    }
    // A second usinit of one path returns the arena already mapped.
    usptr_s* found = nullptr;
    {
      std::lock_guard guard(g_process.mutex);
      for (usptr_s& h : g_handles) {
        if (h.live.load(std::memory_order_relaxed) != 0 && h.key != nullptr && *h.key == key) {
          ++h.refs;
          found = &h;
          break;
        }
      }
    }
    if (found != nullptr) {
      trace("usinit", "%s: already mapped at %p", filename, found->arena().base());
      if (ensure_user(found, "usinit") != 0) {
        usdetach(found);
        return nullptr;
      }
      return found;
    }
  }

  ArenaConfig config;
  const std::uint32_t users = p.init_users;
  // The arena is CONF_INITSIZE bytes, its metadata included, as on IRIX: a user slot per
  // IRIX user and two spare (a forked child joins before its parent's slot is freed), and an
  // allocation cache for two threads per user.
  config.max_users = std::min<std::uint32_t>(65535, users + 2);
  config.max_threads = std::min<std::uint32_t>(65534, std::max<std::uint32_t>(4, users * 2));
  config.max_size = static_cast<std::size_t>(round_up(p.init_size, kPage));
  config.autogrow = p.autogrow != 0;
  config.size = config.autogrow ? 0 : config.max_size;
  config.mode = 0600;
  config.metering = p.lock_type != US_NODEBUG;
  if (p.attach != kNoAddress) config.attach_address = reinterpret_cast<void*>(p.attach);
  const Arena::Init init = [&](Arena& a) {
    IrixArena* hdr = a.construct<IrixArena>(kHeaderName);
    hdr->max_users = users;
    hdr->lock_type = p.lock_type;
    hdr->users = static_cast<std::int32_t*>(a.allocate_zeroed(sizeof(std::int32_t) * users, 8));
    hdr->users[0] = self_pid(a);
  };

  usptr_s* h = nullptr;
  {
    std::lock_guard guard(g_process.mutex);
    h = new_handle();
  }
  if (h == nullptr) {
    fail(EMFILE, "usinit", "%s: this process has %zu arenas already", filename, kMaxArenas);
    return nullptr;
  }
  Arena arena;
  IrixArena* hdr = nullptr;
  std::int32_t pid = 0;
  try {
    const std::string name = "file:" + key;
    for (int attempt = 0;; ++attempt) {
      if (anonymous) {
        arena = with_room(config, [&](const ArenaConfig& c) { return Arena::create_anonymous(c, init); });
      } else {
        arena = attach_named(name, key, config, init);
      }
      hdr = find_header(arena);
      pid = self_pid(arena);
      if (anonymous || arena.created()) break;
      const Join j = register_user(arena, *hdr, pid, attempt < 8, name);
      if (j == Join::ok) break;
      const std::uint32_t limit = hdr->max_users;
      arena.close();  // unmaps hdr
      hdr = nullptr;
      if (j == Join::full) {
        throw Error(EUSERS, filename, "join",
                    "the arena has its " + std::to_string(limit) +
                        " users (the creator's CONF_INITUSERS)");
      }
      if (j == Join::failed || attempt >= 64) {
        throw Error(EAGAIN, filename, "join", "the arena keeps being made anew");
      }
    }
  } catch (...) {
    fail_current("usinit");
    std::lock_guard guard(g_process.mutex);
    h->refs = 0;
    return nullptr;
  }
  new (h->storage) Arena(std::move(arena));
  h->hdr = hdr;
  h->joined_gen.store(g_process.fork_gen.load(std::memory_order_relaxed), std::memory_order_relaxed);
  const auto base = reinterpret_cast<std::uintptr_t>(h->arena().base());
  h->lo.store(base, std::memory_order_relaxed);
  h->hi.store(base + h->arena().max_size(), std::memory_order_relaxed);
  g_process.pid.store(pid, std::memory_order_relaxed);
  {
    std::lock_guard guard(g_process.mutex);
    h->key = anonymous ? nullptr : new std::string(key);
    h->refs = 1;
    h->live.store(1, std::memory_order_release);
  }
  trace("usinit", "%s: %s at %p, %zu bytes, %u users", filename,
        h->arena().created() ? "created" : "joined", h->arena().base(), h->arena().max_size(),
        hdr->max_users);
  return h;
}

// ---- usadd, usdetach ----

extern "C" SHMKIT_ULOCKS_API int usadd(usptr_t* u) {
  usptr_s* h = checked(u, "usadd");
  if (h == nullptr) return -1;
  return ensure_user(h, "usadd");
}

extern "C" SHMKIT_ULOCKS_API void usdetach(usptr_t* u) {
  usptr_s* h = checked(u, "usdetach");
  if (h == nullptr) return;
  {
    std::lock_guard guard(g_process.mutex);
    if (--h->refs > 0) return;
    h->live.store(0, std::memory_order_release);
    h->lo.store(0, std::memory_order_relaxed);
    h->hi.store(0, std::memory_order_relaxed);
  }
  trace("usdetach", "%p", h->arena().base());
  Arena& a = h->arena();
  if (is_user(h)) {
    unregister_user(*h->hdr, my_pid());
    try {
      a.close();
    } catch (const Error& e) {
      report_error(e);
    }
    a.~Arena();
  }
  // else: a forked child that never used the arena. Closing the handle it inherited would give
  // back its parent's allocation caches, so the mapping is left as it is (and the handle's
  // memory with it) until the process exits.
  std::lock_guard guard(g_process.mutex);
  delete h->key;
  h->key = nullptr;
  h->hdr = nullptr;
  h->refs = 0;
}
