// SPDX-License-Identifier: MIT
// ArenaImpl: one process's handle on an arena — its mapping, its user slot, and the heaps its
// threads own. Shared by the arena layer's files.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "arena/layout.hpp"
#include "shmkit/arena.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::detail {

struct ArenaImpl {
  Segment segment;
  std::byte* base = nullptr;
  arena::ArenaHeader* header = nullptr;
  std::uint64_t uid = 0;        // process-unique id of this handle (thread caches key on it)
  std::int32_t pid = 0;         // the process that joined (a forked child must join anew)
  std::uint32_t user = 0;       // our UserSlot index + 1
  bool created = false;         // this handle ran the initialiser
  std::uint64_t pending_entry = 0;   // directory entry being constructed (lock held), offset
  std::mutex heaps_mutex;       // guards `heaps`
  std::vector<std::uint32_t> heaps;  // heap indices our threads own (to release at close)
  std::uint8_t span_pages_[arena::kClasses] = {};  // span_pages() of each class here
  std::uint32_t max_small_ = 0;  // the largest class with spans here; larger: page runs
  std::uint8_t class_map_[arena::kClasses] = {};   // class -> the class used here (kClasses: pages)

  // ---- Layout helpers ----
  arena::UserSlot* users() const noexcept {
    return reinterpret_cast<arena::UserSlot*>(base + header->users_offset);
  }
  arena::HeapSlot* heap(std::uint32_t index) const noexcept {
    return reinterpret_cast<arena::HeapSlot*>(base + header->heaps_offset) + index;
  }
  std::atomic_ref<std::uint8_t> page_kind(std::uint32_t page) const noexcept {
    return std::atomic_ref<std::uint8_t>(
        *reinterpret_cast<std::uint8_t*>(base + header->page_map_offset + page));
  }
  std::byte* page_at(std::uint32_t page) const noexcept {
    return base + (std::uint64_t{page} << arena::kPageShift);
  }
  arena::SpanHeader* span(std::uint32_t page) const noexcept {
    return reinterpret_cast<arena::SpanHeader*>(page_at(page));
  }
  std::uint32_t pages_now() const noexcept {
    return static_cast<std::uint32_t>(header->size.load(std::memory_order_acquire) >>
                                      arena::kPageShift);
  }
  /// Pages of a span of class `c` in this arena (0: the class is served by page runs).
  std::uint32_t span_pages_of(std::uint32_t c) const noexcept { return span_pages_[c]; }
  std::string label() const { return segment.name().str(); }

  // ---- Allocation (alloc.cpp) ----
  void* allocate(std::size_t size, std::size_t align) noexcept;
  [[gnu::noinline]] void* allocate_slow(arena::HeapSlot* h, std::uint32_t c, std::size_t size,
                                        std::size_t align) noexcept;
  [[gnu::noinline]] void* allocate_large(std::size_t size, std::size_t align) noexcept;
  void deallocate(void* p);  // throws Error(EINVAL) for a pointer that is not a live block
  [[gnu::noinline]] void deallocate_slow(void* p);
  std::size_t block_size(const void* p) const;
  /// Grows a large block in place into the free pages after it; false if they are not free.
  bool grow_in_place(void* p, std::size_t size) noexcept;
  arena::HeapSlot* my_heap() noexcept;  // nullptr when no heap slot is free
  [[gnu::noinline]] arena::HeapSlot* my_heap_slow() noexcept;
  void release_heaps() noexcept;        // at close: hand our threads' heaps back
  void setup_classes() noexcept;        // fills span_pages_ from the header (after validation)

  // ---- Pages (pages.cpp), under arena_lock ----
  std::uint32_t take_pages(std::uint32_t count) noexcept;  // 0 when full and cannot grow
  void give_pages(std::uint32_t first, std::uint32_t count) noexcept;  // coalesces
  /// Takes `count` pages starting at `first` out of the free run that holds them.
  bool take_pages_at(std::uint32_t first, std::uint32_t count) noexcept;
  bool grow_for(std::uint32_t pages) noexcept;
  void repair_pages() noexcept;  // rebuilds the free runs from the page map
  /// True when free pages are short: heaps then share spans rather than open new ones.
  bool under_pressure() const noexcept;

  // ---- Users (arena.cpp) ----
  void join();                          // claims a user slot (EUSERS when full)
  void leave() noexcept;
  std::uint32_t recover_dead() noexcept;  // under arena_lock
  void repair_heap_spans(std::uint32_t index) noexcept;  // a dead owner's spans
  void ensure_joined();                 // after fork, the child joins as itself
};

/// Collects a span's remote frees and recomputes its use count from its lists (alloc.cpp).
void recount_span(ArenaImpl& a, arena::SpanHeader* s, std::uint32_t page) noexcept;

/// Checks a header read from another process (foreign bytes) against `segment_size`.
/// Throws Error(EINVAL) saying what is wrong.
void validate_header(const arena::ArenaHeader& h, std::uint64_t segment_size,
                     const std::string& label);

/// The registry of live handles in this process, by uid (thread exit releases heaps through it).
ArenaImpl* find_impl_by_base(const void* base) noexcept;
void register_impl(ArenaImpl* impl);
void unregister_impl(ArenaImpl* impl) noexcept;

/// Locks one of the arena's own locks. A dead previous owner is accepted: the arena lock's
/// structures are repaired (repair_pages), the others are consistent at every store. A lock
/// word naming a thread that does not exist (garbage, or a dead owner the kernel could not
/// report) is broken after a short wait instead of hanging.
struct ArenaLock {
  explicit ArenaLock(Mutex& m) noexcept;
  explicit ArenaLock(ArenaImpl& a) noexcept;  // the arena lock, repairing the page map
  ~ArenaLock() { mutex.unlock(); }
  ArenaLock(const ArenaLock&) = delete;
  ArenaLock& operator=(const ArenaLock&) = delete;
  Mutex& mutex;
  bool owner_died = false;
};

}  // namespace shmkit::detail
