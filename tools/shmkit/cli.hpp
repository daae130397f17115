// SPDX-License-Identifier: MIT
// What the `shmkit` subcommands share: their arguments, one-line error reports, parsing of
// sizes and modes, and the table and JSON renderings of a SegmentStat.
//
// Each verb is `int cmd_<verb>(const <Verb>Args&)` in its own cmd_<verb>.cpp; main.cpp fills
// the Args from the command line (CLI11) and calls it. A verb returns its exit status
// (0 ok, 1 failed, 2 usage) and may throw shmkit::Error, which main reports in one line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "shmkit/error.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::cli {

// ---- Arguments of each verb ----

struct LsArgs {
  bool json = false;
};
struct InfoArgs {
  std::string name;
  bool json = false;
};
struct CreateArgs {
  std::string name;
  std::string size;
  std::string mode = "0600";
  bool exclusive = false;
};
struct RmArgs {
  std::vector<std::string> names;
  bool verbose = false;
};
struct ChmodArgs {
  std::string mode;
  std::string name;
  bool verbose = false;
};
struct WriteArgs {
  std::string name;
  std::string offset = "0";
  bool verbose = false;
};
struct ReadArgs {  ///< cat and dump
  std::string name;
  std::string offset = "0";
  std::string length;  ///< empty: to the end
};
struct WaitArgs {
  std::string name;
};
struct DemoArgs {};
struct BenchArgs {
  std::string layer;  ///< empty: the default layer
  bool json = false;
  bool quick = false;
  int cpu = -1;
};

int cmd_ls(const LsArgs& args);
int cmd_info(const InfoArgs& args);
int cmd_create(const CreateArgs& args);
int cmd_rm(const RmArgs& args);
int cmd_chmod(const ChmodArgs& args);
int cmd_write(const WriteArgs& args);
int cmd_cat(const ReadArgs& args);
int cmd_dump(const ReadArgs& args);
int cmd_wait(const WaitArgs& args);
int cmd_demo(const DemoArgs& args);
int cmd_bench(const BenchArgs& args);

/// The layers `shmkit bench` can run (empty when benchmarks were not built).
std::vector<std::string> bench_layers();

// ---- Errors ----

/// Returns the one-line report of `error` without the "shmkit: " prefix, e.g.
/// "/foo: no such segment" or "/foo: grow: No space left on device".
std::string describe(const Error& error);

/// Prints "shmkit: <describe(error)>" to stderr and returns 1.
int report(const Error& error);
/// Prints "shmkit: <message>" to stderr and returns 1.
int report(std::string_view message);

// ---- Parsing ----

/// Parses an octal mode ("600", "0644") meant for `object`. Throws Error(EINVAL, object,
/// "parse mode '<text>'", why), which report() shows as "/foo: bad mode '0999': …".
std::uint32_t parse_mode(const std::string& object, std::string_view text);

/// Parses a byte count ("4096", "64K", "0x80000") given as `what` ("size", "offset") for
/// `object`, with parse_size. Throws Error as parse_mode does.
std::size_t parse_bytes(const std::string& object, std::string_view text, const char* what);

/// A byte range [offset, offset + length) checked against a segment of `size` bytes.
struct Range {
  std::size_t offset = 0;
  std::size_t length = 0;
};
/// Parses `offset` and `length` (sizes as parse_size takes them; an empty `length` means
/// "to the end") and checks the range lies inside `size` bytes. Throws Error naming `object`.
Range parse_range(const std::string& object, std::string_view offset, std::string_view length,
                  std::size_t size);

// ---- Formatting ----

/// "512B", "4.0K", "1.5M", "2.0G".
std::string human_size(std::uint64_t bytes);
/// "rw-r-----" from the 0777 bits.
std::string perms_string(std::uint32_t mode);
/// "0600".
std::string octal_mode(std::uint32_t mode);
/// The user name of `uid`, or the number when it has none.
std::string user_name(std::uint32_t uid);
/// "2024-11-22 07:31:02" in local time.
std::string full_time(std::int64_t seconds);
/// The name to show and to reopen by: Name::str() for POSIX and file, "sysv:0x…" for a keyed
/// System V segment, "sysv:id=N" for a private one (key 0).
std::string display_name(const SegmentStat& stat);

/// Prints `stats` as an `lsipc`-like table with a header row, each line after `indent`.
void print_table(const std::vector<SegmentStat>& stats, std::string_view indent = {});

/// Returns `stat` as one JSON object, every field, null where the namespace lacks it.
std::string stat_json(const SegmentStat& stat);
/// Returns `text` as a JSON string literal, quotes included.
std::string json_string(std::string_view text);

}  // namespace shmkit::cli
