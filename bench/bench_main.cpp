// SPDX-License-Identifier: MIT
// shmkit_bench_cli: runs the benchmarks without the shmkit tool, through the same code path
// (shmkit::bench::run). Not installed. `--check-harness` exercises the two-process helpers.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "bench.hpp"
#include "harness.hpp"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: shmkit_bench_cli LAYER [--json] [--quick] [--cpu N]\n"
               "       shmkit_bench_cli --list | --check-harness\n");
  return 2;
}

// A parent and a pinned child cross a shared Barrier many times; prints the time per crossing.
int check_harness() {
  namespace b = shmkit::bench;
  constexpr int kRounds = 20000;
  const int other_cpu = b::cpus_available() > 1 ? 1 : 0;
  b::pin_to_cpu(0);
  double per_crossing = 0;
  b::run_with_child(
      other_cpu,
      [&](b::Barrier& barrier) {
        for (int i = 0; i < kRounds; ++i) barrier.arrive_and_wait();
        return 0;
      },
      [&](b::Barrier& barrier) {
        barrier.arrive_and_wait();
        const std::int64_t start = b::now_ns();
        for (int i = 1; i < kRounds; ++i) barrier.arrive_and_wait();
        per_crossing = static_cast<double>(b::now_ns() - start) / (kRounds - 1);
      });
  std::printf("barrier crossing, cpus 0/%d: %.1f ns; child joined: ok\n", other_cpu, per_crossing);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string first = argv[1];
  if (first == "--list") {
    for (const std::string& layer : shmkit::bench::layers()) std::printf("%s\n", layer.c_str());
    return 0;
  }
  if (first == "--check-harness") {
    try {
      return check_harness();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "check-harness: %s\n", e.what());
      return 1;
    }
  }
  shmkit::bench::Options options;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--json") {
      options.json = true;
    } else if (arg == "--quick") {
      options.quick = true;
    } else if (arg == "--cpu" && i + 1 < argc) {
      char* end = nullptr;
      const long cpu = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || cpu < 0 || cpu > 4095) return usage();
      options.cpu = static_cast<int>(cpu);
    } else {
      return usage();
    }
  }
  return shmkit::bench::run(first, options);
}
