// SPDX-License-Identifier: MIT
// Ring slow paths: creating and opening (through ChannelBase), waiting for room or for a
// message, and messages larger than a slot sent as arena blocks.
#include "shmkit/channel/ring.hpp"

#include "channel/wait.hpp"
#include "shmkit/arena.hpp"

namespace shmkit {

using detail::ChannelKind;

// ---- Creating and opening ----

Ring Ring::create(std::string_view name, const ChannelConfig& config, Role role,
                  const CreateOptions& options) {
  Ring r;
  r.create_in_segment(ChannelKind::ring, name, config, role, options);
  r.after_attach();
  return r;
}

Ring Ring::open(std::string_view name, Role role) {
  Ring r;
  r.open_segment(ChannelKind::ring, name, role);
  r.after_attach();
  return r;
}

Ring Ring::open_or_create(std::string_view name, const ChannelConfig& config, Role role,
                          const CreateOptions& options) {
  Ring r;
  r.open_or_create_segment(ChannelKind::ring, name, config, role, options);
  r.after_attach();
  return r;
}

Ring Ring::create_anonymous(const ChannelConfig& config) {
  Ring r;
  r.create_anonymous_segment(ChannelKind::ring, config);
  r.role_ = Role::both;  // unregistered: whoever inherits it may produce or consume
  r.after_attach();
  return r;
}

Ring Ring::create(Arena& arena, std::string_view name, const ChannelConfig& config, Role role) {
  Ring r;
  r.create_in_arena(ChannelKind::ring, arena, name, config, role);
  r.after_attach();
  return r;
}

Ring Ring::open(Arena& arena, std::string_view name, Role role) {
  Ring r;
  r.open_in_arena(ChannelKind::ring, arena, name, role);
  r.after_attach();
  return r;
}

Ring Ring::open_or_create(Arena& arena, std::string_view name, const ChannelConfig& config,
                          Role role) {
  Ring r;
  r.open_or_create_in_arena(ChannelKind::ring, arena, name, config, role);
  r.after_attach();
  return r;
}

void Ring::after_attach() noexcept {
  tail_cache_ = hdr_->tail.load(std::memory_order_acquire);
  head_cache_ = hdr_->head.load(std::memory_order_acquire);
}

// ---- Waiting ----

std::span<std::byte> Ring::loan(std::chrono::nanoseconds timeout) {
  if (std::span<std::byte> s = try_loan(); !s.empty()) return s;
  const std::uint64_t head = hdr_->head.load(std::memory_order_relaxed);
  auto room = [&] {
    tail_cache_ = hdr_->tail.load(std::memory_order_acquire);
    return head - tail_cache_ <= mask_;
  };
  if (!wait_until(hdr_->not_full, room, deadline_after(timeout), true)) return {};
  return try_loan();
}

bool Ring::send(std::span<const std::byte> message, std::chrono::nanoseconds timeout) {
  if (message.size() > slot_size_) {
    if (arena() == nullptr) throw_too_big(message.size());
    const std::span<std::byte> block = allocate_block(message.size());
    std::memcpy(block.data(), message.data(), message.size());
    if (publish_block(block, timeout)) return true;
    arena()->deallocate(block.data());
    return false;
  }
  const std::span<std::byte> s = loan(timeout);
  if (s.empty()) return false;
  if (!message.empty()) std::memcpy(s.data(), message.data(), message.size());
  publish(message.size());
  return true;
}

bool Ring::publish_block(std::span<std::byte> block, std::chrono::nanoseconds timeout) {
  require_blocks("publish a block");
  const std::span<std::byte> s = loan(timeout);
  if (s.empty()) return false;
  const detail::BlockRef ref{arena()->offset_of(block.data()), block.size()};
  std::memcpy(s.data(), &ref, sizeof ref);
  const std::uint64_t head = hdr_->head.load(std::memory_order_relaxed);
  detail::SlotHeader* h = slot(head);
  h->size = sizeof ref;
  h->flags = detail::kSlotBlock;
  hdr_->head.store(head + 1, std::memory_order_release);  // INV-RING-2
  hdr_->not_empty.notify_one();
  return true;
}

Ring::View Ring::receive(std::chrono::nanoseconds timeout) {
  if (View v = try_receive()) return v;
  const std::uint64_t tail = hdr_->tail.load(std::memory_order_relaxed);
  auto ready = [&] {
    head_cache_ = hdr_->head.load(std::memory_order_acquire);
    return head_cache_ > tail;
  };
  if (!wait_until(hdr_->not_empty, ready, deadline_after(timeout), true)) return {};
  return try_receive();
}

std::optional<std::size_t> Ring::receive(std::span<std::byte> buffer,
                                         std::chrono::nanoseconds timeout) {
  const View v = receive(timeout);
  if (!v) return std::nullopt;
  const std::size_t n = copy_out(v, buffer);
  release();
  return n;
}

}  // namespace shmkit
