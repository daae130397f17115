// SPDX-License-Identifier: MIT
// `shmkit bench segment`: the whole life of a segment (create + map + write one byte per page
// + unmap + remove) at 4 KiB, 1 MiB and 64 MiB, through shmkit and through what a user writes
// without it: the raw POSIX calls (committing with ftruncate, and with fallocate as shmkit
// does), raw System V, and Boost.Interprocess when found. overhead_vs_raw = raw / shmkit.
//
// Each lifecycle creates and removes the same per-variant name, so a lifecycle that failed
// to remove makes the next one fail (EEXIST) rather than pass unnoticed.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "harness.hpp"
#include "shmkit/segment.hpp"

#ifdef SHMKIT_BENCH_HAVE_BOOST
#  include <boost/interprocess/mapped_region.hpp>
#  include <boost/interprocess/shared_memory_object.hpp>
#endif

namespace shmkit::bench {
namespace {

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * kKiB;

// The touch every variant does: one write per page, so every page is faulted in.
void touch(void* base, std::size_t size, std::size_t page) {
  auto* bytes = static_cast<volatile unsigned char*>(base);
  for (std::size_t offset = 0; offset < size; offset += page) bytes[offset] = 1;
}

[[noreturn]] void fail(const char* operation, const std::string& name) {
  throw std::system_error(errno, std::generic_category(), std::string(operation) + " " + name);
}

// ---- The lifecycles ----

void shmkit_lifecycle(const std::string& name, std::size_t size, std::size_t page) {
  CreateOptions options;
  options.remove_on_close = true;
  Segment segment = Segment::create(name, size, options);
  touch(segment.data(), segment.size(), page);
}  // ~Segment: unmap, close, remove

// What a user writes today (seed 000's "dance"), checked like a careful user checks it.
void raw_posix_lifecycle(const std::string& name, std::size_t size, std::size_t page,
                         bool commit_with_fallocate) {
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) fail("shm_open", name);
  const off_t length = static_cast<off_t>(size);
  if (commit_with_fallocate) {
    if (::fallocate(fd, 0, 0, length) != 0) fail("fallocate", name);
  } else {
    if (::ftruncate(fd, length) != 0) fail("ftruncate", name);
  }
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) fail("mmap", name);
  touch(base, size, page);
  if (::munmap(base, size) != 0) fail("munmap", name);
  if (::close(fd) != 0) fail("close", name);
  if (::shm_unlink(name.c_str()) != 0) fail("shm_unlink", name);
}

void raw_sysv_lifecycle(CleanupScope& cleanup, std::size_t size, std::size_t page) {
  const int id = ::shmget(IPC_PRIVATE, size, IPC_CREAT | 0600);
  if (id < 0) fail("shmget", "IPC_PRIVATE");
  cleanup.note_sysv(id);
  void* base = ::shmat(id, nullptr, 0);
  if (base == reinterpret_cast<void*>(-1)) fail("shmat", std::to_string(id));
  touch(base, size, page);
  if (::shmdt(base) != 0) fail("shmdt", std::to_string(id));
  if (::shmctl(id, IPC_RMID, nullptr) != 0) fail("shmctl IPC_RMID", std::to_string(id));
  cleanup.forget_sysv();
}

#ifdef SHMKIT_BENCH_HAVE_BOOST
// Boost's documented pattern; `name` without the leading '/', which Boost adds.
void boost_lifecycle(const char* name, std::size_t size, std::size_t page) {
  namespace bip = boost::interprocess;
  {
    bip::permissions owner_only(0600);
    bip::shared_memory_object object(bip::create_only, name, bip::read_write, owner_only);
    object.truncate(static_cast<bip::offset_t>(size));
    bip::mapped_region region(object, bip::read_write);
    touch(region.get_address(), region.get_size(), page);
  }
  bip::shared_memory_object::remove(name);
}
#endif

// ---- The benchmark ----

struct SizePlan {
  std::size_t bytes;
  Plan plan;
};

