// SPDX-License-Identifier: MIT
// `shmkit info NAME [--json]`: what the kernel knows of one segment, one field per line
// ("name: /foo"), and, when it holds a shmkit arena, what the arena's header says: its
// configuration, users (alive or dead), memory statistics, named objects and lock metering.
// Fields the namespace does not have show as "-".
//
// The arena is read with Arena::inspect: a read-only mapping that neither joins the arena
// nor takes its locks, so looking never changes it (and the figures are a snapshot). For a
// System V segment that attach does update its LPID and attach time, as any reader would.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "cli.hpp"
#include "shmkit/arena.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::cli {
namespace {

template <class T>
std::string value_or_dash(const std::optional<T>& value) {
  return value ? fmt::format("{}", *value) : "-";
}

std::string time_or_dash(const std::optional<std::int64_t>& seconds) {
  if (!seconds) return "-";
  return *seconds == 0 ? "never" : full_time(*seconds);
}

/// "field: value", or "field:" to open a section of indented lines.
void line(std::string_view field, const std::string& value) {
  if (value.empty()) {
    fmt::print("{}:\n", field);
  } else {
    fmt::print("{}: {}\n", field, value);
  }
}

std::string bytes(std::uint64_t n) { return fmt::format("{} ({})", n, human_size(n)); }

std::string ns_time(std::uint64_t ns) {
  return full_time(static_cast<std::int64_t>(ns / 1'000'000'000));
}

std::string yes_no(bool b) { return b ? "yes" : "no"; }

// ---- Text ----

void print_segment(const SegmentStat& s) {
  const auto user = [](std::uint32_t uid) { return fmt::format("{} ({})", uid, user_name(uid)); };
  line("name", display_name(s));
  line("namespace", to_string(s.ns));
  line("size", bytes(s.size));
  line("mode", fmt::format("{} ({})", octal_mode(s.mode), perms_string(s.mode)));
  line("uid", user(s.uid));
  line("gid", std::to_string(s.gid));
  line("cuid", s.cuid ? user(*s.cuid) : "-");
  line("cgid", value_or_dash(s.cgid));
  line("key", s.key ? fmt::format("0x{:08x}", static_cast<std::uint32_t>(*s.key)) : "-");
  line("id", value_or_dash(s.id));
  line("attach_count", value_or_dash(s.attach_count));
  line("creator_pid", value_or_dash(s.creator_pid));
  line("last_pid", value_or_dash(s.last_pid));
  line("attach_time", time_or_dash(s.attach_time));
  line("detach_time", time_or_dash(s.detach_time));
  line("change_time", full_time(s.change_time));
  line("modify_time", time_or_dash(s.modify_time));
  line("locked", yes_no(s.locked));
  line("removed", s.removed ? "yes (destroyed at last detach)" : "no");
  line("resident", s.resident ? bytes(*s.resident) : "-");
}

void print_arena(const ArenaInfo& a) {
  line("arena", "");
  line("  format_version", std::to_string(a.version));
  line("  size", bytes(a.size));
  line("  max_size", bytes(a.max_size));
  line("  autogrow", yes_no(a.autogrow));
  line("  max_users", std::to_string(a.max_users));
  line("  max_threads", std::to_string(a.max_threads));
  line("  mode", fmt::format("{} ({})", octal_mode(a.mode), perms_string(a.mode)));
  line("  attach_address",
       a.attach_address == 0 ? "- (any)" : fmt::format("0x{:x}", a.attach_address));
  line("  created", ns_time(a.created_ns));
  line("  root", a.root == 0 ? "0 (none)" : fmt::format("offset 0x{:x}", a.root));

  std::size_t alive = 0;
  for (const ArenaUser& u : a.users) alive += u.alive ? 1 : 0;
  line("users",
       fmt::format("{} ({} alive, {} dead)", a.users.size(), alive, a.users.size() - alive));
  for (const ArenaUser& u : a.users) {
    line(fmt::format("  pid {}", u.pid),
         fmt::format("{}, joined {}, {} heap{}", u.alive ? "alive" : "dead", ns_time(u.joined_ns),
                     u.heaps, u.heaps == 1 ? "" : "s"));
  }

  const ArenaStats& s = a.stats;
  line("memory", "");
  line("  in_use", bytes(s.in_use));
  line("  free", bytes(s.free));
  line("  metadata", bytes(s.metadata));
  line("  fragmentation", fmt::format("{:.1f}%", s.fragmentation * 100));
  line("  pages",
       fmt::format("{} free in {} runs (largest {}), {} small, {} large", s.pages_free, s.free_runs,
                   bytes(s.largest_free_run), s.pages_small, s.pages_large));
  line("  large_blocks", std::to_string(s.large_blocks));
  line("  heaps", std::to_string(s.heaps));
  line("  size_classes", s.classes.empty() ? "none" : "");
  if (!s.classes.empty()) {
    fmt::print("    {:>10} {:>6} {:>8} {:>8}\n", "BLOCK_SIZE", "SPANS", "BLOCKS", "IN_USE");
    for (const ArenaStats::SizeClass& c : s.classes) {
      fmt::print("    {:>10} {:>6} {:>8} {:>8}\n", c.block_size, c.spans, c.blocks, c.in_use);
    }
  }

  line("named_objects", std::to_string(a.names.size()));
  for (const std::string& name : a.names) fmt::print("  {}\n", json_string(name));

  if (!a.metering) {
    line("arena_lock", "not metered (create the arena with metering on)");
  } else {
    const double wait_ms = static_cast<double>(a.arena_lock_wait_ns) / 1e6;
    line("arena_lock",
         fmt::format("{} acquisitions, {} contended, {:.3f} ms waiting, {} owner deaths",
                     a.arena_lock_acquisitions, a.arena_lock_contended, wait_ms,
                     a.arena_lock_owner_deaths));
  }
}

void print_channel(const ChannelInfo& c) {
  line("channel", "");
  line("  kind", c.kind);
  if (!c.problem.empty()) {
    line("  error", c.problem);
    return;
  }
  line("  slot_size", bytes(c.config.slot_size));
  line("  capacity", fmt::format("{} slots", c.config.capacity));
  line("  max_peers", std::to_string(c.config.max_peers));
  if (c.kind == "broadcast") {
    line("  overflow", c.config.overflow == Overflow::overwrite ? "overwrite" : "block");
  }
  line("  published", std::to_string(c.head));
  if (c.kind != "broadcast") line("  queued", std::to_string(c.head - c.tail));
  line("  peer_deaths", std::to_string(c.stats.peer_deaths));
  line("  lost", std::to_string(c.stats.lost));
  line("peers", std::to_string(c.peers.size()));
  for (const ChannelPeer& p : c.peers) {
    line(fmt::format("  pid {}", p.pid),
         fmt::format("{}, {}, {} messages{}", role_name(p.role), p.alive ? "alive" : "dead",
                     p.messages, p.lost != 0 ? fmt::format(", {} lost", p.lost) : ""));
  }
}

// ---- JSON ----

std::string arena_json(const ArenaInfo& a) {
  JsonObject o;
  o.add_number("version", a.version);
  o.add_number("size", a.size);
  o.add_number("max_size", a.max_size);
  o.add_bool("autogrow", a.autogrow);
  o.add_number("max_users", a.max_users);
  o.add_number("max_threads", a.max_threads);
  o.add_string("mode", octal_mode(a.mode));
  o.add_raw("attach_address",
            a.attach_address == 0 ? "null" : json_string(fmt::format("0x{:x}", a.attach_address)));
  o.add_number("created_ns", a.created_ns);
  o.add_number("root", a.root);

  std::string users;
  for (const ArenaUser& u : a.users) {
    JsonObject uo;
    uo.add_number("pid", u.pid);
    uo.add_bool("alive", u.alive);
    uo.add_number("joined_ns", u.joined_ns);
    uo.add_number("heaps", u.heaps);
    users += (users.empty() ? "" : ",") + uo.str();
  }
  o.add_raw("users", "[" + users + "]");

  const ArenaStats& s = a.stats;
  JsonObject so;
  so.add_number("size", s.size);
  so.add_number("max_size", s.max_size);
  so.add_number("metadata", s.metadata);
  so.add_number("in_use", s.in_use);
  so.add_number("free", s.free);
  so.add_raw("fragmentation", fmt::format("{:.4f}", s.fragmentation));
  so.add_number("pages_free", s.pages_free);
  so.add_number("pages_small", s.pages_small);
  so.add_number("pages_large", s.pages_large);
  so.add_number("free_runs", s.free_runs);
  so.add_number("largest_free_run", s.largest_free_run);
  so.add_number("large_blocks", s.large_blocks);
  so.add_number("users", s.users);
  so.add_number("heaps", s.heaps);
  std::string classes;
  for (const ArenaStats::SizeClass& c : s.classes) {
    JsonObject co;
    co.add_number("block_size", c.block_size);
    co.add_number("spans", c.spans);
    co.add_number("blocks", c.blocks);
    co.add_number("in_use", c.in_use);
    classes += (classes.empty() ? "" : ",") + co.str();
  }
  so.add_raw("classes", "[" + classes + "]");
  o.add_raw("stats", so.str());

  std::string names;
  for (const std::string& name : a.names) names += (names.empty() ? "" : ",") + json_string(name);
  o.add_raw("names", "[" + names + "]");

  if (a.metering) {
    JsonObject lo;
    lo.add_number("acquisitions", a.arena_lock_acquisitions);
    lo.add_number("contended", a.arena_lock_contended);
    lo.add_number("wait_ns", a.arena_lock_wait_ns);
    lo.add_number("owner_deaths", a.arena_lock_owner_deaths);
    o.add_raw("arena_lock", lo.str());
  } else {
    o.add_raw("arena_lock", "null");
  }
  return o.str();
}

}  // namespace

int cmd_info(const InfoArgs& args) {
  const SegmentStat s = Segment::stat(args.name);  // a missing name fails here, in one line
  // Named explicitly, a System V segment is probed too (ls leaves them alone).
  const bool arena = Arena::is_arena(args.name);
  std::optional<ArenaInfo> info;
  std::optional<Error> failure;
  if (arena) {
    try {
      info = Arena::inspect(args.name);
    } catch (const Error& e) {
      failure = e;  // show the segment anyway, then say why the arena could not be read
    }
  }

  const std::optional<ChannelInfo> channel = arena ? std::nullopt : probe_channel(args.name);
  const std::string type = arena ? "arena" : channel ? channel->kind : "segment";
  if (args.json) {
    JsonObject o = stat_object(s);
    o.add_string("type", type);
    if (info) {
      o.add_raw("arena", arena_json(*info));
    } else if (failure) {
      JsonObject eo;
      eo.add_string("error", failure->cause());
      o.add_raw("arena", eo.str());
    } else {
      o.add_raw("arena", "null");
    }
    o.add_raw("channel", channel ? channel_json(*channel) : "null");
    fmt::print("{}\n", o.str());
  } else {
    print_segment(s);
    line("type", type);
    if (info) print_arena(*info);
    if (channel) print_channel(*channel);
  }
  return failure ? report(*failure) : 0;
}

}  // namespace shmkit::cli
