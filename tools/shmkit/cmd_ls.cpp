// SPDX-License-Identifier: MIT
// `shmkit ls [--json]`: every shared-memory segment on the machine, POSIX (/dev/shm) and
// System V alike, as an lsipc-like table or one JSON object. Segment::list() does the work;
// this file chooses the order, asks each POSIX segment whether it holds an arena
// (Arena::is_arena, then Arena::inspect for its users and bytes in use) and renders it.
//
// System V segments are not probed: attaching one, even read-only, rewrites its LPID and
// attach times, and `ls` must not change what the next `ls` (or ipcs) shows. `shmkit info`
// looks inside one when asked by name.
#include <algorithm>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli.hpp"
#include "shmkit/arena.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::cli {

std::vector<Entry> list_entries() {
  std::vector<SegmentStat> stats = Segment::list();
  // POSIX first, then System V, each by name, so two runs are easy to compare.
  std::stable_sort(stats.begin(), stats.end(), [](const SegmentStat& a, const SegmentStat& b) {
    if (a.ns != b.ns) return a.ns < b.ns;
    if (a.ns == Namespace::sysv && a.id && b.id) return *a.id < *b.id;
    return a.name < b.name;
  });

  std::vector<Entry> entries;
  entries.reserve(stats.size());
  for (SegmentStat& s : stats) {
    Entry e;
    e.stat = std::move(s);
    if (e.stat.ns == Namespace::sysv) {
      e.content = Content::unprobed;
    } else if (Arena::is_arena(e.stat.name)) {
      e.content = Content::arena;
      try {
        const ArenaInfo info = Arena::inspect(e.stat.name);
        ArenaSummary summary;
        summary.users = static_cast<std::uint32_t>(info.users.size());
        summary.alive = static_cast<std::uint32_t>(std::count_if(
            info.users.begin(), info.users.end(), [](const ArenaUser& u) { return u.alive; }));
        summary.in_use = info.stats.in_use;
        summary.size = info.size;
        summary.max_size = info.max_size;
        e.arena = summary;
      } catch (const Error& error) {
        // Being initialised, another format version, or removed meanwhile: still list it.
        e.arena_error = error.cause();
      }
    } else if ((e.channel = probe_channel(e.stat.name))) {
      e.content = Content::channel;
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

namespace {

std::string arena_json(const Entry& e) {
  if (e.content != Content::arena) return "null";
  JsonObject o;
  if (!e.arena) {
    o.add_string("error", e.arena_error);
    return o.str();
  }
  o.add_number("users", e.arena->users);
  o.add_number("alive", e.arena->alive);
  o.add_number("in_use", e.arena->in_use);
  o.add_number("size", e.arena->size);
  o.add_number("max_size", e.arena->max_size);
  return o.str();
}

}  // namespace

int cmd_ls(const LsArgs& args) {
  const std::vector<Entry> entries = list_entries();
  if (args.json) {
    std::string out = "{\"segments\":[";
    for (std::size_t i = 0; i < entries.size(); ++i) {
      JsonObject o = stat_object(entries[i].stat);
      o.add_string("type", entries[i].channel ? entries[i].channel->kind
                                               : content_name(entries[i].content));
      o.add_raw("arena", arena_json(entries[i]));
      o.add_raw("channel", entries[i].channel ? channel_json(*entries[i].channel) : "null");
      out += (i == 0 ? "" : ",") + o.str();
    }
    fmt::print("{}]}}\n", out);
    return 0;
  }
  print_table(entries);
  return 0;
}

}  // namespace shmkit::cli
