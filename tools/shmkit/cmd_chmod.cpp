// SPDX-License-Identifier: MIT
// `shmkit chmod MODE NAME`: changes a segment's permission bits. The API changes modes
// through an open Segment (fchmod, or IPC_SET for System V), so this opens it read-only:
// the owner may change the mode without having write permission.
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "cli.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::cli {

int cmd_chmod(const ChmodArgs& args) {
  const std::uint32_t mode = parse_mode(args.name, args.mode);
  OpenOptions options;
  options.access = Access::read_only;
  Segment segment = Segment::open(args.name, options);

  const std::uint32_t before = segment.stat().mode;
  segment.chmod(mode);
  if (args.verbose) {
    fmt::print("{}: mode {} ({}) -> {} ({})\n", args.name, octal_mode(before), perms_string(before),
               octal_mode(mode), perms_string(mode));
  }
  return 0;
}

}  // namespace shmkit::cli
