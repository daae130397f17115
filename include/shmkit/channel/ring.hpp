// SPDX-License-Identifier: MIT
// Ring: one producer, one consumer, fixed-size slots; the fastest channel.
//
// The producer owns `head` (messages published), the consumer owns `tail` (messages
// released); each lives on its own cache line beside the Event its owner notifies. The
// producer keeps a private copy of `tail` (rigtorp's SPSCQueue) and reads the consumer's line
// only when that copy says "full"; the consumer does not read `head` at all: a slot's `seq`
// says it holds position n (seq == n + 1), so a message arrives in its own cache lines.
// Zero-copy: loan() a slot, write in place, publish(); receive() a view, read, release().
//
// INV-RING-1: tail <= head <= tail + capacity. Slot (n & (capacity-1)) belongs to the
// producer while n >= head, to the consumer while tail <= n < head.
// INV-RING-2: a slot's bytes are written before its seq becomes n + 1 (release/acquire on
// seq), then head passes it; they are read before tail passes it (release/acquire on tail).
#pragma once

#include <cstring>
#include <optional>

#include "shmkit/channel/channel.hpp"

namespace shmkit {

/// A single-producer single-consumer channel. At most one live producer and one live
/// consumer are joined at a time (join() says EBUSY to a second one); they may be one
/// handle (Role::both). A producer that dies is replaced by the next one to join and loses
/// only the slot it had loaned; a consumer that dies holding a message leaves it queued for
/// the next consumer (at-least-once). In an Arena, messages larger than a slot travel as
/// arena blocks (send() does it; loan_block() / publish_block() without a copy).
class SHMKIT_API Ring : public detail::ChannelOf<Ring, detail::ChannelKind::ring> {
 public:
  using ChannelOf::create_anonymous;
  /// A nameless ring of `capacity` slots of `slot_size` bytes (see ChannelOf).
  static Ring create_anonymous(std::size_t slot_size, std::size_t capacity) {
    return create_anonymous(ChannelConfig{slot_size, capacity, 2, Overflow::block});
  }

  Ring() noexcept = default;
  Ring(Ring&& other) noexcept = default;
  Ring& operator=(Ring&& other) noexcept = default;

  // ---- Producer ----

  /// Returns the next free slot (slot_size() bytes) to write in place, or an empty span when
  /// the ring is full. Call publish() to send it.
  [[nodiscard]] std::span<std::byte> try_loan() {
    if (!(static_cast<unsigned>(role_) & 1u)) [[unlikely]] throw_no_role("loan");
    const std::uint64_t head = hdr_->head.load(std::memory_order_relaxed);  // ours
    if (head - tail_cache_ > mask_) {
      // Acquire: the consumer's reads of the slot happen before we write it (INV-RING-2).
      tail_cache_ = hdr_->tail.load(std::memory_order_acquire);
      if (head - tail_cache_ > mask_) return {};
    }
    return {payload(head), slot_size_};
  }
  /// As try_loan(), waiting up to `timeout` for room; empty on timeout or closed().
  [[nodiscard]] std::span<std::byte> loan(std::chrono::nanoseconds timeout = kForever);

  /// Sends the loaned slot holding `bytes` bytes and wakes a sleeping consumer. Throws
  /// Error(EMSGSIZE) when bytes > slot_size() (the slot stays loaned).
  void publish(std::size_t bytes) {
    if (bytes > slot_size_) [[unlikely]] throw_too_big(bytes);
    publish_as(bytes, 0);
  }

  /// Copies `message` into a slot and publishes it; false when full. Throws
  /// Error(EMSGSIZE) when the message is larger than slot_size() (send() can do it in an arena).
  [[nodiscard]] bool try_send(std::span<const std::byte> message) {
    if (message.size() > slot_size_) [[unlikely]] throw_too_big(message.size());
    const std::span<std::byte> s = try_loan();
    if (s.empty()) return false;
    if (!message.empty()) std::memcpy(s.data(), message.data(), message.size());
    publish(message.size());
    return true;
  }
  /// As try_send(), waiting up to `timeout` for room; false on timeout or closed(). In an
  /// arena, a message larger than a slot is copied into an arena block and sent as one.
  bool send(std::span<const std::byte> message, std::chrono::nanoseconds timeout = kForever);

