// SPDX-License-Identifier: MIT
// `shmkit ls [--json]`: every shared-memory segment on the machine, POSIX (/dev/shm) and
// System V alike, as an lsipc-like table or one JSON object. Segment::list() does the work;
// this file only chooses the order and the rendering.
#include <algorithm>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::cli {

int cmd_ls(const LsArgs& args) {
  std::vector<SegmentStat> stats = Segment::list();
  // POSIX first, then System V, each by name, so two runs are easy to compare.
  std::stable_sort(stats.begin(), stats.end(), [](const SegmentStat& a, const SegmentStat& b) {
    if (a.ns != b.ns) return a.ns < b.ns;
    if (a.ns == Namespace::sysv && a.id && b.id) return *a.id < *b.id;
    return a.name < b.name;
  });

  if (args.json) {
    std::string out = "{\"segments\":[";
    for (std::size_t i = 0; i < stats.size(); ++i) {
      out += (i == 0 ? "" : ",") + stat_json(stats[i]);
    }
    fmt::print("{}]}}\n", out);
    return 0;
  }
  print_table(stats);
  return 0;
}

}  // namespace shmkit::cli
