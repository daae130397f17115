// SPDX-License-Identifier: MIT
// `shmkit bench [LAYER] [--json] [--quick] [--cpu N] [--transports LIST] [--sizes LIST]
// [--duration S] [--plot FILE]`: runs one layer's benchmark, which times shmkit against the
// peers a user would otherwise pick, in the same run. The work is in the shmkit_bench library
// (bench/); without it the command says so and fails.
#include <algorithm>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli.hpp"

#ifdef SHMKIT_HAVE_BENCH
#  include "bench.hpp"
#endif

namespace shmkit::cli {

std::vector<std::string> bench_layers() {
#ifdef SHMKIT_HAVE_BENCH
  return bench::layers();
#else
  return {};
#endif
}

int cmd_bench(const BenchArgs& args) {
#ifdef SHMKIT_HAVE_BENCH
  const std::vector<std::string> layers = bench::layers();
  if (layers.empty()) return report("bench: no benchmarks in this build");
  // "ipc" is the headline comparison when it is built; otherwise the first layer there is.
  const bool has_ipc = std::find(layers.begin(), layers.end(), "ipc") != layers.end();
  const std::string layer = !args.layer.empty() ? args.layer : has_ipc ? "ipc" : layers.front();
  if (std::find(layers.begin(), layers.end(), layer) == layers.end()) {
    report(
        fmt::format("bench: unknown layer '{}' (available: {})", layer, fmt::join(layers, ", ")));
    return 2;
  }
  bench::Options options;
  options.json = args.json;
  options.quick = args.quick;
  options.cpu = args.cpu;
  options.transports = args.transports;
  for (const std::string& text : args.sizes) {
    try {
      options.sizes.push_back(parse_size(text));
    } catch (const Error& e) {
      report(fmt::format("bench: bad size '{}' in --sizes: {}", text, e.cause()));
      return 2;
    }
  }
  options.duration = args.duration;
  options.plot = args.plot;
  std::fflush(stdout);
  return bench::run(layer, options);
#else
  (void)args;
  return report("bench: benchmarks were not built (configure with -DSHMKIT_BUILD_BENCHMARKS=ON)");
#endif
}

}  // namespace shmkit::cli
