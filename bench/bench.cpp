// SPDX-License-Identifier: MIT
// Dispatch of `shmkit bench LAYER`: the table of layers that have a benchmark, pinning, and
// the exit status. Each layer's benchmark lives in <layer>_bench.cpp.
#include "bench.hpp"

#include <cstdio>
#include <exception>

#include "harness.hpp"

namespace shmkit::bench {
namespace {

struct Layer {
  const char* name;
  int (*run)(const Options&);
};

// In layer order (DESIGN.md); later layers add a line here.
constexpr Layer kLayers[] = {
    {"segment", run_segment},
    {"locks", run_locks},
    {"alloc", run_alloc},
    {"ipc", run_ipc},
};

}  // namespace

std::vector<std::string> layers() {
  std::vector<std::string> names;
  for (const Layer& layer : kLayers) names.emplace_back(layer.name);
  return names;
}

int run(const std::string& layer, const Options& options) {
  for (const Layer& l : kLayers) {
    if (layer != l.name) continue;
    try {
      if (options.cpu >= 0) pin_to_cpu(options.cpu);
      const int status = l.run(options);
      std::fflush(stdout);
      return status;
    } catch (const std::exception& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "shmkit bench %s: %s\n", l.name, e.what());
      return 1;
    }
  }
  std::string known;
  for (const std::string& name : layers()) known += (known.empty() ? "" : ", ") + name;
  std::fprintf(stderr, "shmkit bench: unknown layer '%s' (known: %s)\n", layer.c_str(),
               known.c_str());
  return 2;
}

}  // namespace shmkit::bench
