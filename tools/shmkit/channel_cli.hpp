// SPDX-License-Identifier: MIT
// What `shmkit send` and `shmkit recv` share: finding a channel by name (in a segment of
// its own or in an arena), learning its kind from its header, creating it when asked, and
// holding the handle with whatever it lives in.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include "shmkit/arena.hpp"
#include "shmkit/channel/broadcast.hpp"
#include "shmkit/channel/queue.hpp"
#include "shmkit/channel/ring.hpp"

namespace shmkit::cli {

/// How to find (or make) a channel: the options send and recv share.
struct ChannelArgs {
  std::string name;
  std::string arena;            ///< the arena holding the channel; empty: a segment of its own
  std::string create;           ///< "queue", "ring" or "broadcast": create it if missing
  std::string slot_size = "4K"; ///< when creating
  std::uint32_t capacity = 1024;
  std::uint32_t max_peers = 64;
  bool overwrite = false;       ///< broadcast: lapped subscribers lose messages
  std::string mode = "0600";
  std::string wait = "spin";    ///< busy, block or spin
  double timeout = -1;          ///< seconds a call may wait; negative: forever
};

/// A joined handle of any kind, and the arena it lives in (declared first: it outlives it).
struct OpenChannel {
  std::optional<Arena> arena;
  std::variant<std::monostate, Ring, Queue, Broadcast> handle;
};

/// args.timeout as a channel call's timeout (kForever when negative).
std::chrono::nanoseconds timeout_of(const ChannelArgs& args);

/// Opens args.name (creating it with args.create when missing) and joins it as `role`.
/// Throws Error: ENOENT without --create, EINVAL when the object is not a channel …
OpenChannel open_channel(const ChannelArgs& args, Role role);

}  // namespace shmkit::cli
