// SPDX-License-Identifier: MIT
// The bytes of an arena: every structure that lives in it, pinned by static_assert so that a
// 32-bit and a 64-bit process agree, and the size classes. docs/layout.md has the byte map.
//
//   offset 0                                                        frame = 64 KiB
//   +--------------+----------+-----------+-----------+------------+----------------------
//   | ArenaHeader  | UserSlot | HeapSlot  | frame map | (padding)  | frames: spans of small
//   | (1 KiB)      | × users  | × heaps   | 1 B/frame |            | blocks, runs of large
//   +--------------+----------+-----------+-----------+------------+----------------------
//   \_______________ metadata: the first meta_frames frames ______/
//
// Links are offsets from the arena's base (0 = none) or frame indices; no address is stored.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shmkit/barrier.hpp"
#include "shmkit/mutex.hpp"

namespace shmkit::arena {

inline constexpr std::uint32_t kFrameShift = 16;
inline constexpr std::uint64_t kFrameSize = std::uint64_t{1} << kFrameShift;  // 64 KiB
inline constexpr std::uint32_t kSpanHeaderSize = 64;
inline constexpr std::uint32_t kLargeHeaderSize = 64;
inline constexpr std::uint64_t kMagic = 0x314e5241544b4d53ULL;  // "SMKTARN1", little-endian
inline constexpr std::uint32_t kFormatVersion = 1;

// ---- Size classes ----
// 16-byte steps to 128, then four classes per doubling to 16 KiB, then the largest sizes that
// still fit 3 and 2 blocks in a span. Larger requests take whole frames.

inline constexpr std::uint32_t kClassSizes[] = {
    16,    32,    48,    64,    80,    96,    112,   128,   160,   192,   224,   256,
    320,   384,   448,   512,   640,   768,   896,   1024,  1280,  1536,  1792,  2048,
    2560,  3072,  3584,  4096,  5120,  6144,  7168,  8192,  10240, 12288, 14336, 16384,
    21824, 32736};
inline constexpr std::uint32_t kClasses = sizeof(kClassSizes) / sizeof(kClassSizes[0]);
inline constexpr std::uint32_t kMaxSmall = kClassSizes[kClasses - 1];
static_assert(kClasses <= 64);
static_assert((kFrameSize - kSpanHeaderSize) / kMaxSmall >= 2);

// ---- Header ----

/// Where an arena is in its life: set under init_lock.
enum class ArenaState : std::uint32_t { empty = 0, initializing = 1, ready = 2 };

inline constexpr std::uint32_t kFlagAutogrow = 1;
inline constexpr std::uint32_t kFlagMetering = 2;

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
  std::uint32_t meta_frames;             // frames taken by metadata
  std::uint32_t max_frames;              // frames max_size allows (frame map entries)
  std::uint32_t users_offset;            // byte offset of the UserSlot table
  std::uint32_t heaps_offset;            // byte offset of the HeapSlot table
  std::uint32_t frame_map_offset;        // byte offset of the frame map
  std::uint32_t mode;                    // permission bits asked for at creation
  std::atomic<std::uint64_t> size;       // committed bytes; grows under arena_lock
  std::uint64_t max_size;                // bytes it may grow to
  std::uint64_t attach_address;          // address every process maps at, or 0 (CONF_ATTACHADDR)
  std::atomic<std::uint64_t> root;       // the root datum: an offset, 0 = none (usputinfo)
  std::atomic<std::uint32_t> frame_hint; // where the next frame search starts (a hint)
  std::atomic<std::uint32_t> users;      // active users (a count kept with the table)
  std::atomic<std::uint64_t> directory;  // offset of the named-object table, 0 = none
  std::atomic<std::uint64_t> large_bytes;  // bytes in large blocks (statistics)
  std::uint64_t created_ns;              // CLOCK_REALTIME at creation, ns
  std::atomic<std::uint64_t> grow_step;  // bytes per growth, 0 = double (tuning; anyone)
  std::uint8_t reserved0[64];
  Mutex init_lock;                       // held while initialising (a dead initialiser: redo)
  Mutex arena_lock;                      // frame map, growth, user table
  Mutex directory_lock;                  // the named-object table
  std::uint8_t reserved1[1024 - 384];
};
static_assert(sizeof(ArenaHeader) == 1024 && alignof(ArenaHeader) == 64);
static_assert(offsetof(ArenaHeader, state) == 16 && offsetof(ArenaHeader, size) == 56);
static_assert(offsetof(ArenaHeader, init_lock) == 192);
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

