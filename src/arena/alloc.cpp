// SPDX-License-Identifier: MIT
// The allocator: per-thread heaps of spans, remote frees, large blocks.
//
// A heap (one per thread, kept in the arena) allocates each size class from a span, a 64 KiB
// frame of equal blocks. Its owner pops the span's local free list or bumps into its untouched
// tail: plain loads and stores, no lock, no atomic read-modify-write. A block freed by its own
// heap's thread goes back on that list; one freed by any other thread or process is pushed on
// the span's remote list (a Treiber stack), and the span on its heap's remote_spans stack, for
// the owner to collect when it runs dry. Spans come from and return to the frame map under the
// arena lock, as do large blocks (runs of frames).
//
// A thread killed at any instruction leaves its heap in a state the next owner can rebuild:
// the truth is in the span headers (owner, bump count, lists), which adopt() re-reads.
#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include "arena/impl.hpp"
#include "os/os.hpp"
#include "shmkit/detail/robust.hpp"

namespace shmkit::detail {

using namespace arena;

namespace {

// ---- Size classes ----

// Class index for sizes up to kMaxSmall, by 16-byte steps: built once at compile time.
struct ClassTable {
  std::uint8_t index[kMaxSmall / 16 + 1];
  constexpr ClassTable() : index{} {
    std::uint32_t c = 0;
    for (std::uint32_t i = 0; i <= kMaxSmall / 16; ++i) {
      while (kClassSizes[c] < i * 16) ++c;
      index[i] = static_cast<std::uint8_t>(c);
    }
  }
};
constexpr ClassTable kClassTable{};

// The smallest class holding `size` bytes whose blocks are all aligned to `align` (<= 64).
// Spans start 64 bytes into a 64 KiB frame, so a block size that is a multiple of `align`
// gives aligned blocks.
inline std::uint32_t class_for(std::size_t size, std::size_t align) noexcept {
  std::uint32_t c = kClassTable.index[(size + 15) / 16];
  if (align > 16) [[unlikely]] {
    while (c < kClasses && kClassSizes[c] % align != 0) ++c;
  }
  return c;
}

inline std::uint64_t& link_of(std::byte* block) noexcept {
  return *reinterpret_cast<std::uint64_t*>(block);
}

// ceil(2^32 / size) per class: (rel * inverse) >> 32 == rel / size for every rel < 2^16, so a
// block's index costs a multiply, not a division.
struct Inverses {
  std::uint64_t of[kClasses];
  constexpr Inverses() : of{} {
    for (std::uint32_t c = 0; c < kClasses; ++c) {
      of[c] = ((std::uint64_t{1} << 32) + kClassSizes[c] - 1) / kClassSizes[c];
    }
  }
};
constexpr Inverses kInverses{};

// A free block's second word holds this key, so a free of a block that is already free is
// noticed (as glibc's tcache does): cheaply suspected, then confirmed by a walk.
inline std::uint64_t free_key(std::uint64_t off) noexcept { return off ^ 0x6672656564626c6bULL; }
inline std::uint64_t& key_of(std::byte* block) noexcept {
  return reinterpret_cast<std::uint64_t*>(block)[1];
}

// ---- This thread's heaps ----

// The fast path's one-entry cache: trivially destructible, so access needs no TLS guard.
struct FastHeap {
  std::uint64_t uid;
  HeapSlot* heap;
  std::uint32_t index;
};
thread_local constinit FastHeap tl_fast{};

// Every heap this thread owns, released when the thread exits.
struct Binding {
  std::uint64_t uid;
  std::uint32_t index;
};
struct ThreadHeaps {
  std::vector<Binding> bindings;
  ~ThreadHeaps();
};
thread_local ThreadHeaps tl_heaps;

std::mutex registry_mutex;
std::vector<ArenaImpl*> registry;  // live handles of this process
std::atomic<std::uint64_t> registry_epoch{1};  // bumped whenever a handle goes away

// The last arena this thread looked up by base address (Allocator<T>'s path).
struct BaseCache {
  const void* base;
  ArenaImpl* impl;
  std::uint64_t epoch;
};
thread_local constinit BaseCache tl_base{};

void forget_thread_heaps_after_fork() {
  tl_fast = FastHeap{};
  tl_base = BaseCache{};
  // The parent's bindings are not the child's: drop them without releasing anything.
  tl_heaps.bindings.clear();
}

void release_heap_slot(ArenaImpl& impl, std::uint32_t index) noexcept {
  HeapSlot* h = impl.heap(index);
  const std::uint32_t user = h->user;
  h->owner_tid.store(0, std::memory_order_release);
  if (user != 0 && user <= impl.header->max_users) {
    impl.users()[user - 1].heaps.fetch_sub(1, std::memory_order_relaxed);
  }
}

ThreadHeaps::~ThreadHeaps() {
  if (tl_fast.heap != nullptr) tl_fast = FastHeap{};
  std::lock_guard guard(registry_mutex);
  for (const Binding& b : bindings) {
    for (ArenaImpl* impl : registry) {
      if (impl->uid != b.uid) continue;
      std::lock_guard heaps_guard(impl->heaps_mutex);
      std::erase(impl->heaps, b.index);
      release_heap_slot(*impl, b.index);
    }
  }
}

}  // namespace

// ---- Registry ----

void register_impl(ArenaImpl* impl) {
  static const bool hooked = [] {
    (void)os::at_fork_child(&forget_thread_heaps_after_fork);
    return true;
  }();
  (void)hooked;
  std::lock_guard guard(registry_mutex);
  registry.push_back(impl);
}

void unregister_impl(ArenaImpl* impl) noexcept {
  std::lock_guard guard(registry_mutex);
  std::erase(registry, impl);
  registry_epoch.fetch_add(1, std::memory_order_release);
  if (tl_fast.uid == impl->uid) tl_fast = FastHeap{};
}

ArenaImpl* find_impl_by_base(const void* base) noexcept {
  const std::uint64_t epoch = registry_epoch.load(std::memory_order_acquire);
  if (tl_base.base == base && tl_base.epoch == epoch) [[likely]] return tl_base.impl;
  std::lock_guard guard(registry_mutex);
  ArenaImpl* found = nullptr;
  for (ArenaImpl* impl : registry) {
    if (impl->base == base) found = impl;  // inherited across fork: joins on first use
  }
  if (found != nullptr) tl_base = {base, found, epoch};
  return found;
}

// ---- Spans ----

namespace {

// Moves the span's remote frees to its local list. Returns how many it moved. Walks the
// list checking every link (bytes written by other processes are input).
std::uint32_t collect_remote(ArenaImpl& a, SpanHeader* s, std::uint32_t frame) noexcept {
  std::uint64_t head = s->remote_free.exchange(0, std::memory_order_acquire);
  if (head == 0) return 0;
  const std::uint64_t lo = (std::uint64_t{frame} << kFrameShift) + kSpanHeaderSize;
  const std::uint64_t hi = lo + std::uint64_t{s->capacity} * s->block_size;
  std::uint32_t n = 1;
  std::uint64_t tail = head;
  if (head < lo || head >= hi) return 0;  // corrupt: drop the list (check() will see the loss)
  for (std::uint64_t next = link_of(a.base + tail); next != 0; next = link_of(a.base + tail)) {
    if (next < lo || next >= hi || n > s->capacity) {
      link_of(a.base + tail) = 0;  // corrupt tail: cut it off
      break;
    }
    tail = next;
    ++n;
  }
  link_of(a.base + tail) = s->local_free;
  s->local_free = head;
  s->used = s->used >= n ? s->used - n : 0;
  return n;
}

// True if `off` is on a free list of the span at `frame` starting at `head`. Bounded, and
// every link is checked: another thread may be changing the list as we read it.
bool on_list(const ArenaImpl& a, const SpanHeader* s, std::uint32_t frame, std::uint64_t head,
             std::uint64_t off) noexcept {
  const std::uint64_t lo = (std::uint64_t{frame} << kFrameShift) + kSpanHeaderSize;
  const std::uint64_t hi = lo + std::uint64_t{s->capacity} * s->block_size;
  for (std::uint32_t n = 0; head != 0 && n <= s->capacity; ++n) {
    if (head == off) return true;
    if (head < lo || head >= hi) return false;
    head = std::atomic_ref<const std::uint64_t>(*reinterpret_cast<const std::uint64_t*>(a.base + head))
               .load(std::memory_order_relaxed);
  }
  return false;
}

inline bool has_free(const SpanHeader* s) noexcept {
  return s->local_free != 0 || s->bumped < s->capacity;
}

void push_partial(HeapSlot* h, SpanHeader* s, std::uint32_t frame) noexcept {
  s->next_partial = h->partial[s->size_class];
  s->in_partial = 1;
  h->partial[s->size_class] = frame;
}

void remove_partial(ArenaImpl& a, HeapSlot* h, SpanHeader* s, std::uint32_t frame) noexcept {
  std::uint32_t* link = &h->partial[s->size_class];
  while (*link != 0 && *link != frame) link = &a.span(*link)->next_partial;
  if (*link == frame) *link = s->next_partial;
  s->in_partial = 0;
  s->next_partial = 0;
}

// Returns an empty span to the frame map.
void release_span(ArenaImpl& a, HeapSlot* h, SpanHeader* s, std::uint32_t frame) noexcept {
  if (s->in_partial != 0) remove_partial(a, h, s, frame);
  ArenaLock lock(a);
  s->heap = 0;
  s->magic = 0;
  a.give_frames(frame, 1);
}

// Collects the remote frees of every span queued on the heap's remote_spans stack.
void drain_remote_spans(ArenaImpl& a, HeapSlot* h) noexcept {
  std::uint32_t frame = h->remote_spans.exchange(0, std::memory_order_acquire);
  std::uint32_t guard = a.frames_now();
  while (frame != 0 && guard-- != 0) {
    SpanHeader* s = a.span(frame);
    // Read the link first: once in_remote is clear, a remote free may push the span again.
    const std::uint32_t next = s->next_remote.load(std::memory_order_relaxed);
    s->in_remote.store(0, std::memory_order_release);
    if (collect_remote(a, s, frame) != 0 && h->current[s->size_class] != frame) {
      if (s->used == 0) {
        release_span(a, h, s, frame);
      } else if (s->in_partial == 0) {
        push_partial(h, s, frame);
      }
    }
    frame = next;
  }
}

inline void* pop(ArenaImpl& a, SpanHeader* s, std::uint32_t frame) noexcept {
  if (s->local_free != 0) {
    std::byte* p = a.base + s->local_free;
    s->local_free = link_of(p);
    key_of(p) = 0;
    ++s->used;
    return p;
  }
  if (s->bumped < s->capacity) {
    std::byte* p = a.base + (std::uint64_t{frame} << kFrameShift) + kSpanHeaderSize +
                   std::uint64_t{s->bumped} * s->block_size;
    key_of(p) = 0;  // a released span's old free blocks may still carry keys
    ++s->bumped;
    ++s->used;
    return p;
  }
  return nullptr;
}

// The current span of class `c` ran dry: find blocks elsewhere, or a new span.
[[gnu::noinline]] void* refill(ArenaImpl& a, HeapSlot* h, std::uint32_t c) noexcept {
  drain_remote_spans(a, h);
  const std::uint32_t cur = h->current[c];
  if (cur != 0) {
    SpanHeader* s = a.span(cur);
    collect_remote(a, s, cur);
    if (void* p = pop(a, s, cur)) return p;
  }
  while (h->partial[c] != 0) {
    const std::uint32_t frame = h->partial[c];
    SpanHeader* s = a.span(frame);
    h->partial[c] = s->next_partial;
    s->in_partial = 0;
    s->next_partial = 0;
    collect_remote(a, s, frame);
    if (!has_free(s)) continue;
    h->current[c] = frame;
    return pop(a, s, frame);
  }
  // A fresh span. Its header is complete before the frame map says "span" (the commit).
  const std::uint32_t heap_index = static_cast<std::uint32_t>(h - a.heap(0));
  std::uint32_t frame = 0;
  {
    ArenaLock lock(a);
    frame = a.take_frames(1);
    if (frame == 0) return nullptr;
    SpanHeader* s = a.span(frame);
    s->size_class = static_cast<std::uint16_t>(c);
    s->heap = static_cast<std::uint16_t>(heap_index + 1);
    s->block_size = kClassSizes[c];
    s->capacity = static_cast<std::uint32_t>((kFrameSize - kSpanHeaderSize) / kClassSizes[c]);
    s->bumped = 0;
    s->used = 0;
    s->local_free = 0;
    s->remote_free.store(0, std::memory_order_relaxed);
    s->next_partial = 0;
    s->next_remote.store(0, std::memory_order_relaxed);
    s->in_partial = 0;
    s->in_remote.store(0, std::memory_order_relaxed);
    s->magic = kSpanMagic ^ frame;
    a.frame_kind(frame).store(static_cast<std::uint8_t>(FrameKind::span), std::memory_order_release);
  }
  h->current[c] = frame;
  return pop(a, a.span(frame), frame);
}

}  // namespace

// Collects a span's remote frees and recounts what is in use from its lists: a thread killed
// mid-operation may have left `used` off by one, or a list cut short. Only for spans no live
// thread owns.
void recount_span(ArenaImpl& a, SpanHeader* s, std::uint32_t f) noexcept {
  collect_remote(a, s, f);
  std::uint32_t free_blocks = 0;
  const std::uint64_t lo = (std::uint64_t{f} << kFrameShift) + kSpanHeaderSize;
  const std::uint64_t hi = lo + std::uint64_t{s->capacity} * s->block_size;
  std::uint64_t* link = &s->local_free;
  while (*link != 0) {
    if (*link < lo || *link >= hi || (*link - lo) % s->block_size != 0 ||
        free_blocks >= s->capacity) {
      *link = 0;  // corrupt: cut the list here
      break;
    }
    ++free_blocks;
    link = &link_of(a.base + *link);
  }
  if (s->bumped > s->capacity) s->bumped = s->capacity;
  s->used = s->bumped >= free_blocks ? s->bumped - free_blocks : 0;
}

namespace {

// Takes over heap `index` (free, or left by a dead thread): rebuilds its lists from the span
// headers that name it, checking each.
void adopt(ArenaImpl& a, std::uint32_t index) noexcept {
  HeapSlot* h = a.heap(index);
  ++h->generation;
  for (std::uint32_t c = 0; c < kClasses; ++c) {
    h->current[c] = 0;
    h->partial[c] = 0;
  }
  h->remote_spans.store(0, std::memory_order_relaxed);
  const std::uint32_t frames = a.frames_now();
  for (std::uint32_t f = a.header->meta_frames; f < frames; ++f) {
    if (a.frame_kind(f).load(std::memory_order_acquire) != static_cast<std::uint8_t>(FrameKind::span)) {
      continue;
    }
    SpanHeader* s = a.span(f);
    if (s->heap != index + 1 || s->magic != (kSpanMagic ^ f) || s->size_class >= kClasses) continue;
    s->in_remote.store(0, std::memory_order_relaxed);
    s->next_remote.store(0, std::memory_order_relaxed);
    s->in_partial = 0;
    s->next_partial = 0;
    recount_span(a, s, f);
    if (has_free(s)) push_partial(h, s, f);
  }
}

}  // namespace

HeapSlot* ArenaImpl::my_heap() noexcept {
  if (tl_fast.uid == uid) [[likely]] return tl_fast.heap;
  return my_heap_slow();
}

HeapSlot* ArenaImpl::my_heap_slow() noexcept {
  try {
    ensure_joined();  // a forked child joins as itself: the table may be full (EUSERS)
  } catch (const Error& e) {
    report_error(e);
    return nullptr;  // the allocation fails; nothing else changes
  }
  for (const Binding& b : tl_heaps.bindings) {
    if (b.uid == uid) {
      tl_fast = {uid, heap(b.index), b.index};
      return tl_fast.heap;
    }
  }
  const auto tid = static_cast<std::uint32_t>(detail::this_thread().tid);
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (std::uint32_t i = 0; i < header->max_heaps; ++i) {
      HeapSlot* h = heap(i);
      std::uint32_t expected = 0;
      if (h->owner_tid.load(std::memory_order_relaxed) != 0 ||
          !h->owner_tid.compare_exchange_strong(expected, tid, std::memory_order_acquire)) {
        continue;
      }
      h->user = user;
      adopt(*this, i);
      if (user != 0) users()[user - 1].heaps.fetch_add(1, std::memory_order_relaxed);
      tl_heaps.bindings.push_back({uid, i});
      {
        std::lock_guard guard(heaps_mutex);
        heaps.push_back(i);
      }
      tl_fast = {uid, h, i};
      return h;
    }
    // Every slot is taken: free those of dead users and look again.
    ArenaLock lock(*this);
    if (recover_dead() == 0) break;
  }
  return nullptr;
}

