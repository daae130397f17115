// SPDX-License-Identifier: MIT
// Looking at an arena: statistics (mallinfo's figures, per size class) and check(), which
// walks every structure and reports the first inconsistency. Both read bytes other processes
// wrote, so every link is bounds-checked before it is followed.
#include <cerrno>
#include <cstdio>
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

std::uint8_t kind_of(const ArenaImpl& a, std::uint32_t f) {
  return a.frame_kind(f).load(std::memory_order_acquire);
}

std::string at_frame(std::uint32_t f, const std::string& what) {
  return "frame " + std::to_string(f) + ": " + what;
}

// Counts a free list of span `f`, checking every link. Returns "" or the problem.
std::string walk(const ArenaImpl& a, std::uint32_t f, std::uint64_t head, std::uint32_t& count) {
  const SpanHeader* s = a.span(f);
  const std::uint64_t lo = (std::uint64_t{f} << kFrameShift) + kSpanHeaderSize;
  const std::uint64_t hi = lo + std::uint64_t{s->capacity} * s->block_size;
  count = 0;
  for (std::uint64_t off = head; off != 0;
       off = *reinterpret_cast<const std::uint64_t*>(a.base + off)) {
    if (off < lo || off >= hi) return at_frame(f, "a free-list link points outside the span");
    if ((off - lo) % s->block_size != 0) return at_frame(f, "a free-list link is not at a block");
    if ((off - lo) / s->block_size >= s->bumped) {
      return at_frame(f, "a free-list link points past the blocks handed out");
    }
    if (++count > s->capacity) return at_frame(f, "a free list loops");
  }
  return {};
}

}  // namespace

