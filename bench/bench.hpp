// SPDX-License-Identifier: MIT
// Entry point of the benchmarks, called by `shmkit bench LAYER`. Each layer's benchmark runs
// shmkit and the peers a user would otherwise pick in the same run and prints ratios.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace shmkit::bench {

struct Options {
  bool json = false;   ///< print one JSON object (with a "ratios" member) instead of a table
  bool quick = false;  ///< a few seconds: fewer repetitions, smaller sizes where it matters
  int cpu = -1;        ///< pin the (first) process to this CPU; -1 leaves placement alone
  // Used by the layers that compare transports (ipc); the others ignore them.
  std::vector<std::string> transports;  ///< only these (empty: all the layer has)
  std::vector<std::size_t> sizes;       ///< message sizes in bytes (empty: the layer's default)
  double duration = 0;                  ///< seconds per measurement, roughly (0: the default)
  std::string plot;                     ///< write an SVG chart of the results there ("": none)
};

/// The layers that have a benchmark, e.g. {"segment"}.
std::vector<std::string> layers();

/// Runs the benchmark of `layer`, printing to stdout. Returns the exit status (0 ok,
/// 1 failure, 2 unknown layer).
int run(const std::string& layer, const Options& options);

}  // namespace shmkit::bench
