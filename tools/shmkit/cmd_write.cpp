// SPDX-License-Identifier: MIT
// `shmkit write NAME [--offset N]`: copies stdin into a segment at an offset. The input is
// read in full before a byte of the segment changes, so input that does not fit is an error
// that leaves the segment as it was, never a silent truncation.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::cli {

int cmd_write(const WriteArgs& args) {
  Segment segment = Segment::open(args.name);
  const Range range = parse_range(args.name, args.offset, {}, segment.size());

  // Stop one byte past what fits: enough to know it does not, and memory stays bounded.
  std::vector<char> input;
  std::size_t got = 0;
  while (got <= range.length) {
    input.resize(got + std::min<std::size_t>(range.length + 1 - got, 64 * 1024));
    const std::size_t n = std::fread(input.data() + got, 1, input.size() - got, stdin);
    got += n;
    if (n == 0) break;
  }
  if (std::ferror(stdin)) throw Error(errno, "stdin", "read");
  if (got > range.length) {
    throw Error(EFBIG, args.name, "write",
                fmt::format("input does not fit in the {} bytes from offset {} to the end "
                            "(segment is {} bytes); nothing written",
                            range.length, range.offset, segment.size()));
  }

  std::memcpy(segment.bytes().data() + range.offset, input.data(), got);
  if (args.verbose) fmt::print("wrote {} bytes to {} at offset {}\n", got, args.name, range.offset);
  return 0;
}

}  // namespace shmkit::cli
