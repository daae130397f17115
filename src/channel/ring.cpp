// SPDX-License-Identifier: MIT
// Ring slow paths: the hand-over after attaching, waiting for room or for a
// message, and messages larger than a slot sent as arena blocks.
#include "shmkit/channel/ring.hpp"

#include "channel/wait.hpp"
#include "shmkit/arena.hpp"

namespace shmkit {


void Ring::after_attach() noexcept {
  tail_cache_ = hdr_->tail.load(std::memory_order_acquire);
}

// ---- Waiting ----

std::span<std::byte> Ring::loan(std::chrono::nanoseconds timeout) {
  if (std::span<std::byte> s = try_loan(); !s.empty()) return s;
  const std::uint64_t head = hdr_->head.load(std::memory_order_relaxed);
  auto room = [&] {
    tail_cache_ = hdr_->tail.load(std::memory_order_acquire);
    return head - tail_cache_ <= mask_;
  };
  if (wait_ != Wait::block && detail::back_off_until(room)) return try_loan();
  if (!wait_until(hdr_->not_full, room, deadline_after(timeout), true)) return {};
  return try_loan();
}

bool Ring::send(std::span<const std::byte> message, std::chrono::nanoseconds timeout) {
  return send_copy(*this, message, timeout);
}

bool Ring::publish_block(std::span<std::byte> block, std::chrono::nanoseconds timeout) {
  return publish_block_in(*this, block, timeout);
}

Ring::View Ring::receive(std::chrono::nanoseconds timeout) {
  if (View v = try_receive()) return v;
  const std::uint64_t tail = hdr_->tail.load(std::memory_order_relaxed);
  const detail::SlotHeader* s = slot(tail);
  auto ready = [&] { return s->seq.load(std::memory_order_acquire) == tail + 1; };
  if (!wait_until(hdr_->not_empty, ready, deadline_after(timeout), true)) return {};
  return try_receive();
}

std::optional<std::size_t> Ring::receive(std::span<std::byte> buffer,
                                         std::chrono::nanoseconds timeout) {
  return take_copy(*this, receive(timeout), buffer);
}

}  // namespace shmkit
