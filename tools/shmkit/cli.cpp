// SPDX-License-Identifier: MIT
// Helpers shared by the subcommands: error lines, size/mode/range parsing, and the ways a
// listed segment is shown (lsipc-like table, JSON). Nothing here maps or changes a segment.
#include "cli.hpp"

#include <pwd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>

#include <fmt/format.h>

namespace shmkit::cli {

// ---- Errors ----

std::string describe(const Error& error) {
  const std::string& op = error.operation();
  std::string what;
  if (op.starts_with("parse ")) {
    what = fmt::format("bad {}: {}", op.substr(6), error.cause());
  } else if (error.errnum() == ENOENT && op.find("ftok") == std::string::npos) {
    what = "no such segment";
  } else if (error.errnum() == EEXIST) {
    what = "already exists";
  } else if (error.errnum() == EACCES) {
    // Opening is the usual place to be refused; elsewhere the operation tells what was refused.
    what = (op.empty() || op == "open") ? "permission denied" : op + ": permission denied";
  } else {
    what = op.empty() ? error.cause() : op + ": " + error.cause();
  }
  return error.object().empty() ? what : error.object() + ": " + what;
}

int report(const Error& error) { return report(describe(error)); }

int report(std::string_view message) {
  std::fflush(stdout);
  fmt::print(stderr, "shmkit: {}\n", message);
  return 1;
}

// ---- Parsing ----

std::uint32_t parse_mode(const std::string& object, std::string_view text) {
  std::uint32_t mode = 0;
  const bool octal =
      !text.empty() && text.size() <= 4 &&
      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '7'; });
  if (octal) {
    for (char c : text) mode = mode * 8 + static_cast<std::uint32_t>(c - '0');
  }
  if (!octal || mode > 0777) {
    throw Error(EINVAL, object, fmt::format("parse mode '{}'", text),
                "expected octal permission bits like 0644");
  }
  return mode;
}

std::size_t parse_bytes(const std::string& object, std::string_view text, const char* what) {
  try {
    return parse_size(text);
  } catch (const Error& e) {
    throw Error(EINVAL, object, fmt::format("parse {} '{}'", what, text), e.cause());
  }
}

Range parse_range(const std::string& object, std::string_view offset, std::string_view length,
                  std::size_t size) {
  Range range;
  range.offset = parse_bytes(object, offset, "offset");
  if (range.offset > size) {
    throw Error(EINVAL, object, "",
                fmt::format("offset {} is past the end ({} bytes)", range.offset, size));
  }
  range.length = length.empty() ? size - range.offset : parse_bytes(object, length, "length");
  if (range.length > size - range.offset) {
    throw Error(EINVAL, object, "",
                fmt::format("{} bytes at offset {} run past the end ({} bytes)", range.length,
                            range.offset, size));
  }
  return range;
}

// ---- Formatting ----

std::string human_size(std::uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{}B", bytes);
  constexpr std::array<char, 6> kUnits = {'K', 'M', 'G', 'T', 'P', 'E'};
  double value = static_cast<double>(bytes) / 1024;
  std::size_t unit = 0;
  while (value >= 1024 && unit + 1 < kUnits.size()) {
    value /= 1024;
    ++unit;
  }
  return fmt::format("{:.1f}{}", value, kUnits[unit]);
}

std::string perms_string(std::uint32_t mode) {
  std::string s = "rwxrwxrwx";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((mode & (0400u >> i)) == 0) s[i] = '-';
  }
  return s;
}

std::string octal_mode(std::uint32_t mode) { return fmt::format("{:04o}", mode & 07777); }

std::string user_name(std::uint32_t uid) {
  static std::map<std::uint32_t, std::string> cache;  // ls asks once per segment
  if (auto it = cache.find(uid); it != cache.end()) return it->second;
  std::array<char, 1024> buf{};
  passwd pw{};
  passwd* found = nullptr;
  std::string name = std::to_string(uid);
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
    name = found->pw_name;
  }
  return cache.emplace(uid, name).first->second;
}

namespace {

std::string format_time(std::int64_t seconds, const char* format) {
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (::localtime_r(&t, &tm) == nullptr) return std::to_string(seconds);
  std::array<char, 64> buf{};
  const std::size_t n = std::strftime(buf.data(), buf.size(), format, &tm);
  return std::string(buf.data(), n);
}

/// lsipc's short form: the time today, the day this year, else the date.
std::string short_time(std::int64_t seconds) {
  if (seconds == 0) return "-";
  const std::string now_day = format_time(std::time(nullptr), "%Y-%m-%d");
  const std::string day = format_time(seconds, "%Y-%m-%d");
  if (day == now_day) return format_time(seconds, "%H:%M:%S");
  if (day.substr(0, 4) == now_day.substr(0, 4)) return format_time(seconds, "%b%d");
  return day;
}

template <class T>
std::string or_dash(const std::optional<T>& value) {
  return value ? fmt::format("{}", *value) : "-";
}

}  // namespace

std::string full_time(std::int64_t seconds) { return format_time(seconds, "%Y-%m-%d %H:%M:%S"); }

std::string display_name(const SegmentStat& stat) {
  if (stat.ns != Namespace::sysv) return stat.name;
  if (stat.key && *stat.key != 0) {
    return fmt::format("sysv:0x{:08x}", static_cast<std::uint32_t>(*stat.key));
  }
  return stat.id ? fmt::format("sysv:id={}", *stat.id) : stat.name;
}

const char* content_name(Content content) {
  switch (content) {
    case Content::segment:
      return "segment";
    case Content::arena:
      return "arena";
    case Content::channel:
      return "channel";
    case Content::unprobed:
      return "unknown";
  }
  return "unknown";
}

