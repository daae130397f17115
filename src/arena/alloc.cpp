// SPDX-License-Identifier: MIT
// The allocator: per-thread heaps of spans, remote frees, sharing under pressure, large blocks.
//
// A heap (one per thread, kept in the arena) allocates each size class from a span, a run of
// pages of equal blocks sized to the arena. Its owner pops the span's local free list (plain
// loads and stores, no lock, no atomic read-modify-write) or claims a block of its untouched
// tail. A block freed by its own heap's thread goes back on that list; one freed by any other
// thread or process is pushed on the span's remote stack, and the span on its heap's
// remote_spans stack, for the owner to collect when it runs dry. Empty spans go back to the
// pages at once. When free pages run short (under_pressure), a heap that runs dry does not open
// a span of its own while another has room: holding the arena lock it claims untouched blocks
// and remote frees of other heaps' spans, adopts the spans of heaps nobody owns, and falls
// back to larger classes; it returns nullptr only when nothing fits. Large blocks are page runs.
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

// The smallest class of this arena holding `size` bytes whose blocks are all aligned to
// `align` (<= 64), or kClasses. Blocks start 64 bytes into a page-aligned span, so a block
// size that is a multiple of `align` gives aligned blocks.
inline std::uint32_t class_for(const ArenaImpl& a, std::size_t size, std::size_t align) noexcept {
  std::uint32_t c = a.class_map_[kClassTable.index[(size + 15) / 16]];
  if (align > 16) [[unlikely]] {
    while (c < kClasses && (kClassSizes[c] % align != 0 || a.span_pages_of(c) == 0)) ++c;
  }
  return c;
}

inline std::uint64_t& link_of(std::byte* block) noexcept {
  return *reinterpret_cast<std::uint64_t*>(block);
}

// ceil(2^32 / size) per class: (rel * inverse) >> 32 == rel / size for every rel < 2^16 (a
// span is at most 64 KiB), so a block's index costs a multiply, not a division.
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
static_assert(kClassSizes[0] >= 16, "a free block holds its link and its key");

// A span's remote stack: the top 16 bits count pushes, so that a pop by another heap (under
// the arena lock) cannot be fooled by the same block coming back (ABA); the owner takes the
// whole stack with fetch_and, which keeps the count.
constexpr std::uint64_t kTagShift = 48;
constexpr std::uint64_t kOffsetMask = (std::uint64_t{1} << kTagShift) - 1;
inline std::uint64_t top_of(std::uint64_t word) noexcept { return word & kOffsetMask; }

// The span holding page `p` (its first page), or 0. The map says which page heads it.
inline std::uint32_t span_head(const ArenaImpl& a, std::uint32_t p) noexcept {
  const std::uint8_t k = a.page_kind(p).load(std::memory_order_acquire);
  const std::uint32_t back = k & ~kSpanTail;
  return (k & kSpanTail) != 0 && back <= p ? p - back : 0;
}

// ---- The heap guard (INV-HEAP-1) ----