/// One thread's cache of spans. Owned by one thread at a time (owner_tid); only the owner
/// touches the fields below `owner_tid` and `remote_spans`, so the allocation fast path takes
/// no lock and makes no atomic read-modify-write.
struct alignas(64) HeapSlot {
  std::atomic<std::uint32_t> owner_tid;     // owning thread, 0 = free (adoptable)
  std::uint32_t user;                       // owner's UserSlot index + 1
  std::atomic<std::uint32_t> remote_spans;  // Treiber stack of spans that got remote frees
  std::uint32_t generation;                 // bumped at every adoption
  std::uint32_t current[kClasses];          // span allocations come from, per class (0 = none)
  std::uint32_t partial[kClasses];          // other owned spans with free blocks (list heads)
  std::uint64_t allocations;                // blocks handed out (statistics, owner only)
  std::uint64_t frees;                      // blocks freed by the owner (statistics)
};
static_assert(sizeof(HeapSlot) % 64 == 0);
static_assert(std::is_standard_layout_v<HeapSlot>);

// ---- Frames ----

/// What a frame holds (the frame map: one byte per frame, written under arena_lock).
enum class FrameKind : std::uint8_t { free = 0, meta = 1, span = 2, large_head = 3, large_tail = 4 };

inline constexpr std::uint32_t kSpanMagic = 0x5350414e;   // "SPAN"
inline constexpr std::uint32_t kLargeMagic = 0x4c415247;  // "LARG"

/// At the start of a frame holding small blocks of one class.
struct alignas(64) SpanHeader {
  std::uint32_t magic;              // kSpanMagic ^ frame index
  std::uint16_t size_class;         // index into kClassSizes
  std::uint16_t heap;               // owning HeapSlot index + 1 (0 = none)
  std::uint32_t block_size;         // bytes
  std::uint32_t capacity;           // blocks in the span
  std::uint32_t bumped;             // blocks handed out from the untouched tail (owner)
  std::uint32_t used;               // blocks in use, as the owner counts them (owner)
  std::uint64_t local_free;         // first free block's offset, 0 = none (owner)
  std::atomic<std::uint64_t> remote_free;  // blocks freed by other heaps (Treiber stack)
  std::uint32_t next_partial;       // next span in the owner's partial list (owner)
  std::atomic<std::uint32_t> next_remote;  // next span in the owner's remote_spans stack
  std::uint32_t in_partial;         // 1 while on the partial list (owner)
  std::atomic<std::uint32_t> in_remote;    // 1 while on the owner's remote_spans stack
  std::uint32_t reserved[2];
};
static_assert(sizeof(SpanHeader) == kSpanHeaderSize);
static_assert(offsetof(SpanHeader, remote_free) == 32);
static_assert(std::is_standard_layout_v<SpanHeader>);

/// At the start of the first frame of a large block.
struct alignas(64) LargeHeader {
  std::uint32_t magic;      // kLargeMagic ^ frame index
  std::uint32_t frames;     // frames in the run
  std::uint64_t requested;  // bytes asked for
  std::uint64_t user_offset;  // where the caller's block starts, from the frame's start
  std::uint8_t reserved[40];
};
static_assert(sizeof(LargeHeader) == kLargeHeaderSize);

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
  mix(kFrameSize);
  mix(kClasses);
  mix(kMaxSmall);
  mix(static_cast<std::uint64_t>(std::endian::native == std::endian::little));
  return h;
}

}  // namespace shmkit::arena
