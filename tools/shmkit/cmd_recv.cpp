// SPDX-License-Identifier: MIT
// `shmkit recv NAME [--count N]`: prints each message of the channel NAME on a line of its
// own, until N were printed or the channel is closed (every producer left or died, and
// nothing is queued) — like reading a pipe to its end. --follow keeps waiting for new
// producers instead. A Broadcast is read as a subscriber: messages sent after it joined.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "channel_cli.hpp"
#include "cli.hpp"

namespace shmkit::cli {
namespace {

void print_message(std::span<const std::byte> bytes) {
  if (!bytes.empty()) std::fwrite(bytes.data(), 1, bytes.size(), stdout);
  std::fputc('\n', stdout);
}

// Receives and prints one message; false when none came (timeout or closed).
template <class Channel>
bool receive_one(Channel& h, std::chrono::nanoseconds timeout, std::vector<std::byte>& buffer) {
  if constexpr (std::is_same_v<Channel, Broadcast>) {
    // A subscriber copies first: the producer may overwrite a slot being read.
    buffer.resize(h.slot_size());
    const std::optional<std::size_t> n = h.receive(std::span<std::byte>(buffer), timeout);
    if (!n) return false;
    print_message({buffer.data(), *n});
  } else {
    const ChannelBase::View v = h.receive(timeout);
    if (!v) return false;
    print_message(v.bytes());
    h.release();
  }
  return true;
}

}  // namespace

int cmd_recv(const RecvArgs& args) {
  OpenChannel channel = open_channel(args.channel, Role::consumer);
  const std::chrono::nanoseconds timeout = timeout_of(args.channel);
  std::vector<std::byte> buffer;
  std::uint64_t received = 0;
  int status = 0;
  std::visit(
      [&](auto& h) {
        if constexpr (!std::is_same_v<std::decay_t<decltype(h)>, std::monostate>) {
          while (args.count == 0 || received < args.count) {
            if (receive_one(h, timeout, buffer)) {
              ++received;
              if (args.flush) std::fflush(stdout);
              continue;
            }
            if (!h.closed()) {
              status = report(Error(ETIMEDOUT, args.channel.name, "receive",
                                    fmt::format("nothing after {} s", args.channel.timeout)));
              return;
            }
            if (!args.follow) return;  // closed and drained: the end, as a pipe's
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
          }
        }
      },
      channel.handle);
  std::fflush(stdout);
  return status;
}

}  // namespace shmkit::cli