namespace {

// Statistics from the frame map and span headers (the caller holds the lock, or accepts a
// racy snapshot).
ArenaStats compute_stats(const ArenaImpl& a) {
  ArenaStats st;
  st.size = a.header->size.load(std::memory_order_acquire);
  st.max_size = a.header->max_size;
  st.metadata = std::uint64_t{a.header->meta_frames} << kFrameShift;
  std::vector<ArenaStats::SizeClass> classes(kClasses);
  std::uint64_t block_frames_bytes = 0;
  const std::uint32_t frames = a.frames_now();
  for (std::uint32_t f = a.header->meta_frames; f < frames; ++f) {
    switch (static_cast<FrameKind>(kind_of(a, f))) {
      case FrameKind::free: ++st.frames_free; break;
      case FrameKind::span: {
        const SpanHeader* s = a.span(f);
        if (s->size_class >= kClasses) break;
        ++st.frames_small;
        // Blocks freed by other heaps but not yet collected by the owner are free too.
        std::uint32_t remote = 0;
        (void)walk(a, f, s->remote_free.load(std::memory_order_acquire), remote);
        const std::uint32_t used = s->used >= remote ? s->used - remote : 0;
        auto& c = classes[s->size_class];
        c.block_size = s->block_size;
        ++c.spans;
        c.blocks += s->capacity;
        c.in_use += used;
        st.in_use += std::uint64_t{used} * s->block_size;
        block_frames_bytes += kFrameSize;
        break;
      }
      case FrameKind::large_head: {
        const auto* lh = reinterpret_cast<const LargeHeader*>(a.base + (std::uint64_t{f} << kFrameShift));
        ++st.large_blocks;
        ++st.frames_large;
        st.in_use += lh->requested;
        block_frames_bytes += kFrameSize;
        break;
      }
      case FrameKind::large_tail:
        ++st.frames_large;
        block_frames_bytes += kFrameSize;
        break;
      case FrameKind::meta: break;
    }
  }
  for (auto& c : classes) {
    if (c.spans != 0) st.classes.push_back(c);
  }
  st.free = st.size - st.metadata - st.in_use;
  st.fragmentation = block_frames_bytes == 0
                         ? 0.0
                         : 1.0 - static_cast<double>(st.in_use) / static_cast<double>(block_frames_bytes);
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
  const std::uint32_t frames = a.frames_now();
  if (std::uint64_t{frames} << kFrameShift > a.segment.reserved()) {
    return "the arena's size is past its mapping";
  }
  for (std::uint32_t f = 0; f < h.meta_frames; ++f) {
    if (kind_of(a, f) != static_cast<std::uint8_t>(FrameKind::meta)) {
      return at_frame(f, "a metadata frame is not marked as metadata");
    }
  }
  for (std::uint32_t f = h.meta_frames; f < frames; ++f) {
    const auto kind = static_cast<FrameKind>(kind_of(a, f));
    switch (kind) {
      case FrameKind::free: break;
      case FrameKind::meta: return at_frame(f, "a data frame is marked as metadata");
      case FrameKind::large_tail: return at_frame(f, "a large block's frame has no head");
      case FrameKind::large_head: {
        const auto* lh = reinterpret_cast<const LargeHeader*>(a.base + (std::uint64_t{f} << kFrameShift));
        if (lh->magic != (kLargeMagic ^ f)) return at_frame(f, "a large block's header is corrupted");
        if (lh->frames == 0 || f + lh->frames > frames) return at_frame(f, "a large block runs past the end");
        if (lh->user_offset < kLargeHeaderSize || lh->user_offset >= std::uint64_t{lh->frames} << kFrameShift ||
            lh->user_offset + lh->requested > std::uint64_t{lh->frames} << kFrameShift) {
          return at_frame(f, "a large block's size is inconsistent");
        }
        for (std::uint32_t t = f + 1; t < f + lh->frames; ++t) {
          if (kind_of(a, t) != static_cast<std::uint8_t>(FrameKind::large_tail)) {
            return at_frame(t, "a large block's frame is not marked as its own");
          }
        }
        f += lh->frames - 1;
        break;
      }
      case FrameKind::span: {
        const SpanHeader* s = a.span(f);
        if (s->magic != (kSpanMagic ^ f)) return at_frame(f, "a span's header is corrupted");
        if (s->size_class >= kClasses || s->block_size != kClassSizes[s->size_class] ||
            s->capacity != (kFrameSize - kSpanHeaderSize) / s->block_size) {
          return at_frame(f, "a span's size class is inconsistent");
        }
        if (s->bumped > s->capacity || s->used > s->bumped) return at_frame(f, "a span's counts are inconsistent");
        if (s->heap > h.max_heaps) return at_frame(f, "a span names a heap that does not exist");
        std::uint32_t local = 0, remote = 0;
        if (auto p = walk(a, f, s->local_free, local); !p.empty()) return p;
        if (auto p = walk(a, f, s->remote_free.load(std::memory_order_acquire), remote); !p.empty()) return p;
        // A heap whose owner died may hold a count off by one until recover() repairs it.
        const std::uint32_t owner = s->heap != 0 ? a.heap(s->heap - 1)->owner_tid.load(std::memory_order_relaxed) : 0;
        const bool awaiting_recovery = owner != 0 && !os::thread_alive(static_cast<std::int32_t>(owner));
        if (!awaiting_recovery && s->bumped - local - remote != s->used && s->bumped - local != s->used) {
          return at_frame(f, "a span's use count (" + std::to_string(s->used) +
                                 ") disagrees with its free lists (" + std::to_string(s->bumped) +
                                 " handed out, " + std::to_string(local) + " + " +
                                 std::to_string(remote) + " free)");
        }
        break;
      }
      default: return at_frame(f, "an unknown frame kind");
    }
  }
  for (std::uint32_t f = frames; f < h.max_frames; ++f) {
    if (kind_of(a, f) != static_cast<std::uint8_t>(FrameKind::free)) {
      return at_frame(f, "a frame past the end is in use");
    }
  }
  // Heaps: what they point at must be spans of theirs.
  for (std::uint32_t i = 0; i < h.max_heaps; ++i) {
    const HeapSlot* hp = a.heap(i);
    if (hp->owner_tid.load(std::memory_order_relaxed) == 0) continue;
    for (std::uint32_t c = 0; c < kClasses; ++c) {
      for (std::uint32_t f : {hp->current[c], hp->partial[c]}) {
        if (f == 0) continue;
        if (f >= frames || kind_of(a, f) != static_cast<std::uint8_t>(FrameKind::span) ||
            a.span(f)->heap != i + 1 || a.span(f)->size_class != c) {
          return "heap " + std::to_string(i) + ": a span it uses is not one of its own";
        }
      }
    }
  }
  return {};
}

}  // namespace shmkit
