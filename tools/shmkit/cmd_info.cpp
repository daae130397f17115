// SPDX-License-Identifier: MIT
// `shmkit info NAME [--json]`: what the kernel knows of one segment, one field per line
// ("name: /foo"), without mapping it. Fields the namespace does not have show as "-".
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "cli.hpp"
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

}  // namespace

int cmd_info(const InfoArgs& args) {
  const SegmentStat s = Segment::stat(args.name);
  if (args.json) {
    fmt::print("{}\n", stat_json(s));
    return 0;
  }

  const auto line = [](std::string_view field, const std::string& value) {
    fmt::print("{}: {}\n", field, value);
  };
  const auto user = [](std::uint32_t uid) { return fmt::format("{} ({})", uid, user_name(uid)); };
  line("name", display_name(s));
  line("namespace", to_string(s.ns));
  line("size", fmt::format("{} ({})", s.size, human_size(s.size)));
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
  line("locked", s.locked ? "yes" : "no");
  line("removed", s.removed ? "yes (destroyed at last detach)" : "no");
  line("resident", s.resident ? fmt::format("{} ({})", *s.resident, human_size(*s.resident)) : "-");
  return 0;
}

}  // namespace shmkit::cli
