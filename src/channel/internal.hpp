// SPDX-License-Identifier: MIT
// What the channel layer's files share and do not publish.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "shmkit/channel/channel.hpp"

namespace shmkit::detail {

/// "ring", "queue", "broadcast" (or "channel" for an unknown kind).
const char* kind_name(ChannelKind kind);

/// Returns what is wrong with the header at `base` (`available` bytes), "" when it is a
/// valid channel of `kind`. The bytes are foreign: every field is checked before use.
std::string channel_header_problem(const void* base, std::size_t available, ChannelKind kind);

/// The joined peers of the table `peers` (h.max_peers slots), each one's liveness checked
/// now; `me` (may be null) is marked self.
std::vector<ChannelPeer> peers_of(const ChannelHeader& h, const PeerSlot* peers,
                                  const PeerSlot* me);
/// The header's counters.
ChannelStats stats_of(const ChannelHeader& h) noexcept;

}  // namespace shmkit::detail
