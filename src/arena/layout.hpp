// SPDX-License-Identifier: MIT
// The bytes of an arena: every structure that lives in it, pinned by static_assert so that a
// 32-bit and a 64-bit process agree, and the size classes. docs/layout.md has the byte map.
//
//   offset 0                                                        page = 4 KiB
//   +--------------+----------+-----------+-----------+---------+------------------------
//   | ArenaHeader  | UserSlot | HeapSlot  | page map  | (pad)   | pages: spans of small
//   | (1 KiB)      | × users  | × heaps   | 1 B/page  |         | blocks, runs of large,
//   +--------------+----------+-----------+-----------+---------+ free runs
//   \_______________ metadata: the first meta_pages pages _____/
//
// Spans are runs of 1..kMaxSpanPages pages, sized per class and per arena (span_pages()):
// small arenas get one-page spans, large ones up to 64 KiB. Large blocks are page runs.
// Links are offsets from the arena's base (0 = none) or page indices; no address is stored.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shmkit/barrier.hpp"
#include "shmkit/mutex.hpp"

namespace shmkit::arena {

inline constexpr std::uint32_t kPageShift = 12;
inline constexpr std::uint64_t kPageSize = std::uint64_t{1} << kPageShift;  // 4 KiB
inline constexpr std::uint32_t kMaxSpanPages = 16;                          // 64 KiB
inline constexpr std::uint32_t kSpanHeaderSize = 64;
inline constexpr std::uint32_t kLargeHeaderSize = 64;
inline constexpr std::uint64_t kMaxAlign = std::uint64_t{1} << 16;  // largest alignment asked for
inline constexpr std::uint64_t kMagic = 0x314e5241544b4d53ULL;  // "SMKTARN1", little-endian
inline constexpr std::uint32_t kFormatVersion = 2;

// ---- Size classes ----
// 16-byte steps to 128, eight classes per doubling to 1 KiB, four to 8 KiB. Larger requests,
// and classes whose spans would waste too much in a small arena, take page runs.

inline constexpr std::uint32_t kClassSizes[] = {
    16,   32,   48,   64,   80,   96,   112,  128,                       //
    144,  160,  176,  192,  208,  224,  240,  256,                       //
    288,  320,  352,  384,  416,  448,  480,  512,                       //
    576,  640,  704,  768,  832,  896,  960,  1024,                      //
    1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192};
inline constexpr std::uint32_t kClasses = sizeof(kClassSizes) / sizeof(kClassSizes[0]);
inline constexpr std::uint32_t kMaxSmall = kClassSizes[kClasses - 1];
static_assert(kClasses <= 64);

/// The pages a span of this arena should take: about a 256th of the arena (of `max_pages`
/// pages), between one page and kMaxSpanPages. Small spans strand less of a small arena in
/// half-used spans; large ones make fewer trips to the page runs.
constexpr std::uint32_t span_target(std::uint64_t max_pages) noexcept {
  const std::uint64_t t = max_pages / 256;
  return t < 1 ? 1 : t > kMaxSpanPages ? kMaxSpanPages : static_cast<std::uint32_t>(t);
}

/// The most pages a span may take to waste less: the target, and from 1 MiB up at least four
/// (a class near 1 KiB wastes a quarter of a one-page span).
constexpr std::uint32_t span_limit(std::uint64_t max_pages) noexcept {
  const std::uint32_t t = span_target(max_pages);
  return max_pages >= 256 && t < 4 ? 4 : t;
}

/// Pages of a span of class `c`, or 0 when the class is served by page runs: the fewest pages
/// from `target` up to `limit` that waste at most 1/16 of the span, else the least wasteful
/// count up to `limit` that holds at least two blocks.
constexpr std::uint32_t span_pages(std::uint32_t c, std::uint32_t target, std::uint32_t limit) noexcept {
  const std::uint64_t size = kClassSizes[c];
  std::uint32_t best = 0;
  std::uint64_t best_waste = ~std::uint64_t{0};
  for (std::uint32_t n = 1; n <= limit; ++n) {
    const std::uint64_t bytes = std::uint64_t{n} << kPageShift;
    const std::uint64_t blocks = (bytes - kSpanHeaderSize) / size;
    if (blocks < 2) continue;
    const std::uint64_t waste = bytes - blocks * size;
    if (waste * 16 <= bytes && n >= target) return n;
    if (best == 0 || waste * (std::uint64_t{best} << kPageShift) < best_waste * bytes) {
      best = n;
      best_waste = waste;
    }
  }
  return best;
}

/// Arenas of fewer data pages than this use a coarser set of classes (kTinyClass), so that
/// fewer spans are half full when the last page is taken.
inline constexpr std::uint32_t kTinyArenaPages = 64;
constexpr bool tiny_class(std::uint32_t c) noexcept {
  switch (kClassSizes[c]) {
    case 32: case 64: case 96: case 128: case 192: case 256: case 384: case 512: case 768:
    case 1024: case 1536: case 2048: case 3072: case 4096:
      return true;
    default:
      return false;
  }
}

/// Blocks in a span of class `c` that takes `pages` pages.
constexpr std::uint32_t span_capacity(std::uint32_t c, std::uint32_t pages) noexcept {
  return static_cast<std::uint32_t>(((std::uint64_t{pages} << kPageShift) - kSpanHeaderSize) /
                                    kClassSizes[c]);
}

// ---- Header ----

/// Where an arena is in its life: set under init_lock.
enum class ArenaState : std::uint32_t { empty = 0, initializing = 1, ready = 2 };

inline constexpr std::uint32_t kFlagAutogrow = 1;
inline constexpr std::uint32_t kFlagMetering = 2;

/// Free runs of pages are kept in bins by length: exact for 1..32 pages, then one bin per
/// doubling (TLSF's first level); bin_map has a bit per non-empty bin.
inline constexpr std::uint32_t kExactBins = 32;
inline constexpr std::uint32_t kBins = 64;

/// The first bytes of every arena. Written once at initialisation (under init_lock) except
/// the fields marked otherwise; read by everyone after `state` is ready (acquire).
struct alignas(64) ArenaHeader {
  std::uint64_t magic;                   // kMagic
  std::uint32_t version;                 // kFormatVersion
  std::uint32_t fingerprint;             // layout_fingerprint()
  std::atomic<std::uint32_t> state;      // ArenaState; release-stored when ready
  std::uint32_t flags;                   // kFlag*
  std::uint32_t max_users;               // user slots
  std::uint32_t max_heaps;               // heap slots (threads)
  std::uint32_t meta_pages;              // pages taken by metadata
  std::uint32_t max_pages;               // pages max_size allows (page map entries)
  std::uint32_t users_offset;            // byte offset of the UserSlot table
  std::uint32_t heaps_offset;            // byte offset of the HeapSlot table
  std::uint32_t page_map_offset;         // byte offset of the page map
  std::uint32_t mode;                    // permission bits asked for at creation
  std::atomic<std::uint64_t> size;       // committed bytes; grows under arena_lock
  std::uint64_t max_size;                // bytes it may grow to
  std::uint64_t attach_address;          // address every process maps at, or 0 (CONF_ATTACHADDR)
  std::atomic<std::uint64_t> root;       // the root datum: an offset, 0 = none (usputinfo)
  std::atomic<std::uint32_t> pages_free; // pages in free runs (arena_lock; read racily)
  std::atomic<std::uint32_t> users;      // active users (a count kept with the table)
  std::atomic<std::uint64_t> directory;  // offset of the named-object table, 0 = none
  std::atomic<std::uint64_t> large_bytes;  // bytes in large blocks (statistics)
  std::uint64_t created_ns;              // CLOCK_REALTIME at creation, ns
  std::atomic<std::uint64_t> grow_step;  // bytes per growth, 0 = double (tuning; anyone)
  std::atomic<std::uint64_t> bin_map;    // bit b set: bins[b] is not empty (arena_lock)
  std::uint8_t reserved0[56];
  Mutex init_lock;                       // held while initialising (a dead initialiser: redo)
  Mutex arena_lock;                      // page map, free runs, growth, user table
  Mutex directory_lock;                  // the named-object table
  std::uint32_t bins[kBins];             // first page of a free run per bin, 0 = none (arena_lock)
  std::atomic<std::uint32_t> open_span[kClasses];  // per class: a span with untouched blocks (a hint)
  std::atomic<std::uint32_t> abandoned;  // heaps left by their threads since the last reclaim
  std::uint8_t reserved1[1024 - 388 - 4 * kBins - 4 * kClasses];
};
static_assert(sizeof(ArenaHeader) == 1024 && alignof(ArenaHeader) == 64);
static_assert(offsetof(ArenaHeader, state) == 16 && offsetof(ArenaHeader, size) == 56);
static_assert(offsetof(ArenaHeader, init_lock) == 192 && offsetof(ArenaHeader, bins) == 384);
static_assert(std::is_standard_layout_v<ArenaHeader>);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// ---- Users and heaps ----

/// One process that joined. Written under arena_lock, except `heaps` (atomic).
struct alignas(64) UserSlot {
  std::atomic<std::uint32_t> active;  // 1 while joined
  std::int32_t pid;                   // the process
  std::uint64_t start_time;           // its start time (clock ticks since boot): tells pid reuse apart
  std::uint64_t joined_ns;            // CLOCK_REALTIME when it joined
  std::atomic<std::uint32_t> heaps;   // heaps it owns now
  std::uint32_t reserved0;
  std::uint8_t reserved1[32];
};
static_assert(sizeof(UserSlot) == 64);
static_assert(std::is_standard_layout_v<UserSlot>);

/// One thread's cache of spans. Owned by one thread at a time (owner_tid). The owner's fast
/// path takes no lock and makes no atomic read-modify-write: it brackets its work with plain
/// stores to `busy` and looks at `guard`. Its slow path, and anyone else who takes spans from
/// the heap (a heap that runs dry under pressure), hold `guard` (INV-HEAP-1: the heap's lists
/// change only inside the owner's bracket or under `guard`). A taker that got `guard` runs a
/// heavy fence and waits for `busy` to be 0; after it, the owner sees `guard` at its next
/// bracket and takes the slow path (an asymmetric Dekker handshake, docs/allocator.md).
///
///   guard \ busy |  0 (owner out)              |  1 (owner in its fast path)
///   ------------+-----------------------------+---------------------------------------
///   0           |  free                       |  owner working
///   tid         |  tid holds the heap         |  tid waits (after its heavy fence)
struct alignas(64) HeapSlot {
  std::atomic<std::uint32_t> owner_tid;     // owning thread, 0 = free (adoptable)
  std::uint32_t user;                       // owner's UserSlot index + 1
  std::atomic<std::uint32_t> remote_spans;  // Treiber stack of spans that got remote frees
  std::uint32_t generation;                 // bumped at every adoption
  std::uint32_t current[kClasses];          // span allocations come from, per class (0 = none)
  std::uint32_t partial[kClasses];          // other owned spans with free blocks (list heads)
  std::atomic<std::uint32_t> busy;          // 1 while the owner is in its fast path (owner)
  std::atomic<std::uint32_t> guard;         // thread holding the heap's lists, 0 = none
  std::uint32_t fenced;                     // 1: the owner's process answers heavy fences
  std::uint32_t reserved;
};
static_assert(sizeof(HeapSlot) == 384);
static_assert(std::is_standard_layout_v<HeapSlot>);

// ---- Pages ----

/// What a page holds (the page map: one byte per page, written under arena_lock). Every page
/// of a span holds kSpanTail | its distance from the span's first page, so that a free finds
/// the span's header without a branch on which page it is (`span` is the first page's).
inline constexpr std::uint8_t kSpanTail = 0x80;
enum class PageKind : std::uint8_t { free = 0, meta = 1, large_head = 3, large_tail = 4, span = kSpanTail };
static_assert(kMaxSpanPages < kSpanTail);

inline constexpr std::uint32_t kSpanMagic = 0x5350414e;   // "SPAN"
inline constexpr std::uint32_t kLargeMagic = 0x4c415247;  // "LARG"
inline constexpr std::uint32_t kFreeMagic = 0x46524545;   // "FREE"

/// At the start of a span: small blocks of one class. The owner allocates from local_free
/// and the untouched tail; under pressure (few free pages) another heap may claim tail blocks
/// too, holding arena_lock, and counts them in `foreign`. INV-SPAN-1: used + foreign =
/// min(bumped, capacity) - blocks on local_free (blocks on the remote stack count as used
/// until the owner collects them; one that another heap pops from there stays counted).
struct alignas(64) SpanHeader {
  std::uint32_t magic;              // kSpanMagic ^ page index
  std::uint16_t size_class;         // index into kClassSizes
  std::uint16_t heap;               // owning HeapSlot index + 1 (0 = none)
  std::uint32_t block_size;         // bytes
  std::uint32_t capacity;           // blocks in the span
  std::atomic<std::uint32_t> bumped;  // blocks claimed from the untouched tail (may overshoot)
  std::int32_t used;                // blocks out, as the owner counts them (owner)
  std::uint64_t local_free;         // first free block's offset, 0 = none (owner)
  std::atomic<std::uint64_t> remote_free;  // blocks freed by other heaps (Treiber stack)
  std::uint32_t next_partial;       // next span in the owner's partial list (owner)
  std::atomic<std::uint32_t> next_remote;  // next span in the owner's remote_spans stack
  std::uint32_t in_partial;         // 1 while on the partial list (owner)
  std::atomic<std::uint32_t> in_remote;    // 1 while on the owner's remote_spans stack
  std::atomic<std::int32_t> foreign;  // blocks other heaps claimed (arena_lock)
  std::uint16_t pages;              // pages of the span
  std::uint16_t reserved;
};
static_assert(sizeof(SpanHeader) == kSpanHeaderSize);
static_assert(offsetof(SpanHeader, remote_free) == 32 && offsetof(SpanHeader, foreign) == 56);
static_assert(std::is_standard_layout_v<SpanHeader>);

/// At the start of the first page of a large block.
struct alignas(64) LargeHeader {
  std::uint32_t magic;      // kLargeMagic ^ page index
  std::uint32_t pages;      // pages in the run
  std::uint64_t requested;  // bytes asked for
  std::uint64_t user_offset;  // where the caller's block starts, from the page's start
  std::uint8_t reserved[40];
};
static_assert(sizeof(LargeHeader) == kLargeHeaderSize);

/// At the start of the first page of a free run; its last page ends with a FreeFoot. Both are
/// a cache of the page map (which is the truth): repair_pages() rebuilds them from it.
struct FreeRun {
  std::uint32_t magic;  // kFreeMagic ^ page index
  std::uint32_t pages;  // pages in the run
  std::uint32_t prev;   // previous run in its bin, 0 = none
  std::uint32_t next;   // next run in its bin, 0 = none
};
static_assert(sizeof(FreeRun) == 16);
struct FreeFoot {
  std::uint32_t magic;  // kFreeMagic ^ first page
  std::uint32_t first;  // the run's first page
};
static_assert(sizeof(FreeFoot) == 8);

// ---- Named objects ----

/// One name in the directory: an open-addressing hash table, guarded by directory_lock.
struct DirEntry {
  std::uint64_t hash;      // fnv1a of the name
  std::uint64_t type;      // detail::type_id<T>()
  std::uint64_t object;    // offset of the object
  std::uint64_t name;      // offset of the name's bytes
  std::uint32_t name_len;  // bytes
  std::uint32_t state;     // DirState
  std::uint64_t size;      // sizeof the object
};
static_assert(sizeof(DirEntry) == 48);

enum class DirState : std::uint32_t { empty = 0, live = 1, removed = 2, constructing = 3 };

struct DirTable {
  std::uint32_t capacity;    // entries (a power of two)
  std::uint32_t count;       // live and constructing entries
  std::uint32_t removed;     // tombstones
  std::uint32_t reserved;
  // DirEntry entries[capacity] follow
};
static_assert(sizeof(DirTable) == 16);

// ---- Fingerprint ----

/// A hash of endianness and of the sizes and key offsets of every shared structure: two
/// builds that disagree on any of them cannot open each other's arenas.
constexpr std::uint32_t layout_fingerprint() noexcept {
  std::uint32_t h = 2166136261u;
  const auto mix = [&h](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= static_cast<std::uint8_t>(v >> (8 * i));
      h *= 16777619u;
    }
  };
  mix(kFormatVersion);
  mix(sizeof(ArenaHeader));
  mix(offsetof(ArenaHeader, init_lock));
  mix(sizeof(UserSlot));
  mix(sizeof(HeapSlot));
  mix(sizeof(SpanHeader));
  mix(sizeof(LargeHeader));
  mix(sizeof(DirEntry));
  mix(sizeof(Mutex));
  mix(sizeof(Barrier));
  mix(kPageSize);
  mix(kMaxSpanPages);
  mix(kClasses);
  mix(kMaxSmall);
  mix(static_cast<std::uint64_t>(std::endian::native == std::endian::little));
  return h;
}

}  // namespace shmkit::arena
