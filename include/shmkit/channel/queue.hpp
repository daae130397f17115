// SPDX-License-Identifier: MIT
// Queue: many producers, many consumers, fixed-size slots, each message to exactly one consumer.
//
// A bounded MPMC queue after Dmitry Vyukov's: every slot carries a sequence number that says
// whose turn it is — `seq == pos` free for the producer of position pos, `seq == pos + 1`
// full for its consumer, `seq == pos + capacity` free again for the next lap. Producers take
// positions by compare-and-swap on `head`, consumers on `tail`; nobody waits for anybody
// while there is room and there are messages.
//
// Robustness: before taking position pos a peer writes pos + 1 to its claim in the peer
// table. A process that dies between taking a position and finishing with it leaves its
// claim behind; the reaper (reap(), run by blocked peers after 100 ms without progress) finds
// the slot still in the state the dead peer left it, and repairs it: a half-written slot is
// marked void (consumers skip it), a half-read one is freed (the message is counted in
// stats().lost). Live peers lose and duplicate nothing.
#pragma once

#include <cstring>
#include <optional>

#include "shmkit/channel/channel.hpp"

namespace shmkit {

/// A many-producer many-consumer channel; each message goes to one consumer. Messages of
/// one producer are received in the order it sent them (by one consumer; several consumers
/// take them in that order but may finish in any). Each handle has at most one loaned slot
/// and one received message at a time. In an Arena, messages larger than a slot travel as
/// arena blocks, as in Ring.
class SHMKIT_API Queue : public detail::ChannelOf<Queue, detail::ChannelKind::queue> {
 public:
  Queue() noexcept = default;
  Queue(Queue&& other) noexcept = default;
  Queue& operator=(Queue&& other) noexcept = default;

  // ---- Producer ----

  /// Takes the next free slot (slot_size() bytes) to write in place, or returns an empty
  /// span when the queue is full. Consumers wait for it until publish().
  [[nodiscard]] std::span<std::byte> try_loan();
  /// As try_loan(), waiting up to `timeout` for room; empty on timeout or closed().
  [[nodiscard]] std::span<std::byte> loan(std::chrono::nanoseconds timeout = kForever);
  /// Sends the loaned slot holding `bytes` bytes. Throws Error(EMSGSIZE) when bytes >
  /// slot_size() (the slot stays loaned).
  void publish(std::size_t bytes);

  /// Copies `message` into a slot and publishes it; false when full.
  [[nodiscard]] bool try_send(std::span<const std::byte> message);
  /// As try_send(), waiting up to `timeout`; false on timeout or closed(). In an arena, a
  /// message larger than a slot is copied into an arena block and sent as one.
  bool send(std::span<const std::byte> message, std::chrono::nanoseconds timeout = kForever);
  /// Arena blocks without a copy, as Ring::loan_block / publish_block.
  [[nodiscard]] std::span<std::byte> loan_block(std::size_t size) { return allocate_block(size); }
  bool publish_block(std::span<std::byte> block, std::chrono::nanoseconds timeout = kForever);

  // ---- Consumer ----

  /// Takes the oldest message, or returns an empty View when the queue is empty. The message
  /// is this handle's until release(); until then the same message is returned again.
  [[nodiscard]] View try_receive();
  /// As try_receive(), waiting up to `timeout`; empty on timeout or closed().
  [[nodiscard]] View receive(std::chrono::nanoseconds timeout = kForever);
  /// Frees the message taken by receive() / try_receive() (and its arena block).
  void release() noexcept;

  /// Copying forms, as Ring's.
  [[nodiscard]] std::optional<std::size_t> try_receive(std::span<std::byte> buffer);
  [[nodiscard]] std::optional<std::size_t> receive(std::span<std::byte> buffer,
                                                   std::chrono::nanoseconds timeout = kForever);

 private:
  friend class ChannelBase;  // publish_block_in
  void publish_as(std::size_t bytes, std::uint32_t flags) noexcept;
  View take(std::uint64_t pos);
  void release_slot(std::uint64_t pos) noexcept;

  std::uint64_t loaned_ = 0;  // position + 1 of the slot loaned, 0 = none
  std::uint64_t taken_ = 0;   // position + 1 of the message received, 0 = none
};

}  // namespace shmkit