// Takes the guard of our own heap `h` for a slow path. A taker holds it briefly; one that
// died holding it is broken.
void lock_heap(HeapSlot* h) noexcept {
  const auto me = static_cast<std::uint32_t>(detail::this_thread().tid);
  for (std::uint32_t spins = 0;; ++spins) {
    std::uint32_t holder = 0;
    if (h->guard.compare_exchange_weak(holder, me, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      return;
    }
    if (spins < 64) {
      detail::cpu_relax();
      continue;
    }
    os::yield();
    if (holder != 0 && spins % 4096 == 0 && !os::thread_alive(static_cast<std::int32_t>(holder))) {
      (void)h->guard.compare_exchange_strong(holder, 0, std::memory_order_relaxed);
    }
  }
}

inline void unlock_heap(HeapSlot* h) noexcept { h->guard.store(0, std::memory_order_release); }

// The owner's fast-path bracket: plain stores around the work, and a look at the guard. False
// (and out of the bracket) when a taker holds the heap: take the slow path.
inline bool enter_heap(HeapSlot* h) noexcept {
  h->busy.store(1, std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);  // the heavy fence pairs with this
  if (h->guard.load(std::memory_order_relaxed) == 0) [[likely]] return true;
  h->busy.store(0, std::memory_order_release);
  return false;
}
inline void leave_heap(HeapSlot* h) noexcept { h->busy.store(0, std::memory_order_release); }

// Takes another live heap's guard and waits for its owner to leave its fast path (or gives
// up: the guard is held, heavy fences do not reach the owner's process, or the owner stays
// in its bracket for 20 ms — descheduled, or dead). Then the heap's lists are ours until
// unlock_heap().
bool freeze(HeapSlot* v) noexcept {
  if (v->fenced == 0 || !detail::this_thread().heavy_fence) return false;
  const auto me = static_cast<std::uint32_t>(detail::this_thread().tid);
  std::uint32_t holder = 0;
  if (!v->guard.compare_exchange_strong(holder, me, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
    return false;
  }
  if (!os::heavy_fence().ok()) {
    unlock_heap(v);
    return false;
  }
  const std::int64_t deadline = os::monotonic_ns() + 20'000'000;
  for (std::uint32_t spins = 0; v->busy.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < 256) {
      detail::cpu_relax();
    } else if (os::monotonic_ns() > deadline) {
      unlock_heap(v);
      return false;
    } else {
      os::yield();
    }
  }
  return true;
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
  lock_heap(h);  // a taker may be at work on it
  h->owner_tid.store(0, std::memory_order_release);
  unlock_heap(h);
  impl.header->abandoned.fetch_add(1, std::memory_order_relaxed);
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

inline std::uint64_t span_lo(std::uint32_t page) noexcept {
  return (std::uint64_t{page} << kPageShift) + kSpanHeaderSize;
}

inline std::uint32_t claimed(const SpanHeader* s) noexcept {
  const std::uint32_t b = s->bumped.load(std::memory_order_relaxed);
  return b < s->capacity ? b : s->capacity;
}

// Moves the span's remote frees to its local list (owner only). Returns how many it moved.
// Walks the list checking every link (bytes written by other processes are input).
std::uint32_t collect_remote(ArenaImpl& a, SpanHeader* s, std::uint32_t page) noexcept {
  if (top_of(s->remote_free.load(std::memory_order_relaxed)) == 0) return 0;
  const std::uint64_t head = top_of(s->remote_free.fetch_and(~kOffsetMask, std::memory_order_acquire));
  const std::uint64_t lo = span_lo(page);
  const std::uint64_t hi = lo + std::uint64_t{s->capacity} * s->block_size;
  if (head < lo || head >= hi) return 0;  // corrupt: drop the list (check() will see the loss)
  std::uint32_t n = 1;
  std::uint64_t tail = head;
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
  s->used -= static_cast<std::int32_t>(n);
  return n;
}

// True if `off` is on a free list of the span at `page` starting at `head`. Bounded, and
// every link is checked: another thread may be changing the list as we read it.
bool on_list(const ArenaImpl& a, const SpanHeader* s, std::uint32_t page, std::uint64_t head,
             std::uint64_t off) noexcept {
  const std::uint64_t lo = span_lo(page);
  const std::uint64_t hi = lo + std::uint64_t{s->capacity} * s->block_size;
  head = top_of(head);
  for (std::uint32_t n = 0; head != 0 && n <= s->capacity; ++n) {
    if (head == off) return true;
    if (head < lo || head >= hi) return false;
    head = std::atomic_ref<const std::uint64_t>(*reinterpret_cast<const std::uint64_t*>(a.base + head))
               .load(std::memory_order_relaxed);
  }
  return false;
}

inline bool has_free(const SpanHeader* s) noexcept {
  return s->local_free != 0 || s->bumped.load(std::memory_order_relaxed) < s->capacity;
}

void push_partial(HeapSlot* h, SpanHeader* s, std::uint32_t page) noexcept {
  s->next_partial = h->partial[s->size_class];
  s->in_partial = 1;
  h->partial[s->size_class] = page;
}

void remove_partial(ArenaImpl& a, HeapSlot* h, SpanHeader* s, std::uint32_t page) noexcept {
  std::uint32_t* link = &h->partial[s->size_class];
  for (std::uint32_t n = 0; *link != 0 && *link != page && n < a.pages_now(); ++n) {
    link = &a.span(*link)->next_partial;
  }
  if (*link == page) *link = s->next_partial;
  s->in_partial = 0;
  s->next_partial = 0;
}

// Returns a span whose blocks are all back (used + foreign == 0) to the pages. Another heap
// may have claimed a block meanwhile: the count is checked again under the lock.
void release_span_locked(ArenaImpl& a, HeapSlot* h, SpanHeader* s, std::uint32_t page) noexcept {
  if (s->used + s->foreign.load(std::memory_order_relaxed) != 0) {
    if (s->in_partial == 0 && has_free(s)) push_partial(h, s, page);
    return;
  }
  if (s->in_partial != 0) remove_partial(a, h, s, page);
  s->heap = 0;
  s->magic = 0;  // first: from here the span is gone (a kill leaves orphan pages)
  a.give_pages(page, s->pages);
}

void release_span(ArenaImpl& a, HeapSlot* h, SpanHeader* s, std::uint32_t page) noexcept {
  ArenaLock lock(a);
  release_span_locked(a, h, s, page);
}

// A span of ours with no block in use that is not current goes back; one with free blocks
// goes on the partial list. `locked`: the caller holds the arena lock.
inline void settle(ArenaImpl& a, HeapSlot* h, SpanHeader* s, std::uint32_t page,
                   bool locked = false) noexcept {
  if (h->current[s->size_class] == page) return;
  if (s->used + s->foreign.load(std::memory_order_relaxed) == 0) {
    if (locked) {
      release_span_locked(a, h, s, page);
    } else {
      release_span(a, h, s, page);
    }
  } else if (s->in_partial == 0 && has_free(s)) {
    push_partial(h, s, page);
  }
}

// Pushes span `page` on the remote_spans stack of the heap that owns it now, if it has
// remote frees and is not on a stack (the step a remote free takes).
void route_remote(ArenaImpl& a, SpanHeader* s, std::uint32_t page) noexcept {
  const std::uint32_t owner = s->heap;
  if (owner == 0 || owner > a.header->max_heaps || top_of(s->remote_free.load(std::memory_order_acquire)) == 0 ||
      s->in_remote.exchange(1, std::memory_order_acq_rel) != 0) {
    return;
  }
  HeapSlot* h = a.heap(owner - 1);
  std::uint32_t top = h->remote_spans.load(std::memory_order_relaxed);
  do {
    s->next_remote.store(top, std::memory_order_relaxed);
  } while (!h->remote_spans.compare_exchange_weak(top, page, std::memory_order_release,
                                                  std::memory_order_relaxed));
}

// Takes the heap's remote_spans stack and calls `visit(span, page, ours)` for each span on it,
// having cleared its in_remote; a span another heap took over meanwhile (ours == false) is
// routed to its owner.
template <class Visit>
void take_remote_spans(ArenaImpl& a, HeapSlot* h, Visit visit) noexcept {
  std::uint32_t page = h->remote_spans.exchange(0, std::memory_order_acquire);
  const std::uint32_t self = static_cast<std::uint32_t>(h - a.heap(0)) + 1;
  std::uint32_t guard = a.pages_now();
  while (page != 0 && page < a.pages_now() && guard-- != 0) {
    SpanHeader* s = a.span(page);
    if (span_head(a, page) != page || s->magic != (kSpanMagic ^ page)) break;  // corrupt: drop the rest
    // Read the link first: once in_remote is clear, a remote free may push the span again.
    const std::uint32_t next = s->next_remote.load(std::memory_order_relaxed);
    s->in_remote.store(0, std::memory_order_release);
    if (s->heap == self) {
      visit(s, page);
    } else {
      route_remote(a, s, page);
    }
    page = next;
  }
}

// Collects the remote frees of every span queued on the heap's remote_spans stack.
void drain_remote_spans(ArenaImpl& a, HeapSlot* h) noexcept {
  take_remote_spans(a, h, [&](SpanHeader* s, std::uint32_t page) {
    if (collect_remote(a, s, page) != 0) settle(a, h, s, page);
  });
}

inline void* pop(ArenaImpl& a, SpanHeader* s, std::uint32_t page) noexcept {
  if (s->local_free != 0) {
    std::byte* p = a.base + s->local_free;
    s->local_free = link_of(p);
    key_of(p) = 0;
    ++s->used;
    return p;
  }
  if (s->bumped.load(std::memory_order_relaxed) < s->capacity) {
    // Atomic: under pressure another heap may claim tail blocks too.
    const std::uint32_t i = s->bumped.fetch_add(1, std::memory_order_relaxed);
    if (i < s->capacity) {
      std::byte* p = a.base + span_lo(page) + std::uint64_t{i} * s->block_size;
      key_of(p) = 0;  // a released span's old free blocks may still carry keys
      ++s->used;
      return p;
    }
  }
  return nullptr;
}

// Pops from the heap's own spans of class `c`: current, then partial (after their remote
// frees are collected). `locked`: the caller holds the arena lock.
void* pop_own(ArenaImpl& a, HeapSlot* h, std::uint32_t c, bool locked) noexcept {
  const std::uint32_t cur = h->current[c];
  if (cur != 0) {
    SpanHeader* s = a.span(cur);
    collect_remote(a, s, cur);
    if (void* p = pop(a, s, cur)) return p;
  }
  while (h->partial[c] != 0) {
    const std::uint32_t page = h->partial[c];
    SpanHeader* s = a.span(page);
    h->partial[c] = s->next_partial;
    s->in_partial = 0;
    s->next_partial = 0;
    collect_remote(a, s, page);
    if (!has_free(s)) continue;
    h->current[c] = page;
    if (cur != 0 && cur != page) settle(a, h, a.span(cur), cur, locked);
    return pop(a, s, page);
  }
  return nullptr;
}

// A fresh span of class `c` for heap `h`, or nullptr when no pages are free. Its header is
// complete before the page map says "span" (the commit). Under the arena lock.
void* new_span(ArenaImpl& a, HeapSlot* h, std::uint32_t c) noexcept {
  const std::uint32_t pages = a.span_pages_of(c);
  const std::uint32_t page = a.take_pages(pages);
  if (page == 0) return nullptr;
  SpanHeader* s = a.span(page);
  s->size_class = static_cast<std::uint16_t>(c);
  s->heap = static_cast<std::uint16_t>(h - a.heap(0) + 1);
  s->block_size = kClassSizes[c];
  s->capacity = span_capacity(c, pages);
  s->bumped.store(0, std::memory_order_relaxed);
  s->used = 0;
  s->local_free = 0;
  s->remote_free.store(0, std::memory_order_relaxed);
  s->next_partial = 0;
  s->next_remote.store(0, std::memory_order_relaxed);
  s->in_partial = 0;
  s->in_remote.store(0, std::memory_order_relaxed);
  s->foreign.store(0, std::memory_order_relaxed);
  s->pages = static_cast<std::uint16_t>(pages);
  s->reserved = 0;
  s->magic = kSpanMagic ^ page;
  for (std::uint32_t t = 1; t < pages; ++t) {
    a.page_kind(page + t).store(static_cast<std::uint8_t>(kSpanTail | t), std::memory_order_relaxed);
  }
  a.page_kind(page).store(static_cast<std::uint8_t>(PageKind::span), std::memory_order_release);
  const std::uint32_t cur = h->current[c];
  h->current[c] = page;
  if (cur != 0) settle(a, h, a.span(cur), cur, true);
  a.header->open_span[c].store(page, std::memory_order_relaxed);
  return pop(a, s, page);
}

// A live span header at `page` of class `c`, checked (foreign bytes).
bool is_span_of(const ArenaImpl& a, std::uint32_t page, std::uint32_t c) noexcept {
  if (page < a.header->meta_pages || page >= a.pages_now() || span_head(a, page) != page) return false;
  const SpanHeader* s = a.span(page);
  return s->magic == (kSpanMagic ^ page) && s->size_class == c && s->block_size == kClassSizes[c] &&
         s->pages == a.span_pages_of(c) && s->capacity == span_capacity(c, s->pages);
}

bool heap_unowned(const ArenaImpl& a, const SpanHeader* s) noexcept {
  return s->heap == 0 || s->heap > a.header->max_heaps ||
         a.heap(s->heap - 1u)->owner_tid.load(std::memory_order_acquire) == 0;
}

// Takes one block of another heap's span for heap `h`, under the arena lock: a span nobody
// owns becomes ours whole; otherwise an untouched tail block (counted in `foreign`) or the top
// of its remote stack (still counted as out by the owner, which never collects it now).
void* claim_from(ArenaImpl& a, HeapSlot* h, SpanHeader* s, std::uint32_t page) noexcept {
  if (heap_unowned(a, s)) {
    s->heap = static_cast<std::uint16_t>(h - a.heap(0) + 1);
    s->in_remote.store(0, std::memory_order_relaxed);
    s->next_remote.store(0, std::memory_order_relaxed);
    s->in_partial = 0;
    s->next_partial = 0;
    recount_span(a, s, page);
    if (!has_free(s)) {
      push_partial(h, s, page);  // nothing free now; its blocks come back to us
      return nullptr;
    }
    const std::uint32_t c = s->size_class;
    const std::uint32_t cur = h->current[c];
    h->current[c] = page;
    if (cur != 0) settle(a, h, a.span(cur), cur, true);
    return pop(a, s, page);
  }
  if (s->bumped.load(std::memory_order_relaxed) < s->capacity) {
    const std::uint32_t i = s->bumped.fetch_add(1, std::memory_order_relaxed);
    if (i < s->capacity) {
      s->foreign.fetch_add(1, std::memory_order_relaxed);
      std::byte* p = a.base + span_lo(page) + std::uint64_t{i} * s->block_size;
      key_of(p) = 0;
      return p;
    }
  }
  const std::uint64_t lo = span_lo(page);
  const std::uint64_t hi = lo + std::uint64_t{s->capacity} * s->block_size;
  std::uint64_t word = s->remote_free.load(std::memory_order_acquire);
  while (top_of(word) != 0) {
    const std::uint64_t off = top_of(word);
    if (off < lo || off >= hi || (off - lo) % s->block_size != 0) return nullptr;
    const std::uint64_t next =
        std::atomic_ref<std::uint64_t>(link_of(a.base + off)).load(std::memory_order_relaxed);
    const std::uint64_t tag = (word >> kTagShift) + 1;
    if (s->remote_free.compare_exchange_weak(word, (tag << kTagShift) | top_of(next),
                                             std::memory_order_acquire, std::memory_order_acquire)) {
      key_of(a.base + off) = 0;
      return a.base + off;
    }
  }
  return nullptr;
}

// Claims a block of class `c` from any span but `h`'s own (which refill has tried): the
// class's hint first, then a walk over the page map. Under the arena lock.
void* claim_shared(ArenaImpl& a, HeapSlot* h, std::uint32_t c) noexcept {
  const std::uint32_t self = static_cast<std::uint32_t>(h - a.heap(0)) + 1;
  const std::uint32_t hint = a.header->open_span[c].load(std::memory_order_relaxed);
  if (is_span_of(a, hint, c) && a.span(hint)->heap != self) {
    if (void* p = claim_from(a, h, a.span(hint), hint)) return p;
  }
  const std::uint32_t pages = a.pages_now();
  for (std::uint32_t page = a.header->meta_pages; page < pages; ++page) {
    const std::uint8_t k = a.page_kind(page).load(std::memory_order_relaxed);
    if (k == static_cast<std::uint8_t>(PageKind::large_head)) {
      const auto* lh = reinterpret_cast<const LargeHeader*>(a.page_at(page));
      if (lh->magic == (kLargeMagic ^ page) && lh->pages != 0) page += lh->pages - 1;
      continue;
    }
    if (k != static_cast<std::uint8_t>(PageKind::span) || !is_span_of(a, page, c)) continue;
    SpanHeader* s = a.span(page);
    if (s->heap == self) continue;
    if (void* p = claim_from(a, h, s, page)) {
      a.header->open_span[c].store(page, std::memory_order_relaxed);
      return p;
    }
    page += s->pages - 1;
  }
  return nullptr;
}

// Gives back to the pages every span of a heap nobody owns whose blocks are all free (their
// frees may have come from other heaps, as remote frees nobody collected). Only after a heap
// was left since the last time. Under the arena lock.
void reclaim_abandoned(ArenaImpl& a) noexcept {
  if (a.header->abandoned.load(std::memory_order_relaxed) == 0) return;
  a.header->abandoned.store(0, std::memory_order_relaxed);
  const std::uint32_t pages = a.pages_now();
  for (std::uint32_t page = a.header->meta_pages; page < pages; ++page) {
    if (a.page_kind(page).load(std::memory_order_relaxed) != static_cast<std::uint8_t>(PageKind::span)) continue;
    SpanHeader* s = a.span(page);
    if (s->size_class >= kClasses || !is_span_of(a, page, s->size_class)) continue;
    const std::uint32_t length = s->pages;
    if (heap_unowned(a, s)) {
      recount_span(a, s, page);
      if (s->used == 0) {
        s->heap = 0;
        s->magic = 0;
        a.give_pages(page, length);
      }
    }
    page += length - 1;
  }
}

// Takes one of another live heap's spans of class `c` whose local list has free blocks: the
// heap is frozen (freeze()), the span leaves its lists and becomes ours. Under the arena lock.
void* steal(ArenaImpl& a, HeapSlot* h, std::uint32_t c) noexcept {
  const std::uint32_t self = static_cast<std::uint32_t>(h - a.heap(0)) + 1;
  const std::uint32_t pages = a.pages_now();
  for (std::uint32_t page = a.header->meta_pages; page < pages; ++page) {
    if (a.page_kind(page).load(std::memory_order_relaxed) != static_cast<std::uint8_t>(PageKind::span) ||
        !is_span_of(a, page, c)) {
      continue;
    }
    SpanHeader* s = a.span(page);
    const std::uint32_t owner = s->heap;
    if (owner == self || owner == 0 || owner > a.header->max_heaps ||
        std::atomic_ref<std::uint64_t>(s->local_free).load(std::memory_order_relaxed) == 0) {
      continue;  // a racy look: checked again once the owner is frozen
    }
    HeapSlot* v = a.heap(owner - 1);
    if (v->owner_tid.load(std::memory_order_acquire) == 0 || !freeze(v)) continue;
    void* p = nullptr;
    if (s->heap == owner && s->magic == (kSpanMagic ^ page) && s->local_free != 0) {
      if (v->current[c] == page) {
        v->current[c] = 0;
      } else if (s->in_partial != 0) {
        remove_partial(a, v, s, page);
      }
      s->heap = static_cast<std::uint16_t>(self);
      s->in_partial = 0;
      s->next_partial = 0;
      const std::uint32_t cur = h->current[c];
      h->current[c] = page;
      if (cur != 0) settle(a, h, a.span(cur), cur, true);
      p = pop(a, s, page);
    }
    unlock_heap(v);
    if (p != nullptr) return p;
  }
  return nullptr;
}

// The current span of class `c` ran dry: find blocks elsewhere, or a new span. Returns
// nullptr only when no span of class `c` or larger has a block to give and no page is free.
// The caller holds the heap's guard.
[[gnu::noinline]] void* refill(ArenaImpl& a, HeapSlot* h, std::uint32_t c) noexcept {
  drain_remote_spans(a, h);
  if (void* p = pop_own(a, h, c, false)) return p;
  ArenaLock lock(a);
  if (!a.under_pressure()) {
    if (void* p = new_span(a, h, c)) return p;
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    reclaim_abandoned(a);
    if (void* p = claim_shared(a, h, c)) return p;
    if (void* p = new_span(a, h, c)) return p;
    if (void* p = steal(a, h, c)) return p;
    for (std::uint32_t larger = c + 1; larger < kClasses; ++larger) {
      if (a.span_pages_of(larger) == 0) continue;
      if (void* p = pop_own(a, h, larger, true)) return p;
      if (void* p = claim_shared(a, h, larger)) return p;
      if (void* p = steal(a, h, larger)) return p;
    }
    if (a.recover_dead() == 0) break;  // dead processes' heaps become claimable
  }
  return nullptr;
}

}  // namespace

// Collects a span's remote frees and recounts what is in use from its lists: a thread killed
// mid-operation may have left `used` off by one, or a list cut short. Only for spans no live
// thread owns (or under the arena lock, for a span being adopted).
void recount_span(ArenaImpl& a, SpanHeader* s, std::uint32_t page) noexcept {
  collect_remote(a, s, page);
  if (s->bumped.load(std::memory_order_relaxed) > s->capacity) {
    s->bumped.store(s->capacity, std::memory_order_relaxed);
  }
  const std::uint32_t bumped = s->bumped.load(std::memory_order_relaxed);
  std::uint32_t free_blocks = 0;
  const std::uint64_t lo = span_lo(page);
  const std::uint64_t hi = lo + std::uint64_t{bumped} * s->block_size;
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
  s->used = static_cast<std::int32_t>(bumped >= free_blocks ? bumped - free_blocks : 0);
  s->foreign.store(0, std::memory_order_relaxed);
}

namespace {

// Takes over heap `index` (free, or left by a dead thread): rebuilds its lists from the span
// headers that name it, checking each. Under the arena lock, so that no other heap adopts one
// of these spans meanwhile (claim_from).
void adopt(ArenaImpl& a, std::uint32_t index) noexcept {
  ArenaLock lock(a);
  HeapSlot* h = a.heap(index);
  ++h->generation;
  for (std::uint32_t c = 0; c < kClasses; ++c) {
    h->current[c] = 0;
    h->partial[c] = 0;
  }
  // The last owner's stack: our spans are recounted below; others' go to their owners.
  take_remote_spans(a, h, [](SpanHeader*, std::uint32_t) {});
  h->busy.store(0, std::memory_order_relaxed);
  h->fenced = detail::this_thread().light_release ? 1 : 0;
  const std::uint32_t pages = a.pages_now();
  for (std::uint32_t p = a.header->meta_pages; p < pages; ++p) {
    if (a.page_kind(p).load(std::memory_order_acquire) != static_cast<std::uint8_t>(PageKind::span)) {
      continue;
    }
    SpanHeader* s = a.span(p);
    if (s->heap != index + 1 || s->size_class >= kClasses || !is_span_of(a, p, s->size_class)) continue;
    s->in_remote.store(0, std::memory_order_relaxed);
    s->next_remote.store(0, std::memory_order_relaxed);
    s->in_partial = 0;
    s->next_partial = 0;
    recount_span(a, s, p);
    if (s->used == 0) {
      s->heap = 0;
      s->magic = 0;
      a.give_pages(p, s->pages);
      continue;
    }
    if (has_free(s)) push_partial(h, s, p);
    p += s->pages - 1;
  }
}

}  // namespace

void ArenaImpl::setup_classes() noexcept {
  const std::uint32_t target = span_target(header->max_pages);
  const std::uint32_t limit = span_limit(header->max_pages);
  const bool tiny = header->max_pages - header->meta_pages < kTinyArenaPages;
  max_small_ = 0;
  for (std::uint32_t c = 0; c < kClasses; ++c) {
    span_pages_[c] = tiny && !tiny_class(c) ? 0 : static_cast<std::uint8_t>(span_pages(c, target, limit));
    if (span_pages_[c] != 0) max_small_ = kClassSizes[c];
  }
  std::uint32_t next = kClasses;
  for (std::uint32_t c = kClasses; c-- > 0;) {
    if (span_pages_[c] != 0) next = c;
    class_map_[c] = static_cast<std::uint8_t>(next);
  }
}

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
      lock_heap(h);
      adopt(*this, i);
      unlock_heap(h);
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
  if (size <= max_small_ && align <= 64) [[likely]] {
    const std::uint32_t c = class_for(*this, size == 0 ? 1 : size, align);
    if (c < kClasses && span_pages_[c] != 0) [[likely]] {
      HeapSlot* h = my_heap();
      if (h == nullptr) [[unlikely]] return nullptr;
      if (enter_heap(h)) [[likely]] {
        const std::uint32_t page = h->current[c];
        if (page != 0) [[likely]] {
          if (void* p = pop(*this, span(page), page)) [[likely]] {
            leave_heap(h);
            return p;
          }
        }
        leave_heap(h);
      }
      return allocate_slow(h, c, size, align);
    }
  }
  return allocate_large(size, align);
}