  /// In an arena: allocates a `size`-byte block to write a large message in place. Throws
  /// Error: EINVAL outside an arena or when slots are smaller than 16 bytes; ENOMEM.
  [[nodiscard]] std::span<std::byte> loan_block(std::size_t size) { return allocate_block(size); }
  /// Sends a block from loan_block() (all of it) without copying it. False on timeout or
  /// closed(): the block is still the caller's (publish it again, or free it through arena()).
  bool publish_block(std::span<std::byte> block, std::chrono::nanoseconds timeout = kForever);

  // ---- Consumer ----

  /// Returns the oldest message in place, or an empty View when the ring is empty. Call
  /// release() when done with it; until then the same message is returned again.
  [[nodiscard]] View try_receive() {
    if (!(static_cast<unsigned>(role_) & 2u)) [[unlikely]] throw_no_role("receive");
    const std::uint64_t tail = hdr_->tail.load(std::memory_order_relaxed);  // ours
    const detail::SlotHeader& s = *slot(tail);
    // Acquire: the producer's writes of the slot happen before we read it (INV-RING-2).
    if (s.seq.load(std::memory_order_acquire) != tail + 1) return {};
    // The size was written by another process: clamp it rather than trust it.
    std::size_t size = s.size < slot_size_ ? s.size : slot_size_;
    const std::byte* p = payload(tail);
    if (s.flags != 0) [[unlikely]] p = resolve_block(s, p, size);
    return {p, size, 0};
  }
  /// As try_receive(), waiting up to `timeout` for a message; empty on timeout or closed().
  [[nodiscard]] View receive(std::chrono::nanoseconds timeout = kForever);

  /// Frees the message returned by receive()/try_receive() (and its arena block) and wakes a
  /// sleeping producer.
  void release() noexcept {
    const std::uint64_t tail = hdr_->tail.load(std::memory_order_relaxed);
    SHMKIT_ASSERT(slot(tail)->seq.load(std::memory_order_relaxed) == tail + 1);  // received
    if (slot(tail)->flags != 0) [[unlikely]] free_block(payload(tail));
    hdr_->tail.store(tail + 1, std::memory_order_release);  // INV-RING-2
    hdr_->not_full.notify_one();
  }

  /// Copies the oldest message into `buffer`, releases it and returns its size; nullopt when
  /// empty. Throws Error(EMSGSIZE) when `buffer` is too small (the message stays queued).
  [[nodiscard]] std::optional<std::size_t> try_receive(std::span<std::byte> buffer) {
    return take_copy(*this, try_receive(), buffer);
  }
  /// As try_receive(buffer), waiting up to `timeout`; nullopt on timeout or closed().
  [[nodiscard]] std::optional<std::size_t> receive(std::span<std::byte> buffer,
                                                   std::chrono::nanoseconds timeout = kForever);

 private:
  friend class detail::ChannelOf<Ring, detail::ChannelKind::ring>;
  friend class ChannelBase;  // publish_block_in
  void after_attach() noexcept;
  void publish_as(std::size_t bytes, std::uint32_t flags) noexcept {
    const std::uint64_t head = hdr_->head.load(std::memory_order_relaxed);
    SHMKIT_ASSERT(head - tail_cache_ <= mask_);  // a slot was loaned
    detail::SlotHeader* s = slot(head);
    s->size = static_cast<std::uint32_t>(bytes);
    s->flags = flags;
    s->seq.store(head + 1, std::memory_order_release);  // INV-RING-2: the consumer may read it
    // A producer that dies right here leaves head one short: the next one to join counts
    // the slot (ChannelBase::join).
    hdr_->head.store(head + 1, std::memory_order_release);
    hdr_->not_empty.notify_one();
  }

  std::uint64_t tail_cache_ = 0;  // producer: last tail seen (never ahead of the real one)
};

}  // namespace shmkit
