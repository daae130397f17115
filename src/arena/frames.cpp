// SPDX-License-Identifier: MIT
// The frame map: taking and giving back runs of 64 KiB frames, and growing the arena.
// Everything here runs under the arena lock.
//
// A run is committed by writing its head last and released by clearing its head first, so a
// process killed in between leaves only orphan tails, which repair_frames() frees.
#include <algorithm>
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
  if (owner_died) a.repair_frames();
}

namespace {

bool is_free(const ArenaImpl& a, std::uint32_t f) noexcept {
  return a.frame_kind(f).load(std::memory_order_relaxed) == static_cast<std::uint8_t>(FrameKind::free);
}

// First run of `count` free frames in [from, to), or 0.
std::uint32_t find_run(const ArenaImpl& a, std::uint32_t from, std::uint32_t to,
                       std::uint32_t count) noexcept {
  std::uint32_t run = 0;
  for (std::uint32_t f = from; f < to; ++f) {
    run = is_free(a, f) ? run + 1 : 0;
    if (run == count) return f + 1 - count;
  }
  return 0;
}

}  // namespace

std::uint32_t ArenaImpl::take_frames(std::uint32_t count) noexcept {
  const std::uint32_t meta = header->meta_frames;
  std::uint32_t frames = frames_now();
  std::uint32_t hint = header->frame_hint.load(std::memory_order_relaxed);
  if (hint < meta || hint >= frames) hint = meta;
  std::uint32_t first = find_run(*this, hint, frames, count);
  if (first == 0 && hint > meta) first = find_run(*this, meta, std::min(frames, hint + count), count);
  if (first == 0) {
    if (!grow_for(count)) return 0;
    const std::uint32_t old = frames;
    frames = frames_now();
    // The new frames follow the old end; a free run may straddle it.
    std::uint32_t from = old;
    while (from > meta && is_free(*this, from - 1) && old - from + 1 < count) --from;
    first = find_run(*this, from, frames, count);
    if (first == 0) return 0;
  }
  header->frame_hint.store(first + count, std::memory_order_relaxed);
  return first;
}

void ArenaImpl::give_frames(std::uint32_t first, std::uint32_t count) noexcept {
  frame_kind(first).store(static_cast<std::uint8_t>(FrameKind::free), std::memory_order_release);
  for (std::uint32_t f = first + 1; f < first + count; ++f) {
    frame_kind(f).store(static_cast<std::uint8_t>(FrameKind::free), std::memory_order_relaxed);
  }
  if (first < header->frame_hint.load(std::memory_order_relaxed)) {
    header->frame_hint.store(first, std::memory_order_relaxed);
  }
}

void ArenaImpl::repair_frames() noexcept {
  // A holder died between the steps of taking or giving back frames. Heads are written last
  // when taking and cleared first when giving back, so what it can leave is: a head whose
  // magic is cleared (a large block being freed), a span whose magic is cleared (a span
  // being released), and tails with no head. Each goes back to the free frames.
  const std::uint32_t frames = frames_now();
  const auto kind_at = [this](std::uint32_t f) { return static_cast<FrameKind>(frame_kind(f).load(std::memory_order_relaxed)); };
  for (std::uint32_t f = header->meta_frames; f < frames; ++f) {
    switch (kind_at(f)) {
      case FrameKind::large_head: {
        const auto* lh = reinterpret_cast<const LargeHeader*>(base + (std::uint64_t{f} << kFrameShift));
        if (lh->magic == (kLargeMagic ^ f) && lh->frames != 0 && f + lh->frames <= frames) {
          f += lh->frames - 1;  // intact: skip its tails
          break;
        }
        std::uint32_t end = f + 1;
        while (end < frames && kind_at(end) == FrameKind::large_tail) ++end;
        give_frames(f, end - f);
        f = end - 1;
        break;
      }
      case FrameKind::large_tail: {
        std::uint32_t end = f + 1;
        while (end < frames && kind_at(end) == FrameKind::large_tail) ++end;
        give_frames(f, end - f);
        f = end - 1;
        break;
      }
      case FrameKind::span:
        if (span(f)->magic != (kSpanMagic ^ f)) give_frames(f, 1);
        break;
      default:
        break;
    }
  }
}

bool ArenaImpl::grow_for(std::uint32_t count) noexcept {
  if ((header->flags & kFlagAutogrow) == 0) return false;
  const std::uint64_t size = header->size.load(std::memory_order_relaxed);
  const std::uint64_t need = size + (std::uint64_t{count} << kFrameShift);
  if (need > header->max_size) return false;
  // Double (or add the tuned step), up to the maximum; fall back to exactly what is needed
  // when memory is short.
  const std::uint64_t step = header->grow_step.load(std::memory_order_relaxed);
  const std::uint64_t wanted = step == 0 ? size * 2 : size + (step + kFrameSize - 1) / kFrameSize * kFrameSize;
  std::uint64_t target = std::min<std::uint64_t>(header->max_size, std::max(need, wanted));
  for (;;) {
    try {
      if (target > segment.size()) segment.grow(static_cast<std::size_t>(target));
      header->size.store(target, std::memory_order_release);
      return true;
    } catch (const Error&) {
      if (target == need) return false;
      target = need;
    }
  }
}

}  // namespace shmkit::detail
