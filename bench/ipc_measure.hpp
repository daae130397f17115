// SPDX-License-Identifier: MIT
// How one figure of `shmkit bench ipc` is measured (ipc_measure.cpp): a round trip between
// two processes, a one-way stream from one to the other, or memcpy in one process.
#pragma once

#include <cstddef>
#include <cstdint>

#include "harness.hpp"
#include "ipc_transports.hpp"

namespace shmkit::bench {

/// One-way streams per measurement, after a warm-up one; the figure is their median.
inline constexpr int kStreams = 3;

/// Time and place of one measurement.
struct Budget {
  std::int64_t warmup_ns = 0;   ///< discarded first
  std::int64_t measure_ns = 0;  ///< round trips for this long; the streams share it
  int cpu_a = 0, cpu_b = 1;     ///< where the two processes run
};

/// Round-trip latency: samples of `batch` round trips each, in nanoseconds per round trip.
struct Latency {
  double median_ns = 0, p99_ns = 0, min_ns = 0, max_ns = 0;
  std::int64_t samples = 0;
  int batch = 1;  ///< round trips per sample: as many as last >= 2 µs
};

/// a sends a message, b echoes it, a checks it; then the next. Throws std::runtime_error
/// when a process fails (both are killed), Interrupted after a signal.
Latency measure_round_trip(Transport& t, const Budget& budget);

/// a sends messages of `size` bytes as fast as b takes them, for kStreams windows; returns
/// the messages per second of each window (until b has read the last one). Throws as above.
Stats measure_stream(Transport& t, const Budget& budget, std::size_t size);

/// memcpy of `size`-byte messages in one process on cpu_a, timed as the streams are.
Stats measure_memcpy(const Budget& budget, std::size_t size);

}  // namespace shmkit::bench
