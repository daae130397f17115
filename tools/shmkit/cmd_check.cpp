// SPDX-License-Identifier: MIT
// `shmkit check NAME`: joins an arena (Arena::open), walks every structure in it with
// Arena::check() and prints "ok", or reports the first inconsistency in one line and exits 1.
// Unlike `info`, this joins as a user for the duration and takes the arena lock while it walks,
// so the answer is consistent rather than a racy snapshot; it costs O(size of the arena).
#include <string>

#include <fmt/format.h>

#include "cli.hpp"
#include "shmkit/arena.hpp"

namespace shmkit::cli {

int cmd_check(const CheckArgs& args) {
  // A missing name or a segment without an arena header fails here, naming the object.
  Arena arena = Arena::open(args.name);
  const std::string problem = arena.check();
  arena.close();
  if (!problem.empty()) return report(fmt::format("{}: inconsistent: {}", args.name, problem));
  fmt::print("ok\n");
  return 0;
}

}  // namespace shmkit::cli
