// SPDX-License-Identifier: MIT
// Allocation in an IRIX arena (the usmalloc family, usmallopt, usmallinfo), the first datum
// (usputinfo / usgetinfo / uscasinfo) and uscas, on the shmkit arena allocator.
//
// Blocks come straight from the arena's allocator, so usmallocblksize is its block size and a
// block may be freed by any process. Calloc'ed blocks are zeroed over their whole usable size,
// which is what lets usrecalloc promise zeroed growth for blocks that only ever went through it.
#include <climits>
#include <cstring>

#include "compat/compat.hpp"
#include "shmkit/error.hpp"

namespace shmkit::compat {
namespace {

// The handle, with the caller made an IRIX user (a forked child's first call), or nullptr.
usptr_s* user_handle(usptr_t* u, const char* call) noexcept {
  usptr_s* h = checked(u, call);
  if (h == nullptr || ensure_user(h, call) != 0) return nullptr;
  return h;
}

bool in_arena(usptr_s* h, const void* p) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  return a >= h->lo.load(std::memory_order_relaxed) && a < h->hi.load(std::memory_order_relaxed);
}

// M_DEBUG: checks the whole arena; false (and a message) when it is inconsistent.
bool arena_ok(usptr_s* h, const char* call) noexcept {
  if (h->hdr->malloc_debug.load(std::memory_order_relaxed) == 0) return true;
  try {
    const std::string problem = h->arena().check();
    if (problem.empty()) return true;
    std::fprintf(stderr, "%s: the arena is corrupted: %s\n", call, problem.c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", call, e.what());
  }
  errno = EINVAL;
  return false;
}

// The usable size of a block of ours, or 0 (errno EINVAL) for anything else.
std::size_t usable(usptr_s* h, const void* p, const char* call) noexcept {
  if (!in_arena(h, p)) {
    (void)fail(EINVAL, call, "%p is not in the arena", p);
    return 0;
  }
  try {
    return h->arena().block_size(p);
  } catch (const Error& e) {
    (void)fail(EINVAL, call, "%p: %s", p, e.what());
    return 0;
  }
}

void* allocate(usptr_s* h, std::size_t size, std::size_t align, bool zero, const char* call) {
  if (!arena_ok(h, call)) return nullptr;
  void* p = h->arena().try_allocate(size == 0 ? 1 : size, align);
  if (p == nullptr) {
    (void)fail(ENOMEM, call, "no room for %zu bytes", size);
    return nullptr;
  }
  if (zero) std::memset(p, 0, h->arena().block_size(p));
  return p;
}

void release(usptr_s* h, void* p, const char* call) noexcept {
  const std::size_t n = usable(h, p, call);
  if (n == 0 || !arena_ok(h, call)) return;
  const std::int32_t fill = h->hdr->clear_on_free.load(std::memory_order_relaxed);
  if (fill >= 0) std::memset(p, fill, n);
  h->arena().deallocate(p);
}

bool product(std::size_t n, std::size_t size, std::size_t* out) noexcept {
  return !__builtin_mul_overflow(n, size, out);
}

}  // namespace
}  // namespace shmkit::compat

using namespace shmkit;
using namespace shmkit::compat;

// ---- The usmalloc family ----

extern "C" SHMKIT_ULOCKS_API void* usmalloc(size_t size, usptr_t* handle) {
  usptr_s* h = user_handle(handle, "usmalloc");
  return h == nullptr ? nullptr : allocate(h, size, 16, false, "usmalloc");
}

extern "C" SHMKIT_ULOCKS_API void usfree(void* ptr, usptr_t* handle) {
  if (ptr == nullptr) return;
  if (usptr_s* h = user_handle(handle, "usfree")) release(h, ptr, "usfree");
}

extern "C" SHMKIT_ULOCKS_API void* uscalloc(size_t nelem, size_t elsize, usptr_t* handle) {
  usptr_s* h = user_handle(handle, "uscalloc");
  std::size_t size = 0;
  if (h == nullptr) return nullptr;
  if (!product(nelem, elsize, &size)) {
    fail(ENOMEM, "uscalloc", "%zu * %zu bytes overflow", nelem, elsize);
    return nullptr;
  }
  return allocate(h, size, 16, true, "uscalloc");
}