void ArenaImpl::release_heaps() noexcept {
  std::lock_guard guard(heaps_mutex);
  for (std::uint32_t index : heaps) release_heap_slot(*this, index);
  heaps.clear();
  if (tl_fast.uid == uid) tl_fast = FastHeap{};
  std::erase_if(tl_heaps.bindings, [this](const Binding& b) { return b.uid == uid; });
}

// ---- Allocation ----

void* ArenaImpl::allocate(std::size_t size, std::size_t align) noexcept {
  if (size <= kMaxSmall && align <= 64) [[likely]] {
    const std::uint32_t c = class_for(size == 0 ? 1 : size, align);
    if (c < kClasses) [[likely]] {
      HeapSlot* h = my_heap();
      if (h == nullptr) [[unlikely]] return nullptr;
      const std::uint32_t frame = h->current[c];
      if (frame != 0) [[likely]] {
        SpanHeader* s = span(frame);
        if (void* p = pop(*this, s, frame)) [[likely]] return p;
      }
      return refill(*this, h, c);
    }
  }
  return allocate_large(size, align);
}

void* ArenaImpl::allocate_large(std::size_t size, std::size_t align) noexcept {
  if (align > kFrameSize || (align & (align - 1)) != 0) return nullptr;
  // Large: whole frames; the caller's block starts after the header, at an address aligned
  // to `align` (the base is only page-aligned, so the padding depends on where it lands).
  if (size > header->max_size) return nullptr;
  const std::uint64_t slack = align > kLargeHeaderSize ? align : 0;
  const std::uint64_t frames64 = (kLargeHeaderSize + slack + size + kFrameSize - 1) >> kFrameShift;
  if (frames64 > header->max_frames) return nullptr;
  const auto frames = static_cast<std::uint32_t>(frames64);
  ArenaLock lock(*this);
  const std::uint32_t first = take_frames(frames);
  if (first == 0) return nullptr;
  auto* lh = reinterpret_cast<LargeHeader*>(base + (std::uint64_t{first} << kFrameShift));
  const auto start = reinterpret_cast<std::uintptr_t>(lh) + kLargeHeaderSize;
  const std::uint64_t offset =
      kLargeHeaderSize + ((align - start % align) % align);
  lh->frames = frames;
  lh->requested = size;
  lh->user_offset = offset;
  lh->magic = kLargeMagic ^ first;
  for (std::uint32_t f = first + 1; f < first + frames; ++f) {
    frame_kind(f).store(static_cast<std::uint8_t>(FrameKind::large_tail), std::memory_order_relaxed);
  }
  frame_kind(first).store(static_cast<std::uint8_t>(FrameKind::large_head), std::memory_order_release);
  header->large_bytes.fetch_add(size, std::memory_order_relaxed);
  return reinterpret_cast<std::byte*>(lh) + offset;
}

