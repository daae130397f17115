// SPDX-License-Identifier: MIT
// Looking at an arena: statistics (mallinfo's figures, per size class) and check(), which
// walks every structure and reports the first inconsistency. Both read bytes other processes
// wrote, so every link is bounds-checked before it is followed.
#include <cerrno>
#include <cstdio>
#include <algorithm>
#include <set>
#include <string>

#include "arena/impl.hpp"
#include "os/os.hpp"
#include "shmkit/segment.hpp"

namespace shmkit {

using namespace arena;
using detail::ArenaImpl;
using detail::ArenaLock;

namespace {

std::uint8_t kind_of(const ArenaImpl& a, std::uint32_t p) {
  return a.page_kind(p).load(std::memory_order_acquire);
}

std::string at_page(std::uint32_t p, const std::string& what) {
  return "page " + std::to_string(p) + ": " + what;
}

constexpr std::uint64_t kOffsetMask = (std::uint64_t{1} << 48) - 1;  // a remote stack's top

// Counts a free list of the span at page `p`, checking every link. Returns "" or the problem.
std::string walk(const ArenaImpl& a, std::uint32_t p, std::uint64_t head, std::uint32_t& count) {
  const SpanHeader* s = a.span(p);
  const std::uint64_t lo = (std::uint64_t{p} << kPageShift) + kSpanHeaderSize;
  const std::uint64_t hi = lo + std::uint64_t{s->capacity} * s->block_size;
  const std::uint32_t bumped = std::min(s->bumped.load(std::memory_order_relaxed), s->capacity);
  count = 0;
  for (std::uint64_t off = head & kOffsetMask; off != 0;
       off = *reinterpret_cast<const std::uint64_t*>(a.base + off)) {
    if (off < lo || off >= hi) return at_page(p, "a free-list link points outside the span");
    if ((off - lo) % s->block_size != 0) return at_page(p, "a free-list link is not at a block");
    if ((off - lo) / s->block_size >= bumped) {
      return at_page(p, "a free-list link points past the blocks handed out");
    }
    if (++count > s->capacity) return at_page(p, "a free list loops");
  }
  return {};
}

// A span header at page `p` that is the right shape for this arena (foreign bytes).
bool span_shape_ok(const ArenaImpl& a, const SpanHeader* s) {
  return s->size_class < kClasses && s->block_size == kClassSizes[s->size_class] &&
         s->pages == a.span_pages_of(s->size_class) && s->pages != 0 &&
         s->capacity == span_capacity(s->size_class, s->pages);
}

// Statistics from the page map and span headers (the caller holds the lock, or accepts a
// racy snapshot).
ArenaStats compute_stats(const ArenaImpl& a) {
  ArenaStats st;
  st.size = a.header->size.load(std::memory_order_acquire);
  st.max_size = a.header->max_size;
  st.metadata = std::uint64_t{a.header->meta_pages} << kPageShift;
  std::vector<ArenaStats::SizeClass> classes(kClasses);
  std::uint64_t block_pages = 0, run = 0;
  const std::uint32_t pages = a.pages_now();
  const auto end_run = [&] {
    if (run != 0) {
      ++st.free_runs;
      st.largest_free_run = std::max(st.largest_free_run, run << kPageShift);
    }
    run = 0;
  };
  for (std::uint32_t p = a.header->meta_pages; p < pages; ++p) {
    const std::uint8_t k = kind_of(a, p);
    if (k == static_cast<std::uint8_t>(PageKind::free)) {
      ++st.pages_free;
      ++run;
      continue;
    }
    end_run();
    if (k > kSpanTail) {
      ++st.pages_small;
      ++block_pages;
      continue;
    }
    switch (static_cast<PageKind>(k)) {
      case PageKind::span: {
        const SpanHeader* s = a.span(p);
        ++st.pages_small;
        ++block_pages;
        if (!span_shape_ok(a, s)) break;
        // Blocks freed by other heaps but not yet collected by the owner are free too.
        std::uint32_t local = 0, remote = 0;
        (void)walk(a, p, s->local_free, local);
        (void)walk(a, p, s->remote_free.load(std::memory_order_acquire), remote);
        const std::uint32_t out = std::min(s->bumped.load(std::memory_order_relaxed), s->capacity);
        const std::uint32_t used = out >= local + remote ? out - local - remote : 0;
        auto& c = classes[s->size_class];
        c.block_size = s->block_size;
        c.span_pages = s->pages;
        ++c.spans;
        c.blocks += s->capacity;
        c.in_use += used;
        st.in_use += std::uint64_t{used} * s->block_size;
        break;
      }
      case PageKind::large_head: {
        const auto* lh = reinterpret_cast<const LargeHeader*>(a.page_at(p));
        ++st.large_blocks;
        ++st.pages_large;
        st.in_use += lh->requested;
        ++block_pages;
        break;
      }
      case PageKind::large_tail:
        ++st.pages_large;
        ++block_pages;
        break;
      default: break;
    }
  }
  end_run();
  for (auto& c : classes) {
    if (c.spans != 0) st.classes.push_back(c);
  }
  st.free = st.size - st.metadata - std::min(st.in_use, st.size - st.metadata);
  const std::uint64_t block_bytes = block_pages << kPageShift;
  st.fragmentation = block_bytes == 0 ? 0.0
                                      : 1.0 - static_cast<double>(st.in_use) / static_cast<double>(block_bytes);
  st.users = a.header->users.load(std::memory_order_relaxed);
  for (std::uint32_t i = 0; i < a.header->max_heaps; ++i) {
    if (a.heap(i)->owner_tid.load(std::memory_order_relaxed) != 0) ++st.heaps;
  }
  return st;
}

}  // namespace

ArenaStats Arena::stats() {
  ArenaLock lock(*impl_);
  return compute_stats(*impl_);
}

bool Arena::is_arena(std::string_view name) noexcept {
  try {
    OpenOptions o;
    o.access = Access::read_only;
    Segment seg = Segment::open(name, o);
    return seg.size() >= sizeof(ArenaHeader) &&
           static_cast<const ArenaHeader*>(seg.data())->magic == kMagic;
  } catch (...) {
    return false;
  }
}

ArenaInfo Arena::inspect(std::string_view name) {
  OpenOptions o;
  o.access = Access::read_only;
  ArenaImpl a;
  a.segment = Segment::open(name, o);
  a.base = static_cast<std::byte*>(a.segment.data());
  a.header = reinterpret_cast<ArenaHeader*>(a.base);
  const std::string label(name);
  if (a.segment.size() < sizeof(ArenaHeader)) throw Error(EINVAL, label, "inspect", "too small to be an arena");
  const ArenaHeader& h = *a.header;
  detail::validate_header(h, a.segment.size(), label);
  a.setup_classes();
  if (h.state.load(std::memory_order_acquire) != static_cast<std::uint32_t>(ArenaState::ready)) {
    throw Error(EINVAL, label, "inspect", "the arena is being initialised");
  }
  ArenaInfo info;
  info.name = a.segment.name().str();
  info.version = h.version;
  info.size = h.size.load(std::memory_order_acquire);
  info.max_size = h.max_size;
  info.autogrow = (h.flags & kFlagAutogrow) != 0;
  info.metering = (h.flags & kFlagMetering) != 0;
  info.max_users = h.max_users;
  info.max_threads = h.max_heaps;
  info.mode = h.mode;
  info.attach_address = h.attach_address;
  info.created_ns = h.created_ns;
  info.root = h.root.load(std::memory_order_acquire);
  const UserSlot* slots = a.users();
  for (std::uint32_t i = 0; i < h.max_users; ++i) {
    if (slots[i].active.load(std::memory_order_acquire) == 0) continue;
    ArenaUser u;
    u.pid = slots[i].pid;
    u.alive = slots[i].start_time != 0 && os::process_start_time(u.pid) == slots[i].start_time;
    u.joined_ns = slots[i].joined_ns;
    u.heaps = slots[i].heaps.load(std::memory_order_relaxed);
    info.users.push_back(u);
  }
  info.stats = compute_stats(a);
  const LockMeter m = h.arena_lock.meter();
  info.arena_lock_acquisitions = m.acquisitions;
  info.arena_lock_contended = m.contended;
  info.arena_lock_wait_ns = m.wait_ns;
  info.arena_lock_owner_deaths = m.owner_deaths;
  const std::uint64_t dir = h.directory.load(std::memory_order_acquire);
  if (dir != 0 && dir + sizeof(DirTable) <= info.size) {
    const auto* t = reinterpret_cast<const DirTable*>(a.base + dir);
    const auto* e = reinterpret_cast<const DirEntry*>(t + 1);
    if (dir + sizeof(DirTable) + std::uint64_t{t->capacity} * sizeof(DirEntry) <= info.size) {
      for (std::uint32_t i = 0; i < t->capacity; ++i) {
        if (e[i].state == static_cast<std::uint32_t>(DirState::live) && e[i].name_len <= 255 &&
            e[i].name + e[i].name_len <= info.size) {
          info.names.emplace_back(reinterpret_cast<const char*>(a.base + e[i].name), e[i].name_len);
        }
      }
    }
  }
  return info;
}

std::string Arena::check() {
  ArenaImpl& a = *impl_;
  ArenaLock lock(a);
  const ArenaHeader& h = *a.header;
  const std::uint32_t pages = a.pages_now();
  if (std::uint64_t{pages} << kPageShift > a.segment.reserved()) {
    return "the arena's size is past its mapping";
  }
  for (std::uint32_t p = 0; p < h.meta_pages; ++p) {
    if (kind_of(a, p) != static_cast<std::uint8_t>(PageKind::meta)) {
      return at_page(p, "a metadata page is not marked as metadata");
    }
  }
  std::uint64_t free_pages = 0;
  for (std::uint32_t p = h.meta_pages; p < pages; ++p) {
    const std::uint8_t k = kind_of(a, p);
    if (k > kSpanTail) return at_page(p, "a span's page has no head");
    switch (static_cast<PageKind>(k)) {
      case PageKind::free: {
        // A free run: indexed, with its foot, and never next to another one.
        const auto* r = reinterpret_cast<const FreeRun*>(a.page_at(p));
        if (r->magic != (kFreeMagic ^ p)) return at_page(p, "a free run is not indexed");
        if (r->pages == 0 || r->pages > pages - p) return at_page(p, "a free run runs past the end");
        for (std::uint32_t t = p; t < p + r->pages; ++t) {
          if (kind_of(a, t) != static_cast<std::uint8_t>(PageKind::free)) {
            return at_page(t, "a free run holds a page in use");
          }
        }
        const auto* f = reinterpret_cast<const FreeFoot*>(a.page_at(p + r->pages - 1) + kPageSize -
                                                          sizeof(FreeFoot));
        if (f->magic != (kFreeMagic ^ p) || f->first != p) return at_page(p, "a free run's foot is wrong");
        if (p + r->pages < pages && kind_of(a, p + r->pages) == static_cast<std::uint8_t>(PageKind::free)) {
          return at_page(p, "two free runs were not coalesced");
        }
        free_pages += r->pages;
        p += r->pages - 1;
        break;
      }
      case PageKind::meta: return at_page(p, "a data page is marked as metadata");
      case PageKind::large_tail: return at_page(p, "a large block's page has no head");
      case PageKind::large_head: {
        const auto* lh = reinterpret_cast<const LargeHeader*>(a.page_at(p));
        if (lh->magic != (kLargeMagic ^ p)) return at_page(p, "a large block's header is corrupted");
        if (lh->pages == 0 || lh->pages > pages - p) return at_page(p, "a large block runs past the end");
        if (lh->user_offset < kLargeHeaderSize || lh->user_offset >= std::uint64_t{lh->pages} << kPageShift ||
            lh->user_offset + lh->requested > std::uint64_t{lh->pages} << kPageShift) {
          return at_page(p, "a large block's size is inconsistent");
        }
        for (std::uint32_t t = p + 1; t < p + lh->pages; ++t) {
          if (kind_of(a, t) != static_cast<std::uint8_t>(PageKind::large_tail)) {
            return at_page(t, "a large block's page is not marked as its own");
          }
        }
        p += lh->pages - 1;
        break;
      }
      case PageKind::span: {
        const SpanHeader* s = a.span(p);
        if (s->magic != (kSpanMagic ^ p)) return at_page(p, "a span's header is corrupted");
        if (!span_shape_ok(a, s)) return at_page(p, "a span's size class is inconsistent");
        if (s->pages > pages - p) return at_page(p, "a span runs past the end");
        for (std::uint32_t t = 1; t < s->pages; ++t) {
          if (kind_of(a, p + t) != (kSpanTail | t)) return at_page(p + t, "a span's page is not marked as its own");
        }
        const std::uint32_t out = std::min(s->bumped.load(std::memory_order_relaxed), s->capacity);
        const std::int64_t counted = std::int64_t{s->used} + s->foreign.load(std::memory_order_relaxed);
        if (counted < 0 || counted > out) return at_page(p, "a span's counts are inconsistent");
        if (s->heap > h.max_heaps) return at_page(p, "a span names a heap that does not exist");
        std::uint32_t local = 0, remote = 0;
        if (auto e = walk(a, p, s->local_free, local); !e.empty()) return e;
        if (auto e = walk(a, p, s->remote_free.load(std::memory_order_acquire), remote); !e.empty()) return e;
        // INV-SPAN-1. A heap whose owner died may hold a count off by one until recover()
        // repairs it.
        const std::uint32_t owner = s->heap != 0 ? a.heap(s->heap - 1)->owner_tid.load(std::memory_order_relaxed) : 0;
        const bool awaiting_recovery = owner != 0 && !os::thread_alive(static_cast<std::int32_t>(owner));
        if (!awaiting_recovery && out - local != counted) {
          return at_page(p, "a span's use count (" + std::to_string(counted) +
                                ") disagrees with its free lists (" + std::to_string(out) +
                                " handed out, " + std::to_string(local) + " + " +
                                std::to_string(remote) + " free)");
        }
        p += s->pages - 1;
        break;
      }
      default: return at_page(p, "an unknown page kind");
    }
  }
  if (free_pages != h.pages_free.load(std::memory_order_relaxed)) {
    return "the free-page count (" + std::to_string(h.pages_free.load(std::memory_order_relaxed)) +
           ") disagrees with the free runs (" + std::to_string(free_pages) + ")";
  }
  // Every free run is in the bin of its length, and the bit map agrees.
  std::uint64_t indexed = 0;
  for (std::uint32_t b = 0; b < kBins; ++b) {
    const bool bit = (h.bin_map.load(std::memory_order_relaxed) >> b & 1) != 0;
    if (bit != (h.bins[b] != 0)) return "free-run bin " + std::to_string(b) + " disagrees with the bin map";
    std::uint32_t prev = 0;
    for (std::uint32_t p = h.bins[b], n = 0; p != 0; p = reinterpret_cast<const FreeRun*>(a.page_at(p))->next, ++n) {
      if (p < h.meta_pages || p >= pages || n > pages || kind_of(a, p) != static_cast<std::uint8_t>(PageKind::free)) {
        return "free-run bin " + std::to_string(b) + " links to a page that is not free";
      }
      const auto* r = reinterpret_cast<const FreeRun*>(a.page_at(p));
      if (r->prev != prev) return at_page(p, "a free run's back link is wrong");
      indexed += r->pages;
      prev = p;
    }
  }
  if (indexed != free_pages) return "the free-run bins do not hold every free run";
  for (std::uint32_t p = pages; p < h.max_pages; ++p) {
    if (kind_of(a, p) != static_cast<std::uint8_t>(PageKind::free)) {
      return at_page(p, "a page past the end is in use");
    }
  }
  // Heaps: what they point at must be spans of theirs.
  for (std::uint32_t i = 0; i < h.max_heaps; ++i) {
    const HeapSlot* hp = a.heap(i);
    if (hp->owner_tid.load(std::memory_order_relaxed) == 0) continue;
    for (std::uint32_t c = 0; c < kClasses; ++c) {
      for (std::uint32_t p : {hp->current[c], hp->partial[c]}) {
        if (p == 0) continue;
        if (p >= pages || kind_of(a, p) != static_cast<std::uint8_t>(PageKind::span) ||
            a.span(p)->heap != i + 1 || a.span(p)->size_class != c) {
          return "heap " + std::to_string(i) + ": a span it uses is not one of its own";
        }
      }
    }
  }
  return {};
}

}  // namespace shmkit
