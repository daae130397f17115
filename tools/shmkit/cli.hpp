// SPDX-License-Identifier: MIT
// What the `shmkit` subcommands share: their arguments, one-line error reports, parsing of
// sizes and modes, and the table and JSON renderings of a listed segment (an arena or not).
//
// Each verb is `int cmd_<verb>(const <Verb>Args&)` in its own cmd_<verb>.cpp; main.cpp fills
// the Args from the command line (CLI11) and calls it. A verb returns its exit status
// (0 ok, 1 failed, 2 usage) and may throw shmkit::Error, which main reports in one line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "channel_cli.hpp"
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
  bool arena = false;
  std::string max_size;         ///< arena only; empty: the library's default
  std::uint32_t max_users = 0;  ///< arena only; 0: the library's default
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
struct CheckArgs {
  std::string name;
};
struct GcArgs {
  std::vector<std::string> names;  ///< only these; empty: every arena
  bool dry_run = false;
};
struct DemoArgs {};
struct SendArgs {
  ChannelArgs channel;
  bool verbose = false;
};
struct RecvArgs {
  ChannelArgs channel;
  std::uint64_t count = 0;  ///< stop after this many; 0: until closed
  bool follow = false;      ///< keep waiting when the producers have left
  bool flush = false;       ///< flush stdout after each message
};
struct BenchArgs {
  std::string layer;  ///< empty: the default layer
  bool json = false;
  bool quick = false;
  int cpu = -1;
  std::vector<std::string> transports;  ///< ipc: names; empty: all
  std::vector<std::string> sizes;       ///< ipc: "64", "4K", "1M"; empty: the default
  double duration = 0;                  ///< seconds per measurement; 0: the default
  std::string plot;                     ///< SVG file to write; empty: none
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
int cmd_check(const CheckArgs& args);
int cmd_gc(const GcArgs& args);
int cmd_demo(const DemoArgs& args);
int cmd_send(const SendArgs& args);
int cmd_recv(const RecvArgs& args);
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

// ---- Listing ----

/// What `ls` shows of an arena: its users and the bytes handed out.
struct ArenaSummary {
  std::uint32_t users = 0;  ///< joined processes, alive or dead
  std::uint32_t alive = 0;
  std::uint64_t in_use = 0, size = 0, max_size = 0;
};

/// What a segment holds, as far as `ls` looked.
enum class Content : std::uint8_t {
  segment,   ///< plain bytes (no arena header, or not readable by us)
  arena,     ///< a shmkit arena
  channel,   ///< a shmkit channel (Entry::channel says which kind)
  unprobed,  ///< System V: not looked at, since attaching would change its LPID and times
};

/// One listed segment: the kernel's view, plus the arena's when it holds one.
struct Entry {
  SegmentStat stat;
  Content content = Content::segment;
  std::optional<ArenaSummary> arena;  ///< set for a readable arena
  std::string arena_error;            ///< why an arena could not be read (then no summary)
  std::optional<ChannelInfo> channel; ///< set for a channel (inspect_channel)
};

/// Reads the channel in segment `name` without joining it; nullopt when it holds none or
/// cannot be read.
std::optional<ChannelInfo> probe_channel(const std::string& name);
/// The JSON object of a channel's header, counters and peers.
std::string channel_json(const ChannelInfo& c);
/// "producer", "consumer", "both" or "none".
const char* role_name(Role role);

/// Segment::list(), POSIX first then System V, each by name, with every POSIX segment probed
/// for an arena header (Arena::is_arena) and each arena summarised (Arena::inspect).
std::vector<Entry> list_entries();

/// Prints `entries` as an `lsipc`-like table with a header row, each line after `indent`.
void print_table(const std::vector<Entry>& entries, std::string_view indent = {});

// ---- JSON ----

/// Builds one JSON object field by field.
class JsonObject {
 public:
  void add_raw(std::string_view key, std::string_view json);
  void add_string(std::string_view key, std::string_view value);
  void add_bool(std::string_view key, bool value) { add_raw(key, value ? "true" : "false"); }
  template <class T>
  void add_number(std::string_view key, const T& value) {
    add_raw(key, fmt::format("{}", value));
  }
  template <class T>
  void add_number(std::string_view key, const std::optional<T>& value) {
    add_raw(key, value ? fmt::format("{}", *value) : "null");
  }
  std::string str() const { return "{" + text_ + "}"; }

 private:
  std::string text_;
};

/// Returns `stat` as a JSON object, every field, null where the namespace lacks it.
JsonObject stat_object(const SegmentStat& stat);
/// stat_object(stat).str().
std::string stat_json(const SegmentStat& stat);
/// "segment", "arena" or "unknown" (as the "type" field of ls and info).
const char* content_name(Content content);
/// Returns `text` as a JSON string literal, quotes included.
std::string json_string(std::string_view text);

}  // namespace shmkit::cli
