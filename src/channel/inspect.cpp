// SPDX-License-Identifier: MIT
// inspect_channel: a channel's header and peers read from any mapping, without joining,
// locking or writing — what `shmkit info` and `shmkit ls` show.

#include "channel/internal.hpp"

namespace shmkit {

std::optional<ChannelInfo> inspect_channel(const void* data, std::size_t size) {
  using detail::ChannelHeader;
  if (data == nullptr || size < sizeof(ChannelHeader)) return std::nullopt;
  const auto* h = static_cast<const ChannelHeader*>(data);
  if (h->magic.load(std::memory_order_acquire) != detail::kChannelMagic) return std::nullopt;
  ChannelInfo info;
  const auto kind = static_cast<detail::ChannelKind>(h->kind);
  info.kind = detail::kind_name(kind);
  info.problem = detail::channel_header_problem(data, size, kind);
  if (!info.problem.empty()) return info;

  info.config.slot_size = static_cast<std::size_t>(h->slot_size);
  info.config.capacity = static_cast<std::size_t>(h->capacity);
  info.config.max_peers = h->max_peers;
  info.config.overflow = static_cast<Overflow>(h->overflow);
  info.head = h->head.load(std::memory_order_acquire);
  info.tail = h->tail.load(std::memory_order_acquire);
  info.stats = detail::stats_of(*h);
  info.peers = detail::peers_of(
      *h, reinterpret_cast<const detail::PeerSlot*>(static_cast<const std::byte*>(data) +
                                                    detail::kPeersOffset),
      nullptr);
  return info;
}

}  // namespace shmkit
