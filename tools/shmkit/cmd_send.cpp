// SPDX-License-Identifier: MIT
// `shmkit send NAME`: each line of stdin (without its newline) becomes one message on the
// channel NAME, so a shell script can feed a channel as it would a pipe. The handle leaves
// the channel at end of input: receivers then see the channel closed once it is drained.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include <fmt/format.h>

#include "channel_cli.hpp"
#include "cli.hpp"

namespace shmkit::cli {

int cmd_send(const SendArgs& args) {
  OpenChannel channel = open_channel(args.channel, Role::producer);
  const std::chrono::nanoseconds timeout = timeout_of(args.channel);
  std::uint64_t sent = 0;
  std::string line;
  while (std::getline(std::cin, line)) {
    const std::span<const std::byte> message{reinterpret_cast<const std::byte*>(line.data()),
                                              line.size()};
    const bool ok = std::visit(
        [&](auto& h) -> bool {
          if constexpr (std::is_same_v<std::decay_t<decltype(h)>, std::monostate>) {
            return false;
          } else {
            if (h.send(message, timeout)) return true;
            throw Error(h.closed() ? EPIPE : ETIMEDOUT, args.channel.name, "send",
                        h.closed() ? "every receiver has left"
                                   : fmt::format("no room after {} s", args.channel.timeout));
          }
        },
        channel.handle);
    if (!ok) break;
    ++sent;
  }
  if (std::cin.bad()) throw Error(EIO, "stdin", "read");
  if (args.verbose) fmt::print(stderr, "sent {} messages to {}\n", sent, args.channel.name);
  return 0;
}

}  // namespace shmkit::cli