void ArenaImpl::deallocate(void* p) {
  // The common case inline: a valid block of a span this thread's heap owns, not already
  // free. Everything else (other heaps' blocks, large blocks, errors) takes the slow path.
  const auto off = static_cast<std::uint64_t>(static_cast<std::byte*>(p) - base);
  if (tl_fast.uid == uid && static_cast<std::byte*>(p) >= base &&
      off >= (std::uint64_t{header->meta_frames} << kFrameShift) &&
      off < header->size.load(std::memory_order_acquire)) [[likely]] {
    const auto frame = static_cast<std::uint32_t>(off >> kFrameShift);
    SpanHeader* s = span(frame);
    if (frame_kind(frame).load(std::memory_order_acquire) == static_cast<std::uint8_t>(FrameKind::span) &&
        s->magic == (kSpanMagic ^ frame) && s->heap == tl_fast.index + 1 &&
        s->size_class < kClasses) [[likely]] {
      const std::uint64_t rel = off - (std::uint64_t{frame} << kFrameShift) - kSpanHeaderSize;
      const std::uint64_t index = (rel * kInverses.of[s->size_class]) >> 32;
      std::byte* block = static_cast<std::byte*>(p);
      if (index * s->block_size == rel && index < s->bumped && key_of(block) != free_key(off))
          [[likely]] {
        HeapSlot* h = tl_fast.heap;
        key_of(block) = free_key(off);
        link_of(block) = s->local_free;
        s->local_free = off;
        --s->used;
        ++h->frees;
        if (h->current[s->size_class] != frame) [[unlikely]] {
          if (s->used == 0) {
            release_span(*this, h, s, frame);
          } else if (s->in_partial == 0) {
            push_partial(h, s, frame);
          }
        }
        return;
      }
    }
  }
  deallocate_slow(p);
}

