// SPDX-License-Identifier: MIT
// `shmkit rm NAME...`: removes each name (shm_unlink, or IPC_RMID for System V, which
// destroys the segment once its last user detaches). Keeps going past a failure and
// reports each one on its own line; the exit status is 1 if any failed.
#include <string>

#include <fmt/format.h>

#include "cli.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::cli {

int cmd_rm(const RmArgs& args) {
  int status = 0;
  for (const std::string& name : args.names) {
    try {
      Segment::remove(name);
      if (args.verbose) fmt::print("removed {}\n", name);
    } catch (const Error& e) {
      status = report(e);
    }
  }
  return status;
}

}  // namespace shmkit::cli
