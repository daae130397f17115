// SPDX-License-Identifier: MIT
// Queue: Vyukov's bounded MPMC queue with claims in the peer table, so that the reaper can
// tell which half-done slot a dead peer left behind (queue.hpp has the protocol).
#include "shmkit/channel/queue.hpp"

#include "channel/wait.hpp"
#include "shmkit/arena.hpp"

namespace shmkit {

using detail::SlotHeader;

// ---- Producer ----

std::span<std::byte> Queue::try_loan() {
  if (!(static_cast<unsigned>(role_) & 1u)) [[unlikely]] throw_no_role("loan");
  if (loaned_ != 0) return {payload(loaned_ - 1), slot_size_};
  std::uint64_t pos = hdr_->head.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint64_t seq = slot(pos)->seq.load(std::memory_order_acquire);
    const auto turn = static_cast<std::int64_t>(seq - pos);
    if (turn < 0) {  // the slot still holds the message of the previous lap: full
      // A claim left behind by a lost CAS would make the reaper wait for this live handle.
      if (me_ != nullptr) me_->produce.store(0, std::memory_order_relaxed);
      return {};
    }
    if (turn > 0) {           // another producer took pos
      pos = hdr_->head.load(std::memory_order_relaxed);
      continue;
    }
    // The claim is stored before the CAS that takes pos; a reaper that sees head past pos
    // (acquire) sees the claim too.
    if (me_ != nullptr) me_->produce.store(pos + 1, std::memory_order_relaxed);
    if (hdr_->head.compare_exchange_weak(pos, pos + 1, std::memory_order_acq_rel,
                                         std::memory_order_relaxed)) {
      loaned_ = pos + 1;
      return {payload(pos), slot_size_};
    }
  }
}

std::span<std::byte> Queue::loan(std::chrono::nanoseconds timeout) {
  if (std::span<std::byte> s = try_loan(); !s.empty()) return s;
  const Clock::time_point deadline = deadline_after(timeout);
  for (;;) {
    auto room = [&] {
      const std::uint64_t pos = hdr_->head.load(std::memory_order_relaxed);
      return slot(pos)->seq.load(std::memory_order_acquire) >= pos;
    };
    if (wait_ != Wait::block && detail::back_off_until(room)) {
      if (std::span<std::byte> s = try_loan(); !s.empty()) return s;
    }
    if (!wait_until(hdr_->not_full, room, deadline, true)) return {};
    if (std::span<std::byte> s = try_loan(); !s.empty()) return s;  // else another took it
  }
}

void Queue::publish(std::size_t bytes) {
  if (bytes > slot_size_) [[unlikely]] throw_too_big(bytes);
  publish_as(bytes, 0);
}

void Queue::publish_as(std::size_t bytes, std::uint32_t flags) noexcept {
  SHMKIT_ASSERT(loaned_ != 0);
  const std::uint64_t pos = loaned_ - 1;
  SlotHeader* s = slot(pos);
  s->size = static_cast<std::uint32_t>(bytes);
  s->flags = flags;
  s->seq.store(pos + 1, std::memory_order_release);  // full: the consumers' turn
  loaned_ = 0;
  if (me_ != nullptr) me_->produce.store(0, std::memory_order_release);
  count_message();
  hdr_->not_empty.notify_one();
}

bool Queue::try_send(std::span<const std::byte> message) {
  return try_send_copy(*this, message);
}

bool Queue::send(std::span<const std::byte> message, std::chrono::nanoseconds timeout) {
  return send_copy(*this, message, timeout);
}

bool Queue::publish_block(std::span<std::byte> block, std::chrono::nanoseconds timeout) {
  return publish_block_in(*this, block, timeout);
}

// ---- Consumer ----

ChannelBase::View Queue::take(std::uint64_t pos) {
  const SlotHeader& s = *slot(pos);
  std::size_t size = s.size < slot_size_ ? s.size : slot_size_;  // foreign bytes: clamp
  const std::byte* p = payload(pos);
  if ((s.flags & detail::kSlotBlock) != 0) p = resolve_block(s, p, size);
  return {p, size, 0};
}

ChannelBase::View Queue::try_receive() {
  if (!(static_cast<unsigned>(role_) & 2u)) [[unlikely]] throw_no_role("receive");
  if (taken_ != 0) return take(taken_ - 1);
  std::uint64_t pos = hdr_->tail.load(std::memory_order_relaxed);
  for (;;) {
    SlotHeader* s = slot(pos);
    const std::uint64_t seq = s->seq.load(std::memory_order_acquire);
    const auto turn = static_cast<std::int64_t>(seq - (pos + 1));
    if (turn < 0) {  // not yet published: empty
      if (me_ != nullptr) me_->consume.store(0, std::memory_order_relaxed);
      return {};
    }
    if (turn > 0) {           // another consumer took pos
      pos = hdr_->tail.load(std::memory_order_relaxed);
      continue;
    }
    if (me_ != nullptr) me_->consume.store(pos + 1, std::memory_order_relaxed);
    if (!hdr_->tail.compare_exchange_weak(pos, pos + 1, std::memory_order_acq_rel,
                                          std::memory_order_relaxed)) {
      continue;
    }
    taken_ = pos + 1;
    if ((s->flags & detail::kSlotVoid) == 0) return take(pos);
    release_slot(pos);  // a dead producer's slot: nothing in it, skip it
    pos = hdr_->tail.load(std::memory_order_relaxed);
  }
}

ChannelBase::View Queue::receive(std::chrono::nanoseconds timeout) {
  if (View v = try_receive()) return v;
  const Clock::time_point deadline = deadline_after(timeout);
  for (;;) {
    auto ready = [&] {
      const std::uint64_t pos = hdr_->tail.load(std::memory_order_relaxed);
      return slot(pos)->seq.load(std::memory_order_acquire) >= pos + 1;
    };
    if (!wait_until(hdr_->not_empty, ready, deadline, true)) return {};
    if (View v = try_receive()) return v;  // else another consumer took it
  }
}

void Queue::release() noexcept {
  SHMKIT_ASSERT(taken_ != 0);
  const std::uint64_t pos = taken_ - 1;
  if ((slot(pos)->flags & detail::kSlotBlock) != 0) free_block(payload(pos));
  release_slot(pos);
  count_message();
}

void Queue::release_slot(std::uint64_t pos) noexcept {
  slot(pos)->seq.store(pos + capacity(), std::memory_order_release);  // free for the next lap
  taken_ = 0;
  if (me_ != nullptr) me_->consume.store(0, std::memory_order_release);
  hdr_->not_full.notify_one();
}

std::optional<std::size_t> Queue::try_receive(std::span<std::byte> buffer) {
  return take_copy(*this, try_receive(), buffer);
}

std::optional<std::size_t> Queue::receive(std::span<std::byte> buffer,
                                          std::chrono::nanoseconds timeout) {
  return take_copy(*this, receive(timeout), buffer);
}

}  // namespace shmkit