extern "C" SHMKIT_ULOCKS_API void* usmemalign(size_t align, size_t size, usptr_t* handle) {
  usptr_s* h = user_handle(handle, "usmemalign");
  if (h == nullptr) return nullptr;
  if (align < sizeof(void*) || (align & (align - 1)) != 0 || align > (std::size_t{1} << 16)) {
    fail(EINVAL, "usmemalign", "alignment %zu is not a power of two from %zu to 65536", align,
         sizeof(void*));
    return nullptr;
  }
  return allocate(h, size, align < 16 ? 16 : align, false, "usmemalign");
}

extern "C" SHMKIT_ULOCKS_API void* usrealloc(void* ptr, size_t size, usptr_t* handle) {
  usptr_s* h = user_handle(handle, "usrealloc");
  if (h == nullptr) return nullptr;
  if (ptr == nullptr) return allocate(h, size, 16, false, "usrealloc");
  if (size == 0) {
    release(h, ptr, "usrealloc");
    return nullptr;
  }
  if (usable(h, ptr, "usrealloc") == 0 || !arena_ok(h, "usrealloc")) return nullptr;
  void* q = h->arena().try_reallocate(ptr, size);
  if (q == nullptr) fail(ENOMEM, "usrealloc", "no room for %zu bytes", size);
  return q;
}

extern "C" SHMKIT_ULOCKS_API void* usrecalloc(void* ptr, size_t nelem, size_t elsize,
                                              usptr_t* handle) {
  usptr_s* h = user_handle(handle, "usrecalloc");
  std::size_t size = 0;
  if (h == nullptr) return nullptr;
  if (!product(nelem, elsize, &size)) {
    fail(ENOMEM, "usrecalloc", "%zu * %zu bytes overflow", nelem, elsize);
    return nullptr;
  }
  if (ptr == nullptr) return allocate(h, size, 16, true, "usrecalloc");
  if (size == 0) {
    release(h, ptr, "usrecalloc");
    return nullptr;
  }
  const std::size_t old = usable(h, ptr, "usrecalloc");
  if (old == 0 || !arena_ok(h, "usrecalloc")) return nullptr;
  auto* q = static_cast<unsigned char*>(h->arena().try_reallocate(ptr, size));
  if (q == nullptr) {
    fail(ENOMEM, "usrecalloc", "no room for %zu bytes", size);
    return nullptr;
  }
  // Shrinking wipes the tail (so that growing again shows zeros); growing zeroes what is new.
  const std::size_t now = h->arena().block_size(q);
  const std::size_t from = size < old ? size : old;
  if (now > from) std::memset(q + from, 0, now - from);
  return q;
}

extern "C" SHMKIT_ULOCKS_API size_t usmallocblksize(void* ptr, usptr_t* handle) {
  usptr_s* h = checked(handle, "usmallocblksize");
  if (h == nullptr || ptr == nullptr) {
    if (h != nullptr) errno = EINVAL;
    return 0;
  }
  return usable(h, ptr, "usmallocblksize");
}

extern "C" SHMKIT_ULOCKS_API int usmallopt(int cmd, int value, usptr_t* handle) {
  usptr_s* h = checked(handle, "usmallopt");
  if (h == nullptr) return 1;
  IrixArena& a = *h->hdr;
  bool ok = true;
  switch (cmd) {
    case M_MXFAST: ok = value >= 0; break;
    case M_NLBLKS:
    case M_GRAIN:
    case M_MXCHK: ok = value > 0; break;
    case M_BLKSZ: ok = value >= 512; break;
    case M_KEEP:
    case M_FREEHD:
    case M_CRLOCK: break;
    case M_DEBUG: a.malloc_debug.store(value != 0 ? 1 : 0, std::memory_order_relaxed); break;
    case M_CLRONFREE:
      a.clear_on_free.store(value & 0xff, std::memory_order_relaxed);  // cannot be switched off
      break;
    default:
      (void)fail(EINVAL, "usmallopt", "unknown option %d", cmd);
      return 1;
  }
  if (!ok) {
    (void)fail(EINVAL, "usmallopt", "bad value %d for option %d", value, cmd);
    return 1;
  }
  if (cmd >= 1 && cmd <= 8) a.opts[cmd - 1].store(static_cast<std::uint32_t>(value), std::memory_order_relaxed);
  return 0;
}