void print_table(const std::vector<Entry>& entries, std::string_view indent) {
  constexpr std::size_t kColumns = 13;
  using Row = std::array<std::string, kColumns>;
  // true: right-aligned (numbers), as lsipc does.
  constexpr std::array<bool, kColumns> kRight = {false, false, true,  false, false, true, true,
                                                 true,  true,  false, false, true,  true};
  std::vector<Row> rows;
  rows.push_back({"NAME", "TYPE", "ID", "PERMS", "OWNER", "SIZE", "USERS", "USED", "NATTCH",
                  "STATUS", "CTIME", "CPID", "LPID"});
  for (const Entry& e : entries) {
    const SegmentStat& s = e.stat;
    std::string status;
    if (s.locked) status = "locked";
    if (s.removed) status += status.empty() ? "dest" : ",dest";
    // An arena we could not read shows "?": it is one, but its figures are unknown.
    std::string users = "-", used = "-";
    if (e.arena) {
      users = fmt::format("{}/{}", e.arena->alive, e.arena->users);
      used = human_size(e.arena->in_use);
    } else if (e.content == Content::arena) {
      users = used = "?";
    } else if (e.channel) {
      const auto alive = std::count_if(e.channel->peers.begin(), e.channel->peers.end(),
                                       [](const ChannelPeer& p) { return p.alive; });
      users = fmt::format("{}/{}", alive, e.channel->peers.size());
      if (e.channel->kind != "broadcast") used = fmt::format("{} msg", e.channel->head - e.channel->tail);
    }
    const std::string type = e.content == Content::unprobed ? "-"
                             : e.channel                    ? e.channel->kind
                                                            : content_name(e.content);
    rows.push_back({display_name(s), type,
                    or_dash(s.id), perms_string(s.mode), user_name(s.uid), human_size(s.size),
                    users, used, or_dash(s.attach_count), status.empty() ? "-" : status,
                    short_time(s.change_time), or_dash(s.creator_pid), or_dash(s.last_pid)});
  }
  std::array<std::size_t, kColumns> width{};
  for (const Row& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const Row& row : rows) {
    std::string line(indent);
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (i > 0) line += ' ';
      const std::string pad(width[i] - row[i].size(), ' ');
      line += kRight[i] ? pad + row[i] : (i + 1 < row.size() ? row[i] + pad : row[i]);
    }
    fmt::print("{}\n", line);
  }
}

// ---- JSON ----

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

void JsonObject::add_raw(std::string_view key, std::string_view json) {
  text_ += fmt::format("{}{}:{}", text_.empty() ? "" : ",", json_string(key), json);
}

void JsonObject::add_string(std::string_view key, std::string_view value) {
  add_raw(key, json_string(value));
}

JsonObject stat_object(const SegmentStat& s) {
  JsonObject o;
  o.add_string("name", display_name(s));
  o.add_string("namespace", to_string(s.ns));
  o.add_number("size", s.size);
  o.add_string("mode", octal_mode(s.mode));
  o.add_number("uid", s.uid);
  o.add_number("gid", s.gid);
  o.add_string("owner", user_name(s.uid));
  o.add_number("cuid", s.cuid);
  o.add_number("cgid", s.cgid);
  o.add_raw("key", s.key ? json_string(fmt::format("0x{:08x}", static_cast<std::uint32_t>(*s.key)))
                         : "null");
  o.add_number("id", s.id);
  o.add_number("attach_count", s.attach_count);
  o.add_number("creator_pid", s.creator_pid);
  o.add_number("last_pid", s.last_pid);
  o.add_number("attach_time", s.attach_time);
  o.add_number("detach_time", s.detach_time);
  o.add_number("change_time", s.change_time);
  o.add_number("modify_time", s.modify_time);
  o.add_bool("locked", s.locked);
  o.add_bool("removed", s.removed);
  o.add_number("resident", s.resident);
  return o;
}

std::string stat_json(const SegmentStat& stat) { return stat_object(stat).str(); }

}  // namespace shmkit::cli

namespace shmkit::cli {

// ---- Channels ----

std::optional<ChannelInfo> probe_channel(const std::string& name) {
  try {
    const Segment seg = Segment::open(name, OpenOptions{.access = Access::read_only});
    return inspect_channel(seg.data(), seg.size());
  } catch (const Error&) {
    return std::nullopt;  // unreadable to us, or removed meanwhile: listed as a segment
  }
}

const char* role_name(Role role) {
  switch (role) {
    case Role::producer: return "producer";
    case Role::consumer: return "consumer";
    case Role::both: return "both";
    case Role::none: break;
  }
  return "none";
}

std::string channel_json(const ChannelInfo& c) {
  JsonObject o;
  o.add_string("kind", c.kind);
  if (!c.problem.empty()) {
    o.add_string("error", c.problem);
    return o.str();
  }
  o.add_number("slot_size", c.config.slot_size);
  o.add_number("capacity", c.config.capacity);
  o.add_number("max_peers", c.config.max_peers);
  o.add_string("overflow", c.config.overflow == Overflow::overwrite ? "overwrite" : "block");
  o.add_number("published", c.head);
  if (c.kind != "broadcast") o.add_number("queued", c.head - c.tail);
  o.add_number("peer_deaths", c.stats.peer_deaths);
  o.add_number("lost", c.stats.lost);
  std::string peers;
  for (const ChannelPeer& p : c.peers) {
    JsonObject po;
    po.add_number("pid", p.pid);
    po.add_string("role", role_name(p.role));
    po.add_bool("alive", p.alive);
    po.add_number("messages", p.messages);
    po.add_number("lost", p.lost);
    peers += (peers.empty() ? "" : ",") + po.str();
  }
  o.add_raw("peers", "[" + peers + "]");
  return o.str();
}

}  // namespace shmkit::cli