void ArenaImpl::deallocate_slow(void* p) {
  const auto off = static_cast<std::uint64_t>(static_cast<std::byte*>(p) - base);
  const std::uint64_t meta = std::uint64_t{header->meta_frames} << kFrameShift;
  if (static_cast<std::byte*>(p) < base || off < meta ||
      off >= header->size.load(std::memory_order_acquire)) {
    throw Error(EINVAL, label(), "free", "the pointer is not in the arena");
  }
  const auto frame = static_cast<std::uint32_t>(off >> kFrameShift);
  const auto kind = static_cast<FrameKind>(frame_kind(frame).load(std::memory_order_acquire));
  if (kind == FrameKind::span) [[likely]] {
    SpanHeader* s = span(frame);
    if (s->magic != (kSpanMagic ^ frame) || off < (std::uint64_t{frame} << kFrameShift) + kSpanHeaderSize) {
      throw Error(EINVAL, label(), "free", "the pointer is not a block of this arena");
    }
    std::byte* block = static_cast<std::byte*>(p);
    const std::uint64_t rel = off - (std::uint64_t{frame} << kFrameShift) - kSpanHeaderSize;
    if (s->size_class >= kClasses) [[unlikely]] {
      throw Error(EINVAL, label(), "free", "the pointer is not a block of this arena");
    }
    const std::uint64_t index = (rel * kInverses.of[s->size_class]) >> 32;
    if (index * s->block_size != rel || index >= s->bumped) [[unlikely]] {
      throw Error(EINVAL, label(), "free", "the pointer is not the start of a block");
    }
    if (key_of(block) == free_key(off)) [[unlikely]] {
      if (on_list(*this, s, frame, s->local_free, off) ||
          on_list(*this, s, frame, s->remote_free.load(std::memory_order_acquire), off)) {
        throw Error(EINVAL, label(), "free", "the block is already free (freed twice?)");
      }
    }
    key_of(block) = free_key(off);
    if (tl_fast.uid == uid && s->heap == tl_fast.index + 1) [[likely]] {
      HeapSlot* h = tl_fast.heap;
      link_of(block) = s->local_free;
      s->local_free = off;
      --s->used;
      ++h->frees;
      if (h->current[s->size_class] != frame) {
        if (s->used == 0) {
          release_span(*this, h, s, frame);
        } else if (s->in_partial == 0) {
          push_partial(h, s, frame);
        }
      }
      return;
    }
    // Another heap's block: push it on the span's remote list, and the span on its heap's
    // remote_spans stack if it is not there yet.
    std::uint64_t head = s->remote_free.load(std::memory_order_relaxed);
    do {
      link_of(block) = head;
    } while (!s->remote_free.compare_exchange_weak(head, off, std::memory_order_release,
                                                   std::memory_order_relaxed));
    const std::uint32_t owner = s->heap;
    if (owner != 0 && owner <= header->max_heaps &&
        s->in_remote.load(std::memory_order_relaxed) == 0 &&
        s->in_remote.exchange(1, std::memory_order_acq_rel) == 0) {
      HeapSlot* h = heap(owner - 1);
      std::uint32_t top = h->remote_spans.load(std::memory_order_relaxed);
      do {
        s->next_remote.store(top, std::memory_order_relaxed);
      } while (!h->remote_spans.compare_exchange_weak(top, frame, std::memory_order_release,
                                                      std::memory_order_relaxed));
    }
    return;
  }
  if (kind == FrameKind::large_head || kind == FrameKind::large_tail) {
    // A large block aligned far enough may start in its run's second frame: find the head.
    std::uint32_t head = frame;
    while (head > header->meta_frames &&
           static_cast<FrameKind>(frame_kind(head).load(std::memory_order_acquire)) == FrameKind::large_tail) {
      --head;
    }
    auto* lh = reinterpret_cast<LargeHeader*>(base + (std::uint64_t{head} << kFrameShift));
    ArenaLock lock(*this);
    if (static_cast<FrameKind>(frame_kind(head).load(std::memory_order_relaxed)) != FrameKind::large_head ||
        lh->magic != (kLargeMagic ^ head) ||
        static_cast<std::byte*>(p) != reinterpret_cast<std::byte*>(lh) + lh->user_offset) {
      throw Error(EINVAL, label(), "free", "the pointer is not a live block of this arena");
    }
    header->large_bytes.fetch_sub(lh->requested, std::memory_order_relaxed);
    const std::uint32_t frames = lh->frames;
    lh->magic = 0;
    give_frames(head, frames);
    return;
  }
  throw Error(EINVAL, label(), "free", "the pointer is not a live block (freed twice?)");
}