void* ArenaImpl::allocate_slow(HeapSlot* h, std::uint32_t c, std::size_t size, std::size_t align) noexcept {
  lock_heap(h);
  void* p = refill(*this, h, c);
  unlock_heap(h);
  // No span of the class or a larger one has a block, and no span fits in the free pages
  // left: a run of its own, if a page is free.
  return p != nullptr ? p : allocate_large(size, align);
}

void* ArenaImpl::allocate_large(std::size_t size, std::size_t align) noexcept {
  if (align > kMaxAlign || (align & (align - 1)) != 0) return nullptr;
  // Large: a run of pages; the caller's block starts after the header, at an address aligned
  // to `align` (the base is only page-aligned, so the padding depends on where it lands).
  if (size > header->max_size) return nullptr;
  // Pages are page-aligned: up to a page, the block starts `align` bytes in (the header
  // before it); beyond, where it lands decides, so room for the worst case is taken.
  const std::uint64_t lead = align <= kLargeHeaderSize ? kLargeHeaderSize
                             : align <= kPageSize      ? align
                                                       : kLargeHeaderSize + align;
  const std::uint64_t pages64 = (lead + size + kPageSize - 1) >> kPageShift;
  if (pages64 > header->max_pages) return nullptr;
  const auto pages = static_cast<std::uint32_t>(pages64);
  ArenaLock lock(*this);
  const std::uint32_t first = take_pages(pages);
  if (first == 0) return nullptr;
  auto* lh = reinterpret_cast<LargeHeader*>(page_at(first));
  const auto start = reinterpret_cast<std::uintptr_t>(lh) + kLargeHeaderSize;
  const std::uint64_t offset = kLargeHeaderSize + ((align - start % align) % align);
  lh->pages = pages;
  lh->requested = size;
  lh->user_offset = offset;
  lh->magic = kLargeMagic ^ first;
  for (std::uint32_t p = first + 1; p < first + pages; ++p) {
    page_kind(p).store(static_cast<std::uint8_t>(PageKind::large_tail), std::memory_order_relaxed);
  }
  page_kind(first).store(static_cast<std::uint8_t>(PageKind::large_head), std::memory_order_release);
  header->large_bytes.fetch_add(size, std::memory_order_relaxed);
  return reinterpret_cast<std::byte*>(lh) + offset;
}

