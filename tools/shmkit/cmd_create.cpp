// SPDX-License-Identifier: MIT
// `shmkit create NAME --size SIZE [--mode MODE] [--exclusive]`: makes a segment, or finds the
// one that is there (open_or_create grows a smaller POSIX or file object; System V cannot
// grow). Prints the name to reopen it by: for `sysv:private` that is the new `sysv:id=N`.
//
// With --arena [--max-size SIZE] [--max-users N] it makes a shared arena instead
// (Arena::create, or Arena::open_or_create without --exclusive). The arena stays when the
// command exits: it joins to create it and leaves again, so `ls` shows it with 0/0 users.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "cli.hpp"
#include "shmkit/arena.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::cli {
namespace {

int create_arena(const CreateArgs& args) {
  const Name name = Name::parse(args.name);
  if (name.sysv == SysvForm::private_key) {
    return report(args.name + ": an arena needs a name others can open it by");
  }
  ArenaConfig config;
  config.size = parse_bytes(args.name, args.size, "size");
  if (!args.max_size.empty()) {
    config.max_size = parse_bytes(args.name, args.max_size, "max size");
    if (config.max_size < config.size) {
      return report(fmt::format("{}: the max size ({}) is below the size ({})", args.name,
                                args.max_size, args.size));
    }
    config.autogrow = config.max_size > config.size;
  }
  if (args.max_users != 0) config.max_users = args.max_users;
  config.mode = parse_mode(args.name, args.mode);

  Arena arena;
  if (args.exclusive) {
    arena = Arena::create(args.name, config);
  } else {
    // open_or_create would format an all-zero segment as an arena (and grow a smaller one):
    // refuse to turn a plain segment into an arena behind the user's back.
    bool exists = false;
    try {
      (void)Segment::stat(args.name);
      exists = true;
    } catch (const Error&) {
      // Missing (or unreadable): open_or_create below says which.
    }
    if (exists && !Arena::is_arena(args.name)) {
      return report(args.name + ": exists and is not an arena (remove it, or pick another name)");
    }
    arena = Arena::open_or_create(args.name, config);
  }

  fmt::print("{} arena {} ({}, max {}, {})\n", arena.created() ? "created" : "found",
             arena.name().str(), human_size(arena.size()), human_size(arena.max_size()),
             perms_string(arena.segment().stat().mode));
  return 0;
}

}  // namespace

int cmd_create(const CreateArgs& args) {
  if (args.arena) return create_arena(args);
  // Check every argument before touching anything, so a typo changes nothing.
  const Name name = Name::parse(args.name);
  const std::size_t size = parse_bytes(args.name, args.size, "size");
  CreateOptions options;
  options.mode = parse_mode(args.name, args.mode);

  Segment segment;
  std::optional<std::uint64_t> size_before;  // only to tell the user whether it grew
  if (args.exclusive) {
    options.exclusive = true;
    segment = Segment::create(args.name, size, options);
  } else {
    try {
      if (name.sysv != SysvForm::private_key) size_before = Segment::stat(args.name).size;
    } catch (const Error&) {
      // Missing (or unreadable): open_or_create below says which.
    }
    segment = Segment::open_or_create(args.name, size, options);
  }

  const SegmentStat stat = segment.stat();
  const std::string shown =
      name.sysv == SysvForm::private_key ? display_name(stat) : segment.name().str();
  const std::string what = fmt::format("{}, {}", human_size(stat.size), perms_string(stat.mode));
  if (segment.created()) {
    fmt::print("created {} ({})\n", shown, what);
  } else if (size_before && *size_before < stat.size) {
    fmt::print("found {} and grew it from {} ({})\n", shown, human_size(*size_before), what);
  } else {
    fmt::print("found {} ({})\n", shown, what);
  }
  return 0;
}

}  // namespace shmkit::cli
