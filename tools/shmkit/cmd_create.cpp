// SPDX-License-Identifier: MIT
// `shmkit create NAME --size SIZE [--mode MODE] [--exclusive]`: makes a segment, or finds the
// one that is there (open_or_create grows a smaller POSIX or file object; System V cannot
// grow). Prints the name to reopen it by: for `sysv:private` that is the new `sysv:id=N`.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "cli.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::cli {

int cmd_create(const CreateArgs& args) {
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
