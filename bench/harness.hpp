// SPDX-License-Identifier: MIT
// The timing harness every layer's benchmark shares: repetitions and their statistics, CPU
// pinning, the table and JSON reports, cleanup of what a benchmark creates, and forked children.
//
// The one idea: a figure is the median over R repetitions, each the mean of N operations, after
// one discarded warm-up repetition; variants run round-robin inside each repetition so that a
// slow drift of the machine (a neighbour on the host, frequency) hits every variant alike.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bench.hpp"

namespace shmkit::bench {

// ---- Layers: one entry point per <layer>_bench.cpp, dispatched by bench.cpp ----

int run_segment(const Options& options);
int run_locks(const Options& options);
int run_alloc(const Options& options);
int run_ipc(const Options& options);

// ---- Timing ----

/// Median, lowest and highest of a set of repetitions, in the unit they were taken in.
struct Stats {
  double median = 0;
  double min = 0;
  double max = 0;
  int repetitions = 0;
};

/// Summarises `samples` (at least one).
Stats summarize(std::vector<double> samples);

/// Returns `stats` with every figure divided by `divisor` (e.g. 1000 for ns -> µs).
Stats scaled(Stats stats, double divisor);

/// Monotonic time in nanoseconds.
std::int64_t now_ns() noexcept;

/// One way of doing the measured work. `run(n)` performs n operations.
struct Variant {
  std::string name;
  std::function<void(std::int64_t n)> run;
};

/// How much to measure: R repetitions of N operations, after `warmup` discarded repetitions.
struct Plan {
  int repetitions = 11;
  std::int64_t operations = 1000;
  int warmup = 1;
};

/// Times every variant: warm-up repetitions first (discarded), then `plan.repetitions` rounds
/// in each of which every variant runs `plan.operations` operations in turn. Returns, per
/// variant and in the same order, the statistics of nanoseconds per operation. Exceptions
/// thrown by a variant propagate; Interrupted is thrown between batches after a signal.
std::vector<Stats> measure_round_robin(const std::vector<Variant>& variants, const Plan& plan);

/// Times one variant alone (same rules); nanoseconds per operation.
Stats measure(const Variant& variant, const Plan& plan);

/// Geometric mean of positive values; 0 when `values` is empty.
double geometric_mean(const std::vector<double>& values);

// ---- CPU placement ----

/// Pins the calling thread (the whole process, if it has one thread) to `cpu`. Throws
/// std::system_error.
void pin_to_cpu(int cpu);

/// Number of CPUs this process may run on.
int cpus_available();

// ---- Reports ----

/// One measured figure: a case (e.g. a size), a variant, a unit and the statistics in it.
struct Row {
  std::string case_name;     ///< e.g. "4 KiB"; rows of one case are compared with each other
  std::string variant;       ///< e.g. "shmkit", "raw"
  std::string unit;          ///< e.g. "us" (per operation)
  Stats stats;               ///< in `unit`
  std::int64_t operations = 0;  ///< N per repetition
  std::string baseline;      ///< variant of the same case to show "baseline/this" against; may be empty
  std::vector<std::pair<std::string, double>> params;  ///< extra numbers for JSON, e.g. size_bytes
};

/// A named ratio of two median times, peer / shmkit by convention (> 1: shmkit is faster);
/// `goal` is the least acceptable value, or with `at_most` the largest.
struct Ratio {
  std::string name;    ///< e.g. "overhead_vs_raw" (the headline) or "overhead_vs_raw_4KiB"
  double value = 0;
  std::optional<double> goal;
  std::string meaning;  ///< one line for the table, e.g. "raw time / shmkit time"
  bool at_most = false;  ///< lower is better: the goal is a ceiling
};

/// Everything one benchmark prints.
struct Report {
  std::string benchmark;  ///< the layer, e.g. "segment"
  std::string title;      ///< one line above the table
  std::vector<std::string> notes;  ///< lines printed under the title (method, sizes, skipped peers)
  std::vector<Row> rows;
  std::vector<Ratio> ratios;
  std::vector<std::pair<std::string, std::string>> settings;  ///< e.g. {"cpu", "0"}

  /// The row of `variant` in `case_name`, or nullptr.
  const Row* find(const std::string& case_name, const std::string& variant) const;
};

/// Prints `report` as an aligned text table followed by the ratios.
void print_table(const Report& report);

/// Cells a layer lays out itself, when one row per figure does not fit (e.g. several figures
/// per transport). The first line is the header.
struct Table {
  std::vector<std::vector<std::string>> cells;
  std::vector<bool> right_aligned;  ///< per column
};

/// Prints `report`'s title and notes, then `table` in place of its rows, then its ratios.
void print_table(const Report& report, const Table& table);

/// Prints `report` as one JSON object: {"benchmark", "title", "machine", "settings",
/// "results": [...], "ratios": {name: value}, "goals": {name: goal}}.
void print_json(const Report& report);

/// Formats a byte count as "4 KiB", "1 MiB", "64 MiB" (exact powers only; else bytes).
std::string format_bytes(std::uint64_t bytes);

// ---- Cleanup of what a benchmark creates ----

/// Names and ids a benchmark creates, removed when the scope ends (normally or by an
/// exception). Only what was registered is removed: objects of other processes are never
/// swept. One scope at a time per process. While a scope is alive, a first SIGINT, SIGTERM or
/// SIGHUP makes stop_requested() true (measure_round_robin then throws Interrupted, and the
/// scope re-raises the signal once all is removed); a second one removes and dies at once.
class CleanupScope {
 public:
  CleanupScope();
  ~CleanupScope();
  CleanupScope(const CleanupScope&) = delete;
  CleanupScope& operator=(const CleanupScope&) = delete;