std::vector<SizePlan> size_plans(bool quick) {
  // N × R chosen so each size takes about a second per variant (64 MiB is memory-bound:
  // zeroing and faulting 16384 pages, ~15 ms a lifecycle).
  if (quick) {
    return {{4 * kKiB, {5, 100, 1}}, {1 * kMiB, {5, 10, 1}}, {64 * kMiB, {5, 1, 1}}};
  }
  return {{4 * kKiB, {15, 500, 1}}, {1 * kMiB, {15, 40, 1}}, {64 * kMiB, {15, 2, 1}}};
}

// "4 KiB" -> "4KiB", for ratio names.
std::string key(const std::string& case_name) {
  std::string k;
  for (char c : case_name) {
    if (c != ' ') k += c;
  }
  return k;
}

// Adds `name`_<size> (median time of `numerator` / median time of `denominator`) for every
// size where both rows exist, and their geometric mean as the headline `name`.
void add_ratio(Report& report, const std::string& name, const std::string& numerator,
               const std::string& denominator, const std::string& meaning,
               std::optional<double> goal = std::nullopt) {
  std::vector<Ratio> per_size;
  std::vector<double> values;
  std::vector<std::string> cases;
  for (const Row& row : report.rows) {
    if (row.variant == numerator) cases.push_back(row.case_name);
  }
  for (const std::string& c : cases) {
    const Row* num = report.find(c, numerator);
    const Row* den = report.find(c, denominator);
    if (num == nullptr || den == nullptr || den->stats.median <= 0) continue;
    const double value = num->stats.median / den->stats.median;
    values.push_back(value);
    per_size.push_back({name + "_" + key(c), value, std::nullopt, ""});
  }
  if (values.empty()) return;
  report.ratios.push_back({name, geometric_mean(values), goal, meaning});
  report.ratios.insert(report.ratios.end(), per_size.begin(), per_size.end());
}

}  // namespace

