// SPDX-License-Identifier: MIT
// Broadcast: one producer writing slots under per-slot seqlocks, subscribers reading them
// with cursors of their own (broadcast.hpp has the protocol).
#include "shmkit/channel/broadcast.hpp"

#include <atomic>
#include <cstring>

#include "channel/wait.hpp"

namespace shmkit {

using detail::SlotHeader;

namespace {

// The seqlock values of position pos: being written, and written.
constexpr std::uint64_t writing(std::uint64_t pos) { return 2 * pos + 1; }
constexpr std::uint64_t written(std::uint64_t pos) { return 2 * pos + 2; }

}  // namespace

// ---- Producer ----

// Overflow::block: may position `head` be written, i.e. has every live subscriber read
// head - capacity? The slowest cursor is cached in min_tail and looked up again only when
// the cache says no (a scan of the peer table).
bool Broadcast::room(std::uint64_t head) {
  if (overflow() == Overflow::overwrite) return true;
  if (head - hdr_->min_tail.load(std::memory_order_relaxed) <= mask_) return true;
  // Pairs with the fence in join(): a subscriber joining now is seen here, or starts at a
  // head no older than `head`.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  std::uint64_t slowest = head;
  for (std::uint32_t i = 0; i < max_peers_; ++i) {
    const detail::PeerSlot& p = *peer(i);
    if (p.owner.load(std::memory_order_acquire) == 0 ||
        (p.role & static_cast<std::uint32_t>(Role::consumer)) == 0) {
      continue;
    }
    // Acquire: the subscriber's reads of the slot happen before we overwrite it.
    const std::uint64_t cursor = p.consume.load(std::memory_order_acquire);
    if (cursor < slowest) slowest = cursor;
  }
  hdr_->min_tail.store(slowest, std::memory_order_relaxed);
  return head - slowest <= mask_;
}

std::span<std::byte> Broadcast::try_loan() {
  if (!(static_cast<unsigned>(role_) & 1u)) [[unlikely]] throw_no_role("loan");
  if (loaned_ == 0) {
    const std::uint64_t pos = hdr_->head.load(std::memory_order_relaxed);  // ours
    if (!room(pos)) return {};
    // Odd: a subscriber still reading the lap before sees the slot change under it.
    slot(pos)->seq.store(writing(pos), std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    loaned_ = pos + 1;
  }
  return {payload(loaned_ - 1), slot_size_};
}

std::span<std::byte> Broadcast::loan(std::chrono::nanoseconds timeout) {
  if (std::span<std::byte> s = try_loan(); !s.empty()) return s;
  const std::uint64_t pos = hdr_->head.load(std::memory_order_relaxed);
  auto ready = [&] { return room(pos); };
  if (!wait_until(hdr_->not_full, ready, deadline_after(timeout), false)) return {};
  return try_loan();
}

void Broadcast::publish(std::size_t bytes) {
  if (bytes > slot_size_) [[unlikely]] throw_too_big(bytes);
  SHMKIT_ASSERT(loaned_ != 0);
  const std::uint64_t pos = loaned_ - 1;
  SlotHeader* s = slot(pos);
  s->size = static_cast<std::uint32_t>(bytes);
  s->flags = 0;
  s->seq.store(written(pos), std::memory_order_release);
  hdr_->head.store(pos + 1, std::memory_order_release);
  loaned_ = 0;
  count_message();
  hdr_->not_empty.notify_all();
}

bool Broadcast::try_send(std::span<const std::byte> message) {
  return try_send_copy(*this, message);
}

bool Broadcast::send(std::span<const std::byte> message, std::chrono::nanoseconds timeout) {
  return send_copy(*this, message, timeout);
}

// ---- Subscriber ----

ChannelBase::View Broadcast::try_receive() {
  if (!(static_cast<unsigned>(role_) & 2u) || me_ == nullptr) [[unlikely]] throw_no_role("receive");
  std::uint64_t cursor = held_ != 0 ? held_ - 1 : me_->consume.load(std::memory_order_relaxed);
  std::uint64_t skipped = 0;
  for (;;) {
    const std::uint64_t head = hdr_->head.load(std::memory_order_acquire);
    if (cursor >= head) break;
    if (head - cursor > capacity()) {  // lapped: the oldest message still there is head - capacity
      skipped += head - capacity() - cursor;
      cursor = head - capacity();
    }
    const SlotHeader& s = *slot(cursor);
    const std::uint64_t seq = s.seq.load(std::memory_order_acquire);
    if (seq != written(cursor)) {  // being overwritten: lost too
      ++skipped;
      ++cursor;
      continue;
    }
    if (skipped != 0) {
      me_->consume.store(cursor, std::memory_order_release);
      me_->lost.store(me_->lost.load(std::memory_order_relaxed) + skipped,
                      std::memory_order_relaxed);
    }
    held_ = cursor + 1;
    held_seq_ = seq;
    const std::size_t size = s.size < slot_size_ ? s.size : slot_size_;  // foreign: clamp
    return {payload(cursor), size, skipped};
  }
  if (skipped != 0) {
    me_->consume.store(cursor, std::memory_order_release);
    me_->lost.store(me_->lost.load(std::memory_order_relaxed) + skipped, std::memory_order_relaxed);
  }
  return {};
}

ChannelBase::View Broadcast::receive(std::chrono::nanoseconds timeout) {
  if (View v = try_receive()) return v;
  auto ready = [&] {
    return hdr_->head.load(std::memory_order_acquire) > me_->consume.load(std::memory_order_relaxed);
  };
  if (!wait_until(hdr_->not_empty, ready, deadline_after(timeout), true)) return {};
  return try_receive();
}

bool Broadcast::release() noexcept {
  SHMKIT_ASSERT(held_ != 0);
  const std::uint64_t pos = held_ - 1;
  // Seqlock read side: the reads of the payload happen before this load.
  std::atomic_thread_fence(std::memory_order_acquire);
  const bool intact = slot(pos)->seq.load(std::memory_order_relaxed) == held_seq_;
  held_ = 0;
  me_->consume.store(pos + 1, std::memory_order_release);
  if (intact) {
    count_message();
  } else {
    me_->lost.store(me_->lost.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  if (overflow() == Overflow::block) hdr_->not_full.notify_one();
  return intact;
}

std::optional<std::size_t> Broadcast::try_receive(std::span<std::byte> buffer) {
  for (;;) {
    const View v = try_receive();
    if (!v) return std::nullopt;
    const std::size_t n = copy_out(v, buffer);
    if (release()) return n;  // else torn by the producer: counted lost, take the next
  }
}

std::optional<std::size_t> Broadcast::receive(std::span<std::byte> buffer,
                                              std::chrono::nanoseconds timeout) {
  const Clock::time_point deadline = deadline_after(timeout);
  for (;;) {
    const View v = receive(std::chrono::duration_cast<std::chrono::nanoseconds>(
        deadline == Clock::time_point::max() ? kForever : deadline - Clock::now()));
    if (!v) return std::nullopt;
    const std::size_t n = copy_out(v, buffer);
    if (release()) return n;
  }
}

std::uint64_t Broadcast::lost() const noexcept {
  return me_ != nullptr ? me_->lost.load(std::memory_order_relaxed) : 0;
}

}  // namespace shmkit