extern "C" SHMKIT_ULOCKS_API struct mallinfo usmallinfo(usptr_t* handle) {
  struct mallinfo mi;
  std::memset(&mi, 0, sizeof mi);
  usptr_s* h = checked(handle, "usmallinfo");
  if (h == nullptr) return mi;
  const auto clamp = [](std::uint64_t v) { return static_cast<int>(v > INT_MAX ? INT_MAX : v); };
  try {
    const ArenaStats s = h->arena().stats();
    std::uint64_t small_used = 0, small_free = 0, small_blocks = 0, spans = 0;
    for (const ArenaStats::SizeClass& c : s.classes) {
      small_used += c.in_use * c.block_size;
      small_free += (c.blocks - c.in_use) * c.block_size;
      small_blocks += c.in_use;
      spans += c.spans;
    }
    mi.arena = clamp(s.size);
    mi.ordblks = clamp(s.large_blocks);
    mi.smblks = clamp(small_blocks);
    mi.hblkhd = clamp(s.metadata);
    mi.hblks = clamp(spans);
    mi.usmblks = clamp(small_used);
    mi.fsmblks = clamp(small_free);
    mi.uordblks = clamp(s.in_use > small_used ? s.in_use - small_used : 0);
    mi.fordblks = clamp(s.free > small_free ? s.free - small_free : 0);
    mi.keepcost = 0;
  } catch (const Error& e) {
    (void)fail(e.errnum(), "usmallinfo", "%s", e.what());
  }
  return mi;
}

// ---- The first datum, compare-and-swap ----

extern "C" SHMKIT_ULOCKS_API void usputinfo(usptr_t* handle, void* info) {
  if (usptr_s* h = checked(handle, "usputinfo")) {
    h->hdr->info.store(reinterpret_cast<std::uintptr_t>(info), std::memory_order_release);
  }
}

extern "C" SHMKIT_ULOCKS_API void* usgetinfo(usptr_t* handle) {
  usptr_s* h = checked(handle, "usgetinfo");
  if (h == nullptr) return nullptr;
  return reinterpret_cast<void*>(
      static_cast<std::uintptr_t>(h->hdr->info.load(std::memory_order_acquire)));
}

extern "C" SHMKIT_ULOCKS_API int uscasinfo(usptr_t* handle, void* oldval, void* newval) {
  usptr_s* h = checked(handle, "uscasinfo");
  if (h == nullptr) return 0;
  std::uint64_t expected = reinterpret_cast<std::uintptr_t>(oldval);
  return h->hdr->info.compare_exchange_strong(expected, reinterpret_cast<std::uintptr_t>(newval),
                                              std::memory_order_acq_rel,
                                              std::memory_order_acquire)
             ? 1
             : 0;
}

extern "C" SHMKIT_ULOCKS_API int uscas(void* destp, ptrdiff_t oldval, ptrdiff_t newval, usptr_t*) {
  if (destp == nullptr || reinterpret_cast<std::uintptr_t>(destp) % alignof(ptrdiff_t) != 0) {
    errno = EINVAL;
    return 0;
  }
  return __atomic_compare_exchange_n(static_cast<ptrdiff_t*>(destp), &oldval, newval, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
             ? 1
             : 0;
}

extern "C" SHMKIT_ULOCKS_API int uscas32(void* destp, int32_t oldval, int32_t newval, usptr_t*) {
  if (destp == nullptr || reinterpret_cast<std::uintptr_t>(destp) % alignof(int32_t) != 0) {
    errno = EINVAL;
    return 0;
  }
  return __atomic_compare_exchange_n(static_cast<int32_t*>(destp), &oldval, newval, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
             ? 1
             : 0;
}
