// SPDX-License-Identifier: MIT
// Broadcast: one producer, many subscribers; every subscriber receives every message.
//
// The producer writes slot (pos & mask) under a per-slot seqlock — seq = 2·pos + 1 while it
// writes, 2·pos + 2 once written — then advances `head`. Each subscriber has its own cursor
// in its peer slot. With Overflow::block the producer waits until the slowest live
// subscriber is less than `capacity` behind (a dead subscriber is dropped by reap(), never
// waited for); with Overflow::overwrite it never waits, and a subscriber that was lapped
// skips to the oldest message still there, told in View::lost how many it missed. A
// subscriber checks the seqlock after reading, so it never returns a torn message.
#pragma once

#include <optional>

#include "shmkit/channel/channel.hpp"

namespace shmkit {

/// A one-to-many channel: one producer, up to max_peers - 1 subscribers (Role::consumer),
/// each with its own cursor. A subscriber receives the messages published after it joined.
class SHMKIT_API Broadcast : public detail::ChannelOf<Broadcast, detail::ChannelKind::broadcast> {
 public:
  Broadcast() noexcept = default;
  Broadcast(Broadcast&& other) noexcept = default;
  Broadcast& operator=(Broadcast&& other) noexcept = default;

  Overflow overflow() const noexcept { return static_cast<Overflow>(hdr_->overflow); }

  // ---- Producer ----

  /// The next slot to write in place, or empty when the slowest subscriber is `capacity`
  /// behind (Overflow::block only).
  [[nodiscard]] std::span<std::byte> try_loan();
  /// As try_loan(), waiting up to `timeout`; empty on timeout.
  [[nodiscard]] std::span<std::byte> loan(std::chrono::nanoseconds timeout = kForever);
  /// Sends the loaned slot holding `bytes` bytes to every subscriber. Throws
  /// Error(EMSGSIZE) when bytes > slot_size().
  void publish(std::size_t bytes);
  [[nodiscard]] bool try_send(std::span<const std::byte> message);
  bool send(std::span<const std::byte> message, std::chrono::nanoseconds timeout = kForever);

  // ---- Subscriber ----

  /// The next message for this subscriber in place, or an empty View when it has seen them
  /// all. With Overflow::overwrite the producer may overwrite it while it is read: release()
  /// then returns false and what was read must be discarded.
  [[nodiscard]] View try_receive();
  /// As try_receive(), waiting up to `timeout`; empty on timeout or closed().
  [[nodiscard]] View receive(std::chrono::nanoseconds timeout = kForever);
  /// Moves past the message received. Returns false when it was overwritten while held
  /// (Overflow::overwrite only; it counts as lost).
  bool release() noexcept;

  /// Copying forms: a message copied whole and checked, never torn.
  [[nodiscard]] std::optional<std::size_t> try_receive(std::span<std::byte> buffer);
  [[nodiscard]] std::optional<std::size_t> receive(std::span<std::byte> buffer,
                                                   std::chrono::nanoseconds timeout = kForever);
  /// Messages this subscriber lost to overwriting since it joined.
  std::uint64_t lost() const noexcept;

 private:
  bool room(std::uint64_t head);

  std::uint64_t loaned_ = 0;    // position + 1 of the slot loaned, 0 = none
  std::uint64_t held_ = 0;      // position + 1 of the message received, 0 = none
  std::uint64_t held_seq_ = 0;  // its seqlock value when received
};

}  // namespace shmkit