  /// Registers a POSIX shared-memory name ("/x"), removed (if present) at the end.
  void add_posix(const std::string& name);
  /// Registers a POSIX message queue name ("/x"), removed (mq_unlink, if present) at the end.
  void add_mqueue(const std::string& name);
  /// Notes the System V segment just created (set right after shmget) so that it is removed
  /// if abandoned; `forget_sysv` right after IPC_RMID. One slot: one segment lives at a time.
  void note_sysv(int id) noexcept;
  void forget_sysv() noexcept;
  /// Removes every registered name and the noted System V segment now, ignoring ENOENT.
  void remove_all() noexcept;
};

/// Thrown by measure_round_robin (between two batches) after a signal asked the run to stop.
class Interrupted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// True once a signal has asked the run to stop; long loops of a benchmark may poll it.
bool stop_requested() noexcept;
/// Throws Interrupted if stop_requested().
void throw_if_stop_requested();

/// Returns "/shmkit-bench-<pid>-<tag>", a name no other process uses.
std::string unique_name(const std::string& tag);

// ---- Two processes ----

/// Maps `size` bytes of MAP_SHARED|MAP_ANONYMOUS memory (zero-filled). Throws std::system_error.
void* map_shared_anonymous(std::size_t size);
void unmap_shared_anonymous(void* memory, std::size_t size) noexcept;

/// Memory shared with children forked after its creation (MAP_SHARED|MAP_ANONYMOUS), holding
/// one T constructed in place. Unmapped (T destroyed) when the owner is destroyed.
template <class T>
class SharedObject {
 public:
  template <class... Args>
  explicit SharedObject(Args&&... args) : memory_(map_shared_anonymous(sizeof(T))) {
    object_ = ::new (memory_) T(std::forward<Args>(args)...);
  }
  ~SharedObject() {
    object_->~T();
    unmap_shared_anonymous(memory_, sizeof(T));
  }
  SharedObject(const SharedObject&) = delete;
  SharedObject& operator=(const SharedObject&) = delete;
  T& operator*() const noexcept { return *object_; }
  T* operator->() const noexcept { return object_; }

 private:
  void* memory_;
  T* object_;
};

/// A reusable barrier for `parties` processes, placed in shared memory (SharedObject). Waiters
/// spin for `spin` rounds, then sleep on a process-shared futex: a cross-core futex wake costs
/// microseconds on a VM (tens of them on some hosts), a spin hand-over tens of nanoseconds.
/// Pass spin = 0 when both processes share one CPU.
class Barrier {
 public:
  explicit Barrier(std::uint32_t parties, std::uint32_t spin = 20000) noexcept
      : parties_(parties), spin_(spin) {}
  /// Blocks until `parties` processes have arrived, then releases them all.
  void arrive_and_wait() noexcept;

 private:
  std::atomic<std::uint32_t> arrived_{0};     // processes in this generation; last resets it
  std::atomic<std::uint32_t> generation_{0};  // futex word; bumped (release) by the last one
  std::uint32_t parties_;                      // fixed at construction
  std::uint32_t spin_;                         // fixed at construction
};
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

/// A forked child running a function pinned to a CPU. The child exits with the function's
/// return value (99 after printing an exception). Destroying an unjoined Child kills it
/// (SIGKILL) and reaps it, so a failing parent leaves no process behind.
class Child {
 public:
  /// Forks; the child pins itself to `cpu` (unless -1), runs `body` and _exits. The parent
  /// returns at once; synchronise through a Barrier in a SharedObject created before.
  static Child start(int cpu, const std::function<int()>& body);

  Child() noexcept = default;
  ~Child();
  Child(Child&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
  Child& operator=(Child&& other) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  /// Waits for the child; returns its exit code, or 128+signal when it was killed.
  int join();
  int pid() const noexcept { return pid_; }

 private:
  explicit Child(int pid) noexcept : pid_(pid) {}
  int pid_ = -1;
};

/// The usual two-process run: a child pinned to `child_cpu` runs `child_body` while the caller
/// runs `parent_body` (pin the caller first); both get the same two-party Barrier, in shared
/// memory, to start each repetition together. Returns after joining the child; throws
/// std::runtime_error if it exited non-zero. If `parent_body` throws, the child is killed.
void run_with_child(int child_cpu, const std::function<int(Barrier&)>& child_body,
                    const std::function<void(Barrier&)>& parent_body);

}  // namespace shmkit::bench
