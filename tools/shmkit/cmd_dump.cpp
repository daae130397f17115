// SPDX-License-Identifier: MIT
// `shmkit dump NAME [--offset N] [--length N]`: hex and text like `xxd`, one line per 16
// bytes at their offset in the segment; a run of lines equal to the one above prints as a
// single `*` (as od and hexdump do), and a last line gives the end offset.
//
//   00000000: 6865 6c6c 6f0a 0000 0000 0000 0000 0000  hello...........
//   00000010: 0000 0000 0000 0000 0000 0000 0000 0000  ................
//   *
//   00001000
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "cli.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::cli {
namespace {

constexpr std::size_t kPerLine = 16;

std::string format_line(std::size_t offset, const unsigned char* line, std::size_t n) {
  std::string out = fmt::format("{:08x}:", offset);
  for (std::size_t i = 0; i < kPerLine; ++i) {
    if (i % 2 == 0) out += ' ';
    out += i < n ? fmt::format("{:02x}", line[i]) : "  ";
  }
  out += "  ";
  for (std::size_t i = 0; i < n; ++i) {
    out += (line[i] >= 0x20 && line[i] < 0x7f) ? static_cast<char>(line[i]) : '.';
  }
  return out;
}

}  // namespace

int cmd_dump(const ReadArgs& args) {
  OpenOptions options;
  options.access = Access::read_only;
  const Segment segment = Segment::open(args.name, options);
  const Range range = parse_range(args.name, args.offset, args.length, segment.size());
  const auto* base = static_cast<const unsigned char*>(segment.data()) + range.offset;

  std::array<unsigned char, kPerLine> previous{};
  bool have_previous = false;
  bool folded = false;
  for (std::size_t at = 0; at < range.length; at += kPerLine) {
    const std::size_t n = std::min(kPerLine, range.length - at);
    // Copy first: another process may be writing, and hex and text must show the same bytes.
    std::array<unsigned char, kPerLine> line{};
    std::memcpy(line.data(), base + at, n);
    if (have_previous && n == kPerLine && line == previous) {
      if (!folded) fmt::print("*\n");
      folded = true;
      continue;
    }
    fmt::print("{}\n", format_line(range.offset + at, line.data(), n));
    previous = line;
    have_previous = n == kPerLine;
    folded = false;
  }
  fmt::print("{:08x}\n", range.offset + range.length);
  return 0;
}

}  // namespace shmkit::cli