namespace {

// The head page of the large block that `p` (on page `page`) may be, or 0. A block aligned
// past a page starts in its run's second page or later.
std::uint32_t large_head_of(const ArenaImpl& a, std::uint32_t page) noexcept {
  std::uint32_t head = page;
  while (head > a.header->meta_pages &&
         a.page_kind(head).load(std::memory_order_acquire) == static_cast<std::uint8_t>(PageKind::large_tail)) {
    --head;
  }
  return a.page_kind(head).load(std::memory_order_acquire) == static_cast<std::uint8_t>(PageKind::large_head)
             ? head
             : 0;
}

}  // namespace

void ArenaImpl::deallocate(void* p) {
  // The common case inline: a valid block of a span this thread's heap owns, not already
  // free. Everything else (other heaps' blocks, large blocks, errors) takes the slow path.
  const auto off = static_cast<std::uint64_t>(static_cast<std::byte*>(p) - base);
  if (tl_fast.uid == uid && static_cast<std::byte*>(p) >= base &&
      off >= (std::uint64_t{header->meta_pages} << kPageShift) &&
      off < header->size.load(std::memory_order_acquire)) [[likely]] {
    const std::uint32_t page = span_head(*this, static_cast<std::uint32_t>(off >> kPageShift));
    SpanHeader* s = span(page);
    HeapSlot* h = tl_fast.heap;
    if (page != 0 && enter_heap(h)) [[likely]] {
      // Inside the bracket: nobody takes this span from us while we look at it.
      if (s->magic == (kSpanMagic ^ page) && s->heap == tl_fast.index + 1 &&
          s->size_class < kClasses) [[likely]] {
        const std::uint64_t rel = off - span_lo(page);
        const std::uint64_t index = (rel * kInverses.of[s->size_class]) >> 32;
        std::byte* block = static_cast<std::byte*>(p);
        if (off >= span_lo(page) && index * s->block_size == rel &&
            index < s->bumped.load(std::memory_order_relaxed) && index < s->capacity &&
            key_of(block) != free_key(off)) [[likely]] {
          key_of(block) = free_key(off);
          link_of(block) = s->local_free;
          s->local_free = off;
          --s->used;
          // One rarely taken branch: the span is not current and is either empty now or off
          // the partial list (bitwise, so that the common cases do not mispredict).
          const bool empty = s->used + s->foreign.load(std::memory_order_relaxed) == 0;
          if ((h->current[s->size_class] != page) & (empty | (s->in_partial == 0))) [[unlikely]] {
            if (empty) {
              leave_heap(h);
              lock_heap(h);  // the span goes back to the pages: a slow path
              settle(*this, h, s, page);
              unlock_heap(h);
              return;
            }
            if (s->in_partial == 0) push_partial(h, s, page);
          }
          leave_heap(h);
          return;
        }
      }
      leave_heap(h);
    }
  }
  deallocate_slow(p);
}

