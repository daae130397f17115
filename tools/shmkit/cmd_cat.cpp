// SPDX-License-Identifier: MIT
// `shmkit cat NAME [--offset N] [--length N]`: the raw bytes of a segment on stdout. The
// segment is opened read-only, so looking can never change it.
#include <cerrno>
#include <cstdio>

#include "cli.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::cli {

int cmd_cat(const ReadArgs& args) {
  OpenOptions options;
  options.access = Access::read_only;
  const Segment segment = Segment::open(args.name, options);
  const Range range = parse_range(args.name, args.offset, args.length, segment.size());

  const auto bytes = segment.bytes().subspan(range.offset, range.length);
  if (std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size() ||
      std::fflush(stdout) != 0) {
    throw Error(errno, "stdout", "write");
  }
  return 0;
}

}  // namespace shmkit::cli