int run_segment(const Options& options) {
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  CleanupScope cleanup;

  const std::string shmkit_name = unique_name("seg-shmkit");
  const std::string raw_name = unique_name("seg-raw");
  const std::string fallocate_name = unique_name("seg-raw-fallocate");
  const std::string sysv_private = "sysv:private";
  cleanup.add_posix(shmkit_name);
  cleanup.add_posix(raw_name);
  cleanup.add_posix(fallocate_name);
#ifdef SHMKIT_BENCH_HAVE_BOOST
  const std::string boost_name = unique_name("seg-boost");
  cleanup.add_posix(boost_name);
#endif

  Report report;
  report.benchmark = "segment";
  report.title = "segment: create + map + write 1 byte per page + unmap + remove, per lifecycle";
  std::string command = "shmkit bench segment";
  if (options.json) command += " --json";
  if (options.quick) command += " --quick";
  if (options.cpu >= 0) command += " --cpu " + std::to_string(options.cpu);
  report.settings = {{"command", command},
                     {"cpu", options.cpu >= 0 ? std::to_string(options.cpu) : "unpinned"},
                     {"quick", options.quick ? "true" : "false"},
                     {"page_size", std::to_string(page)}};
  report.notes.push_back("median over R repetitions of N lifecycles (1 warm-up repetition "
                         "discarded); variants interleaved within each repetition");
  report.notes.push_back(
      "raw: shm_open(O_CREAT|O_EXCL|O_RDWR, 0600) + ftruncate + mmap + touch + munmap + close + "
      "shm_unlink; raw+fallocate: fallocate instead of ftruncate");
  report.notes.push_back(
      "sysv raw: shmget(IPC_PRIVATE) + shmat + touch + shmdt + IPC_RMID; shmkit sysv: "
      "Segment::create(\"sysv:private\")");
  report.notes.push_back(options.cpu >= 0 ? "pinned to CPU " + std::to_string(options.cpu)
                                          : "not pinned (use --cpu N)");
#ifndef SHMKIT_BENCH_HAVE_BOOST
  report.notes.push_back("Boost.Interprocess not found at build time: its variant is skipped");
#endif

  bool failed = false;
  for (const SizePlan& sp : size_plans(options.quick)) {
    const std::size_t size = sp.bytes;
    std::vector<Variant> variants;
    std::vector<std::string> baselines;
    variants.push_back({"raw", [&](std::int64_t n) {
                          for (std::int64_t i = 0; i < n; ++i)
                            raw_posix_lifecycle(raw_name, size, page, false);
                        }});
    baselines.emplace_back();
    variants.push_back({"raw+fallocate", [&](std::int64_t n) {
                          for (std::int64_t i = 0; i < n; ++i)
                            raw_posix_lifecycle(fallocate_name, size, page, true);
                        }});
    baselines.emplace_back("raw");
    variants.push_back({"shmkit", [&](std::int64_t n) {
                          for (std::int64_t i = 0; i < n; ++i)
                            shmkit_lifecycle(shmkit_name, size, page);
                        }});
    baselines.emplace_back("raw");
#ifdef SHMKIT_BENCH_HAVE_BOOST
    variants.push_back({"boost", [&](std::int64_t n) {
                          for (std::int64_t i = 0; i < n; ++i)
                            boost_lifecycle(boost_name.c_str() + 1, size, page);
                        }});
    baselines.emplace_back("raw");
#endif
    variants.push_back({"sysv raw", [&](std::int64_t n) {
                          for (std::int64_t i = 0; i < n; ++i)
                            raw_sysv_lifecycle(cleanup, size, page);
                        }});
    baselines.emplace_back();
    variants.push_back({"shmkit sysv", [&](std::int64_t n) {
                          for (std::int64_t i = 0; i < n; ++i)
                            shmkit_lifecycle(sysv_private, size, page);
                        }});
    baselines.emplace_back("sysv raw");

    // A variant that cannot run at all (a peer's quirk, a missing feature) is reported and
    // left out, so the others are still measured; the exit status says something failed.
    std::vector<Variant> runnable;
    std::vector<std::string> runnable_baselines;
    for (std::size_t i = 0; i < variants.size(); ++i) {
      try {
        variants[i].run(1);
        runnable.push_back(variants[i]);
        runnable_baselines.push_back(baselines[i]);
      } catch (const std::exception& e) {
        failed = true;
        cleanup.remove_all();
        report.notes.push_back(variants[i].name + " at " + format_bytes(size) +
                               " failed and was left out: " + e.what());
      }
    }

    const std::vector<Stats> stats = measure_round_robin(runnable, sp.plan);
    for (std::size_t i = 0; i < runnable.size(); ++i) {
      Row row;
      row.case_name = format_bytes(size);
      row.variant = runnable[i].name;
      row.unit = "us";
      row.stats = scaled(stats[i], 1000.0);
      row.operations = sp.plan.operations;
      row.baseline = runnable_baselines[i];
      row.params = {{"size_bytes", static_cast<double>(size)}};
      report.rows.push_back(std::move(row));
    }
  }

  add_ratio(report, "overhead_vs_raw", "raw", "shmkit", "raw / shmkit", 0.95);
  add_ratio(report, "overhead_vs_raw_fallocate", "raw+fallocate", "shmkit",
            "raw+fallocate / shmkit (same commit as shmkit)");
  add_ratio(report, "fallocate_vs_ftruncate", "raw", "raw+fallocate",
            "raw / raw+fallocate (< 1: committing costs)");
  add_ratio(report, "vs_boost", "boost", "shmkit", "Boost.Interprocess / shmkit");
  add_ratio(report, "sysv_overhead_vs_raw", "sysv raw", "shmkit sysv",
            "sysv raw / shmkit sysv:private");

  if (options.json) {
    print_json(report);
  } else {
    print_table(report);
  }
  return failed ? 1 : 0;
}

}  // namespace shmkit::bench
