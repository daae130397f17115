// SPDX-License-Identifier: MIT
// inspect_channel: a channel's header and peers read from any mapping, without joining,
// locking or writing — what `shmkit info` and `shmkit ls` show.
#include <cstring>

#include "channel/internal.hpp"
#include "os/os.hpp"

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
  info.stats.published = info.head;
  info.stats.peer_deaths = h->peer_deaths.load(std::memory_order_acquire);
  info.stats.lost = h->lost.load(std::memory_order_acquire);
  info.stats.producers = h->producers.load(std::memory_order_acquire);
  info.stats.consumers = h->consumers.load(std::memory_order_acquire);

  const auto* peers = reinterpret_cast<const detail::PeerSlot*>(
      static_cast<const std::byte*>(data) + detail::kPeersOffset);
  for (std::uint32_t i = 0; i < h->max_peers; ++i) {
    const detail::PeerSlot& p = peers[i];
    const auto pid = static_cast<std::int32_t>(p.owner.load(std::memory_order_acquire));
    if (pid == 0) continue;
    ChannelPeer peer;
    peer.pid = pid;
    peer.role = p.role <= 3 ? static_cast<Role>(p.role) : Role::none;
    const std::uint64_t started = os::process_start_time(pid);
    const std::uint64_t recorded = p.start_time.load(std::memory_order_acquire);
    peer.alive = started != 0 && (recorded == 0 || recorded == started);
    peer.self = false;
    peer.messages = p.messages.load(std::memory_order_relaxed);
    peer.lost = p.lost.load(std::memory_order_relaxed);
    info.peers.push_back(peer);
  }
  return info;
}

}  // namespace shmkit
