// SPDX-License-Identifier: MIT
// Pages: taking and giving back runs of 4 KiB pages, and growing the arena. Everything here
// runs under the arena lock.
//
// The page map (one byte per page) is the truth; the free runs are an index over it, kept in
// the free pages themselves: a FreeRun at a run's first page, a FreeFoot at the end of its
// last, and bins by length (exact to 32 pages, then one per doubling) with a bit map of the
// non-empty ones. Taking a run is best fit; giving one back coalesces it with its free
// neighbours at once. A run is committed by writing its head's map byte last and released by
// clearing it first, so a process killed in between leaves only orphan tails; the next holder
// of the lock frees them and rebuilds the index from the map (repair_pages).
#include <algorithm>
#include <bit>
#include <chrono>

#include "arena/impl.hpp"
#include "os/os.hpp"

namespace shmkit::detail {

using namespace arena;

ArenaLock::ArenaLock(Mutex& m) noexcept : mutex(m) {
  for (;;) {
    const LockStatus st = m.acquire_for(std::chrono::milliseconds(200));
    if (st == LockStatus::acquired) return;
    if (st == LockStatus::timed_out) {
      (void)m.break_if_owner_gone();
      continue;
    }
    if (st == LockStatus::owner_died) {
      // The arena's structures are kept consistent at every store (or repaired by the
      // caller, which sees owner_died): the lock itself is always usable again.
      owner_died = true;
      m.mark_consistent();
      return;
    }
    m.reset();  // not_recoverable: only if someone misused it; make it usable again
  }
}

ArenaLock::ArenaLock(ArenaImpl& a) noexcept : ArenaLock(a.header->arena_lock) {
  if (owner_died) a.repair_pages();
}

namespace {

constexpr std::uint32_t bin_of(std::uint32_t pages) noexcept {
  if (pages <= kExactBins) return pages - 1;
  return kExactBins + static_cast<std::uint32_t>(std::bit_width(pages)) - 1 - 5;
}
static_assert(bin_of(1) == 0 && bin_of(32) == 31 && bin_of(33) == 32 && bin_of(64) == 33);
static_assert(bin_of(0xffffffffu) < kBins);

bool is_free(const ArenaImpl& a, std::uint32_t p) noexcept {
  return a.page_kind(p).load(std::memory_order_relaxed) == static_cast<std::uint8_t>(PageKind::free);
}

FreeRun* run_at(const ArenaImpl& a, std::uint32_t p) noexcept {
  return reinterpret_cast<FreeRun*>(a.page_at(p));
}

FreeFoot* foot_of(const ArenaImpl& a, std::uint32_t last) noexcept {
  return reinterpret_cast<FreeFoot*>(a.page_at(last) + kPageSize - sizeof(FreeFoot));
}

// A free run's head as the index has it, checked against the map (foreign bytes).
bool valid_run(const ArenaImpl& a, std::uint32_t p) noexcept {
  const std::uint32_t pages = a.pages_now();
  if (p < a.header->meta_pages || p >= pages || !is_free(a, p)) return false;
  const FreeRun* r = run_at(a, p);
  return r->magic == (kFreeMagic ^ p) && r->pages != 0 && r->pages <= pages - p;
}

void link_run(ArenaImpl& a, std::uint32_t first, std::uint32_t count) noexcept {
  ArenaHeader& h = *a.header;
  const std::uint32_t b = bin_of(count);
  FreeRun* r = run_at(a, first);
  r->magic = kFreeMagic ^ first;
  r->pages = count;
  r->prev = 0;
  r->next = h.bins[b];
  if (r->next != 0) run_at(a, r->next)->prev = first;
  h.bins[b] = first;
  h.bin_map.store(h.bin_map.load(std::memory_order_relaxed) | (std::uint64_t{1} << b),
                  std::memory_order_relaxed);
  FreeFoot* f = foot_of(a, first + count - 1);
  f->magic = kFreeMagic ^ first;
  f->first = first;
}

void unlink_run(ArenaImpl& a, std::uint32_t first) noexcept {
  ArenaHeader& h = *a.header;
  FreeRun* r = run_at(a, first);
  const std::uint32_t b = bin_of(r->pages);
  if (r->prev != 0) {
    run_at(a, r->prev)->next = r->next;
  } else {
    h.bins[b] = r->next;
  }
  if (r->next != 0) run_at(a, r->next)->prev = r->prev;
  if (h.bins[b] == 0) {
    h.bin_map.store(h.bin_map.load(std::memory_order_relaxed) & ~(std::uint64_t{1} << b),
                    std::memory_order_relaxed);
  }
  r->magic = 0;
  foot_of(a, first + r->pages - 1)->magic = 0;
}

// The best-fitting free run of at least `count` pages, or 0. An exact bin holds runs of one
// length; a doubling bin is searched for its best fit, a bounded number of runs deep.
std::uint32_t find_run(ArenaImpl& a, std::uint32_t count) noexcept {
  const ArenaHeader& h = *a.header;
  const std::uint32_t b = bin_of(count);
  std::uint64_t map = h.bin_map.load(std::memory_order_relaxed) >> b;
  if (map == 0) return 0;
  std::uint32_t bin = b + static_cast<std::uint32_t>(std::countr_zero(map));
  if (bin < kExactBins) return h.bins[bin];
  std::uint32_t best = 0, best_pages = 0, looked = 0;
  for (; bin < kBins; ++bin) {
    if ((h.bin_map.load(std::memory_order_relaxed) >> bin & 1) == 0) continue;
    for (std::uint32_t p = h.bins[bin]; p != 0 && looked < 64; p = run_at(a, p)->next, ++looked) {
      if (!valid_run(a, p)) return 0;  // corrupted: the caller repairs and retries
      const std::uint32_t n = run_at(a, p)->pages;
      if (n >= count && (best == 0 || n < best_pages)) {
        best = p;
        best_pages = n;
        if (n == count) return best;
      }
    }
    if (best != 0) return best;
  }
  return 0;
}

}  // namespace

bool ArenaImpl::under_pressure() const noexcept {
  // Pressure: the arena cannot grow, and its free pages are fewer than a quarter of it or than
  // four pages per class for every heap in use. Heaps that each open their own spans of every
  // class leave that much half full when the last page goes: in a small arena, heaps share.
  const std::uint64_t size = header->size.load(std::memory_order_relaxed);
  if ((header->flags & kFlagAutogrow) != 0 && size < header->max_size) return false;
  const std::uint64_t free = header->pages_free.load(std::memory_order_relaxed);
  if (free * 4 < pages_now() - header->meta_pages) return true;
  std::uint32_t classes = 0;
  for (std::uint32_t c = 0; c < kClasses; ++c) classes += span_pages_[c] != 0 ? 1 : 0;
  if (free >= std::uint64_t{header->max_heaps} * classes * 4) return false;
  std::uint32_t owned = 0;
  for (std::uint32_t i = 0; i < header->max_heaps; ++i) {
    owned += heap(i)->owner_tid.load(std::memory_order_relaxed) != 0 ? 1 : 0;
  }
  return free < std::uint64_t{owned} * classes * 4;
}

std::uint32_t ArenaImpl::take_pages(std::uint32_t count) noexcept {
  for (int attempt = 0; attempt < 3; ++attempt) {
    const std::uint32_t first = find_run(*this, count);
    if (first != 0) {
      if (!valid_run(*this, first)) {
        repair_pages();
        continue;
      }
      const std::uint32_t have = run_at(*this, first)->pages;
      unlink_run(*this, first);
      if (have > count) link_run(*this, first + count, have - count);
      header->pages_free.fetch_sub(count, std::memory_order_relaxed);
      return first;
    }
    if (!grow_for(count)) return 0;
  }
  return 0;
}

bool ArenaImpl::take_pages_at(std::uint32_t first, std::uint32_t count) noexcept {
  const std::uint32_t pages = pages_now();
  if (first < header->meta_pages || first >= pages || count > pages - first) return false;
  for (std::uint32_t p = first; p < first + count; ++p) {
    if (!is_free(*this, p)) return false;
  }
  // The run holding `first` starts at or before it: its foot is found from any free page by
  // walking to the run's end (the pages are free, so the map says where it ends).
  std::uint32_t end = first + count;
  while (end < pages && is_free(*this, end)) ++end;
  const FreeFoot* f = foot_of(*this, end - 1);
  const std::uint32_t head = f->first;
  if (f->magic != (kFreeMagic ^ head) || head > first || !valid_run(*this, head) ||
      head + run_at(*this, head)->pages != end) {
    repair_pages();
    return false;
  }
  unlink_run(*this, head);
  if (head < first) link_run(*this, head, first - head);
  if (end > first + count) link_run(*this, first + count, end - first - count);
  header->pages_free.fetch_sub(count, std::memory_order_relaxed);
  return true;
}

void ArenaImpl::give_pages(std::uint32_t first, std::uint32_t count) noexcept {
  page_kind(first).store(static_cast<std::uint8_t>(PageKind::free), std::memory_order_release);
  for (std::uint32_t p = first + 1; p < first + count; ++p) {
    page_kind(p).store(static_cast<std::uint8_t>(PageKind::free), std::memory_order_relaxed);
  }
  header->pages_free.fetch_add(count, std::memory_order_relaxed);
  // Coalesce with the free runs on either side.
  if (first > header->meta_pages && is_free(*this, first - 1)) {
    const FreeFoot* f = foot_of(*this, first - 1);
    const std::uint32_t head = f->first;
    if (f->magic != (kFreeMagic ^ head) || !valid_run(*this, head) ||
        head + run_at(*this, head)->pages != first) {
      repair_pages();  // the map already says free: the rebuild takes these pages in
      return;
    }
    count += first - head;
    unlink_run(*this, head);
    first = head;
  }
  const std::uint32_t after = first + count;
  if (after < pages_now() && is_free(*this, after)) {
    if (!valid_run(*this, after)) {
      repair_pages();
      return;
    }
    const std::uint32_t more = run_at(*this, after)->pages;
    unlink_run(*this, after);
    count += more;
  }
  link_run(*this, first, count);
}

void ArenaImpl::repair_pages() noexcept {
  // The map is the truth. A holder killed while taking or giving back pages leaves, at worst,
  // a head whose header is cleared (a large block or span being freed) and tails with no head.
  // Each goes back to the free pages; then the index is rebuilt from the free pages.
  const std::uint32_t pages = pages_now();
  const auto kind_at = [this](std::uint32_t p) { return page_kind(p).load(std::memory_order_relaxed); };
  const auto free_page = [this](std::uint32_t p) {
    page_kind(p).store(static_cast<std::uint8_t>(PageKind::free), std::memory_order_relaxed);
  };
  for (std::uint32_t p = header->meta_pages; p < pages; ++p) {
    const std::uint8_t k = kind_at(p);
    std::uint32_t length = 0;  // pages of an intact block starting here
    if (k == static_cast<std::uint8_t>(PageKind::large_head)) {
      const auto* lh = reinterpret_cast<const LargeHeader*>(page_at(p));
      if (lh->magic == (kLargeMagic ^ p) && lh->pages != 0 && lh->pages <= pages - p) length = lh->pages;
    } else if (k == static_cast<std::uint8_t>(PageKind::span)) {
      const SpanHeader* s = span(p);
      if (s->magic == (kSpanMagic ^ p) && s->pages != 0 && s->pages <= pages - p) length = s->pages;
    } else if (k == static_cast<std::uint8_t>(PageKind::free)) {
      continue;
    }
    if (length == 0) {
      free_page(p);  // an orphan: a cleared head, a tail without its head, or garbage
      continue;
    }
    // Intact: its tails must say so; anything else in its range was garbage.
    const bool large = k == static_cast<std::uint8_t>(PageKind::large_head);
    for (std::uint32_t t = 1; t < length; ++t) {
      page_kind(p + t).store(large ? static_cast<std::uint8_t>(PageKind::large_tail)
                                   : static_cast<std::uint8_t>(kSpanTail | t),
                             std::memory_order_relaxed);
    }
    p += length - 1;
  }
  for (std::uint32_t p = pages; p < header->max_pages; ++p) {
    if (kind_at(p) != 0) free_page(p);
  }
  for (std::uint32_t b = 0; b < kBins; ++b) header->bins[b] = 0;
  header->bin_map.store(0, std::memory_order_relaxed);
  std::uint32_t total = 0;
  for (std::uint32_t p = header->meta_pages; p < pages;) {
    if (!is_free(*this, p)) {
      ++p;
      continue;
    }
    std::uint32_t end = p + 1;
    while (end < pages && is_free(*this, end)) ++end;
    link_run(*this, p, end - p);
    total += end - p;
    p = end;
  }
  header->pages_free.store(total, std::memory_order_relaxed);
}

bool ArenaImpl::grow_for(std::uint32_t count) noexcept {
  if ((header->flags & kFlagAutogrow) == 0) return false;
  const std::uint64_t size = header->size.load(std::memory_order_relaxed);
  const std::uint64_t need = size + (std::uint64_t{count} << kPageShift);
  if (need > header->max_size) return false;
  // Add a sixteenth, at least 1 MiB (or the tuned step), up to the maximum: what a grown arena
  // commits stays within a sixteenth of its peak. Fall back to exactly what is needed when
  // memory is short.
  const std::uint64_t tuned = header->grow_step.load(std::memory_order_relaxed);
  const std::uint64_t step = tuned != 0 ? tuned : std::max<std::uint64_t>(size / 16, std::uint64_t{1} << 20);
  const std::uint64_t wanted = size + (step + kPageSize - 1) / kPageSize * kPageSize;
  std::uint64_t target = std::min<std::uint64_t>(header->max_size, std::max(need, wanted));
  for (;;) {
    try {
      if (target > segment.size()) segment.grow(static_cast<std::size_t>(target));
      const auto old_pages = static_cast<std::uint32_t>(size >> kPageShift);
      header->size.store(target, std::memory_order_release);
      give_pages(old_pages, static_cast<std::uint32_t>((target - size) >> kPageShift));
      return true;
    } catch (const Error&) {
      if (target == need) return false;
      target = need;
    }
  }
}

}  // namespace shmkit::detail