void ArenaImpl::deallocate_slow(void* p) {
  const auto off = static_cast<std::uint64_t>(static_cast<std::byte*>(p) - base);
  const std::uint64_t meta = std::uint64_t{header->meta_pages} << kPageShift;
  if (static_cast<std::byte*>(p) < base || off < meta ||
      off >= header->size.load(std::memory_order_acquire)) {
    throw Error(EINVAL, label(), "free", "the pointer is not in the arena");
  }
  const auto in_page = static_cast<std::uint32_t>(off >> kPageShift);
  if (const std::uint32_t page = span_head(*this, in_page); page != 0) [[likely]] {
    SpanHeader* s = span(page);
    if (s->magic != (kSpanMagic ^ page) || off < span_lo(page) || s->size_class >= kClasses ||
        s->block_size != kClassSizes[s->size_class] || s->capacity > span_capacity(s->size_class, s->pages)) {
      throw Error(EINVAL, label(), "free", "the pointer is not a block of this arena");
    }
    std::byte* block = static_cast<std::byte*>(p);
    const std::uint64_t rel = off - span_lo(page);
    const std::uint64_t index = (rel * kInverses.of[s->size_class]) >> 32;
    if (index * s->block_size != rel || index >= claimed(s)) [[unlikely]] {
      throw Error(EINVAL, label(), "free", "the pointer is not the start of a block");
    }
    if (key_of(block) == free_key(off)) [[unlikely]] {
      if (on_list(*this, s, page, s->local_free, off) ||
          on_list(*this, s, page, s->remote_free.load(std::memory_order_acquire), off)) {
        throw Error(EINVAL, label(), "free", "the block is already free (freed twice?)");
      }
    }
    if (tl_fast.uid == uid) [[likely]] {
      HeapSlot* h = tl_fast.heap;
      lock_heap(h);
      if (s->heap == tl_fast.index + 1) {  // ours, under our guard
        key_of(block) = free_key(off);
        link_of(block) = s->local_free;
        s->local_free = off;
        --s->used;
        settle(*this, h, s, page);
        unlock_heap(h);
        return;
      }
      unlock_heap(h);
    }
    key_of(block) = free_key(off);
    // Another heap's block: push it on the span's remote stack, and the span on its heap's
    // remote_spans stack if it is not there yet.
    std::uint64_t word = s->remote_free.load(std::memory_order_relaxed);
    std::uint64_t next;
    do {
      link_of(block) = top_of(word);
      next = ((((word >> kTagShift) + 1) << kTagShift)) | off;
    } while (!s->remote_free.compare_exchange_weak(word, next, std::memory_order_release,
                                                   std::memory_order_relaxed));
    if (s->in_remote.load(std::memory_order_relaxed) == 0) route_remote(*this, s, page);
    return;
  }
  const std::uint8_t kind = page_kind(in_page).load(std::memory_order_acquire);
  if (kind == static_cast<std::uint8_t>(PageKind::large_head) ||
      kind == static_cast<std::uint8_t>(PageKind::large_tail)) {
    ArenaLock lock(*this);
    const std::uint32_t head = large_head_of(*this, in_page);
    auto* lh = reinterpret_cast<LargeHeader*>(page_at(head));
    if (head == 0 || lh->magic != (kLargeMagic ^ head) ||
        static_cast<std::byte*>(p) != reinterpret_cast<std::byte*>(lh) + lh->user_offset) {
      throw Error(EINVAL, label(), "free", "the pointer is not a live block of this arena");
    }
    header->large_bytes.fetch_sub(lh->requested, std::memory_order_relaxed);
    const std::uint32_t pages = lh->pages;
    lh->magic = 0;
    page_kind(head).store(static_cast<std::uint8_t>(PageKind::free), std::memory_order_release);
    give_pages(head, pages);
    return;
  }
  throw Error(EINVAL, label(), "free", "the pointer is not a live block (freed twice?)");
}