std::size_t ArenaImpl::block_size(const void* p) const {
  const auto off = static_cast<std::uint64_t>(static_cast<const std::byte*>(p) - base);
  if (static_cast<const std::byte*>(p) < base || off >= header->size.load(std::memory_order_acquire)) {
    throw Error(EINVAL, label(), "block size", "the pointer is not in the arena");
  }
  const auto frame = static_cast<std::uint32_t>(off >> kFrameShift);
  const auto kind = static_cast<FrameKind>(frame_kind(frame).load(std::memory_order_acquire));
  if (kind == FrameKind::span) return span(frame)->block_size;
  if (kind == FrameKind::large_head || kind == FrameKind::large_tail) {
    std::uint32_t head = frame;
    while (head > header->meta_frames &&
           static_cast<FrameKind>(frame_kind(head).load(std::memory_order_acquire)) == FrameKind::large_tail) {
      --head;
    }
    const auto* lh = reinterpret_cast<const LargeHeader*>(base + (std::uint64_t{head} << kFrameShift));
    if (lh->magic == (kLargeMagic ^ head) &&
        static_cast<const std::byte*>(p) == reinterpret_cast<const std::byte*>(lh) + lh->user_offset) {
      return (std::uint64_t{lh->frames} << kFrameShift) - lh->user_offset;
    }
  }
  throw Error(EINVAL, label(), "block size", "the pointer is not a live block");
}

}  // namespace shmkit::detail

// ---- The public entry points, here so that the fast paths inline into them ----

namespace shmkit {

using arena::kFrameSize;

[[gnu::flatten]] void* Arena::try_allocate(std::size_t size, std::size_t align) noexcept {
  if (align == 0 || (align & (align - 1)) != 0) return nullptr;
  return impl_->allocate(size, align);
}

[[gnu::flatten]] void* Arena::allocate(std::size_t size, std::size_t align) {
  if (align == 0 || (align & (align - 1)) != 0 || align > kFrameSize) {
    throw Error(EINVAL, impl_->label(), "allocate", "the alignment is not a power of two up to 64 KiB");
  }
  void* p = impl_->allocate(size, align);
  if (p == nullptr) {
    throw Error(ENOMEM, impl_->label(), "allocate",
                "no room for " + std::to_string(size) + " bytes (the arena is at its maximum size, "
                "or memory is short)");
  }
  return p;
}

[[gnu::flatten]] void Arena::deallocate(void* p) noexcept {
  if (p == nullptr) return;
  try {
    impl_->deallocate(p);
  } catch (const Error& e) {
    report_error(e);
  }
}

}  // namespace shmkit
