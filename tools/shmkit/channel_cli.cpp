// SPDX-License-Identifier: MIT
// Opening a channel of any kind by name for `shmkit send` / `shmkit recv`.
#include "channel_cli.hpp"

#include <cerrno>
#include <chrono>

#include <fmt/format.h>

#include "cli.hpp"
#include "shmkit/error.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::cli {
namespace {

// The kind of the channel at `data`, or "" when nothing is there (ENOENT is thrown by the
// caller); a foreign object is an error naming it.
std::string kind_at(const std::string& name, const void* data, std::size_t size) {
  const std::optional<ChannelInfo> info = inspect_channel(data, size);
  if (!info) throw Error(EINVAL, name, "open channel", "not a shmkit channel");
  if (!info->problem.empty()) throw Error(EINVAL, name, "open channel", info->problem);
  return info->kind;
}

// The kind of the existing channel, or "" when there is none by that name.
std::string existing_kind(const ChannelArgs& args, Arena* arena) {
  if (arena != nullptr) {
    const auto* anchor = arena->find<detail::ChannelAnchor>(args.name);
    if (anchor == nullptr) return "";
    if (anchor->offset == 0 || anchor->offset >= arena->size()) {
      throw Error(EINVAL, args.name, "open channel", "the arena's entry points outside it");
    }
    return kind_at(args.name, arena->at(anchor->offset), arena->size() - anchor->offset);
  }
  try {
    Segment seg = Segment::open(args.name, OpenOptions{.access = Access::read_only});
    return kind_at(args.name, seg.data(), seg.size());
  } catch (const Error& e) {
    if (e.errnum() == ENOENT) return "";
    throw;
  }
}

Wait parse_wait(const std::string& text) {
  if (text == "busy") return Wait::busy_poll;
  if (text == "block") return Wait::block;
  if (text == "spin") return Wait::spin_then_block;
  throw Error(EINVAL, text, "parse --wait", "expected busy, block or spin");
}

template <class Channel>
Channel open_as(const ChannelArgs& args, Arena* arena, bool create, Role role) {
  if (!create) return arena != nullptr ? Channel::open(*arena, args.name, role)
                                       : Channel::open(args.name, role);
  ChannelConfig config;
  config.slot_size = parse_bytes(args.name, args.slot_size, "slot size");
  config.capacity = args.capacity;
  config.max_peers = args.max_peers;
  config.overflow = args.overwrite ? Overflow::overwrite : Overflow::block;
  if (arena != nullptr) return Channel::open_or_create(*arena, args.name, config, role);
  CreateOptions options;
  options.mode = parse_mode(args.name, args.mode);
  return Channel::open_or_create(args.name, config, role, options);
}

}  // namespace

std::chrono::nanoseconds timeout_of(const ChannelArgs& args) {
  if (args.timeout < 0) return ChannelBase::kForever;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(args.timeout));
}

OpenChannel open_channel(const ChannelArgs& args, Role role) {
  OpenChannel out;
  if (!args.arena.empty()) out.arena.emplace(Arena::open(args.arena));
  Arena* arena = out.arena ? &*out.arena : nullptr;
  std::string kind = existing_kind(args, arena);
  const bool create = kind.empty();
  if (create) {
    if (args.create.empty()) {
      throw Error(ENOENT, args.name, "open channel",
                  "no such channel (--create queue|ring|broadcast makes one)");
    }
    kind = args.create;
  }
  if (kind == "queue") {
    out.handle = open_as<Queue>(args, arena, create, role);
  } else if (kind == "ring") {
    out.handle = open_as<Ring>(args, arena, create, role);
  } else if (kind == "broadcast") {
    out.handle = open_as<Broadcast>(args, arena, create, role);
  } else {
    throw Error(EINVAL, kind, "parse --create", "expected queue, ring or broadcast");
  }
  const Wait wait = parse_wait(args.wait);
  std::visit([wait](auto& h) {
    if constexpr (!std::is_same_v<std::decay_t<decltype(h)>, std::monostate>) h.set_wait(wait);
  }, out.handle);
  return out;
}

}  // namespace shmkit::cli