std::size_t ArenaImpl::block_size(const void* p) const {
  const auto off = static_cast<std::uint64_t>(static_cast<const std::byte*>(p) - base);
  if (static_cast<const std::byte*>(p) < base || off >= header->size.load(std::memory_order_acquire)) {
    throw Error(EINVAL, label(), "block size", "the pointer is not in the arena");
  }
  const auto in_page = static_cast<std::uint32_t>(off >> kPageShift);
  if (const std::uint32_t page = span_head(*this, in_page); page != 0) return span(page)->block_size;
  if (const std::uint32_t head = large_head_of(*this, in_page); head != 0) {
    const auto* lh = reinterpret_cast<const LargeHeader*>(page_at(head));
    if (lh->magic == (kLargeMagic ^ head) &&
        static_cast<const std::byte*>(p) == reinterpret_cast<const std::byte*>(lh) + lh->user_offset) {
      return (std::uint64_t{lh->pages} << kPageShift) - lh->user_offset;
    }
  }
  throw Error(EINVAL, label(), "block size", "the pointer is not a live block");
}

bool ArenaImpl::grow_in_place(void* p, std::size_t size) noexcept {
  const auto off = static_cast<std::uint64_t>(static_cast<std::byte*>(p) - base);
  if (static_cast<std::byte*>(p) < base || off >= header->size.load(std::memory_order_acquire)) return false;
  ArenaLock lock(*this);
  const std::uint32_t head = large_head_of(*this, static_cast<std::uint32_t>(off >> kPageShift));
  auto* lh = reinterpret_cast<LargeHeader*>(page_at(head));
  if (head == 0 || lh->magic != (kLargeMagic ^ head) ||
      static_cast<std::byte*>(p) != reinterpret_cast<std::byte*>(lh) + lh->user_offset) {
    return false;
  }
  const std::uint64_t need64 = (lh->user_offset + size + kPageSize - 1) >> kPageShift;
  if (need64 > header->max_pages) return false;
  const auto need = static_cast<std::uint32_t>(need64);
  const std::uint32_t have = lh->pages;
  if (need > have) {
    if (!take_pages_at(head + have, need - have)) return false;
    for (std::uint32_t q = head + have; q < head + need; ++q) {
      page_kind(q).store(static_cast<std::uint8_t>(PageKind::large_tail), std::memory_order_relaxed);
    }
    lh->pages = need;
  }
  header->large_bytes.fetch_add(size - lh->requested, std::memory_order_relaxed);
  lh->requested = size;
  return true;
}

}  // namespace shmkit::detail

// ---- The public entry points, here so that the fast paths inline into them ----

namespace shmkit {

using arena::kMaxAlign;

[[gnu::flatten]] void* Arena::try_allocate(std::size_t size, std::size_t align) noexcept {
  if (align == 0 || (align & (align - 1)) != 0) return nullptr;
  return impl_->allocate(size, align);
}

[[gnu::flatten]] void* Arena::allocate(std::size_t size, std::size_t align) {
  if (align == 0 || (align & (align - 1)) != 0 || align > kMaxAlign) {
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
