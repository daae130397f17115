// SPDX-License-Identifier: MIT
// `shmkit bench ipc`: seed 003's claim that shared memory is the fastest IPC, measured. Two
// processes exchange 64 B, 4 KiB and 1 MiB messages through each transport (pipes, a UNIX
// socket, POSIX and System V message queues, iceoryx, shmkit's Ring in its wait modes and
// zero-copy), next to the physical floors (a cache-line and a futex ping-pong, memcpy), and
// one table gives round-trip latency (median, p99) and one-way throughput (msgs/s, bytes/s).
//
// The one idea: this file only decides what to measure and reports it; each figure is taken
// by ipc_measure.cpp in two fresh processes, through a Transport of ipc_transports.hpp made
// for that one measurement (iceoryx's from ipc_iceoryx.cpp, while RouDi runs).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "ipc_measure.hpp"
#include "ipc_transports.hpp"
#include "plot.hpp"

namespace shmkit::bench {
namespace {

// ---- The transports ----

enum class Id {
  pipe,
  unix_socket,
  posix_mq,
  sysv_mq,
  iceoryx,
  iceoryx_waitset,
  shmkit_busy,
  shmkit_spin,
  shmkit_block,
  shmkit_zero_copy,
  shmkit_queue,
  cacheline,
  futex,
  memcpy,
};

struct Info {
  Id id;
  const char* name;    // on the command line
  const char* label;   // in the table
  bool round_trip;     // has a round-trip figure
  bool throughput;     // has a one-way stream figure
  bool busy;           // spins while it waits: needs a CPU for each process
  const char* colour;  // in the chart: shmkit warm, the peers cool, the floors grey
};

// In table order; the two iceoryx entries stay adjacent (RouDi runs only while they do).
constexpr Info kTransports[] = {
    {Id::pipe, "pipe", "pipe", true, true, false, "#4e79a7"},
    {Id::unix_socket, "unix", "unix stream socket", true, true, false, "#76b7b2"},
    {Id::posix_mq, "posix-mq", "POSIX mq", true, true, false, "#59a14f"},
    {Id::sysv_mq, "sysv-mq", "System V mq", true, true, false, "#8cd17d"},
    {Id::iceoryx, "iceoryx", "iceoryx busy-poll", true, true, true, "#b07aa1"},
    {Id::iceoryx_waitset, "iceoryx-waitset", "iceoryx WaitSet", true, true, false, "#d4a6c8"},
    {Id::shmkit_busy, "shmkit-busy", "shmkit busy-poll copy", true, true, true, "#e15759"},
    {Id::shmkit_spin, "shmkit-spin", "shmkit spin-then-block", true, true, false, "#f28e2b"},
    {Id::shmkit_block, "shmkit-block", "shmkit block", true, true, false, "#f1ce63"},
    {Id::shmkit_zero_copy, "shmkit-zero-copy", "shmkit busy-poll zero-copy", true, true, true, "#9d2b2b"},
    {Id::shmkit_queue, "shmkit-queue", "shmkit Queue (MPMC) zero-copy", true, true, true, "#c4553a"},
    {Id::cacheline, "cacheline", "cache line (floor)", true, false, true, "#333333"},
    {Id::futex, "futex", "futex (floor)", true, false, false, "#79706e"},
    {Id::memcpy, "memcpy", "memcpy (1 process)", false, true, false, "#bab0ac"},
};

bool is_iceoryx(Id id) { return id == Id::iceoryx || id == Id::iceoryx_waitset; }

constexpr std::size_t kKiB = 1024, kMiB = 1024 * 1024;
constexpr std::size_t kMinSize = 8;          // the sequence number
constexpr std::size_t kMaxSize = 64 * kMiB;  // rings hold several

struct Settings {
  std::vector<std::size_t> sizes;
  Budget budget;
  bool two_cpus = true;
  std::size_t posix_mq_max = 0, sysv_mq_max = 0;
  long posix_mq_depth = 10;
  std::string mq_names[2];
};

// Round-trip capacity: room enough that the producer rarely reloads the consumer's counter.
std::size_t ring_capacity_round_trip(std::size_t size) {
  return std::clamp<std::size_t>(std::bit_floor(256 * kKiB / size), 2, 64);
}
// Stream capacity: up to 1024 slots and about 1 MiB (L2 holds it), at least 8 in flight.
std::size_t ring_capacity_stream(std::size_t size) {
  return std::clamp<std::size_t>(std::bit_floor(kMiB / size), 8, 1024);
}
#ifdef SHMKIT_BENCH_HAVE_ICEORYX
// RouDi's built-in configuration has ten 4 MiB chunks for messages above 512 KiB.
std::uint64_t iceoryx_queue(std::size_t size) { return size > 512 * kKiB ? 4 : 256; }
#endif

std::unique_ptr<Transport> make(Id id, std::size_t size, bool round_trip, const Settings& s,
                                int serial, Roudi* roudi) {
  const std::size_t capacity =
      round_trip ? ring_capacity_round_trip(size) : ring_capacity_stream(size);
  switch (id) {
    case Id::pipe:
      return make_pipe(size);
    case Id::unix_socket:
      return make_unix_socket(size);
    case Id::posix_mq:
      return make_posix_mq(size, s.posix_mq_depth, s.mq_names);
    case Id::sysv_mq:
      return make_sysv_mq(size);
#ifdef SHMKIT_BENCH_HAVE_ICEORYX
    case Id::iceoryx:
    case Id::iceoryx_waitset: {
      // Runtime and service names: no '/', unique to this measurement.
      const std::string tag = unique_name("ipc-" + std::to_string(serial)).substr(1);
      return make_iceoryx(size, iceoryx_queue(size), id == Id::iceoryx, tag, *roudi);
    }
#else
    case Id::iceoryx:
    case Id::iceoryx_waitset:
      (void)serial, (void)roudi;
      break;
#endif
    case Id::shmkit_busy:
      return make_ring(size, capacity, Wait::busy_poll, false);
    case Id::shmkit_spin:
      return make_ring(size, capacity, Wait::spin_then_block, false);
    case Id::shmkit_block:
      return make_ring(size, capacity, Wait::block, false);
    case Id::shmkit_zero_copy:
      return make_ring(size, capacity, Wait::busy_poll, true);
    case Id::shmkit_queue:
      return make_queue(size, capacity);
    case Id::cacheline:
      return make_cacheline();
    case Id::futex:
      return make_futex();
    case Id::memcpy:
      break;
  }
  throw std::logic_error("make: this transport has no Transport object");
}

// ---- Results ----

struct Cell {
  std::size_t size = 0;
  const Info* transport = nullptr;
  std::optional<Latency> round_trip;
  std::optional<Stats> stream;  // messages per second
  std::string failure;
};

struct Results {
  std::vector<Cell> cells;
  std::vector<std::string> notes;  // skips and failures, after the method notes
  bool failed = false;

  const Cell* find(std::size_t size, Id id) const {
    for (const Cell& c : cells) {
      if (c.size == size && c.transport->id == id) return &c;
    }
    return nullptr;
  }
  double round_trip_ns(std::size_t size, Id id) const {
    const Cell* c = find(size, id);
    return c != nullptr && c->round_trip ? c->round_trip->median_ns : 0;
  }
  double msgs_per_s(std::size_t size, Id id) const {
    const Cell* c = find(size, id);
    return c != nullptr && c->stream ? c->stream->median : 0;
  }
};

// The floors are measured at 64 B only: they carry no payload.
bool applies(const Info& t, std::size_t size) {
  return size == 64 || (t.id != Id::cacheline && t.id != Id::futex);
}

// Why `t` cannot be measured at `size` here, or "" when it can.
std::string skip_reason(const Info& t, std::size_t size, const Settings& s) {
  if (t.busy && !s.two_cpus) return "it busy-polls and this machine has one CPU";
  if (t.id == Id::posix_mq && size > s.posix_mq_max) {
    return "above /proc/sys/fs/mqueue/msgsize_max (" + std::to_string(s.posix_mq_max) + " bytes)";
  }
  if (t.id == Id::sysv_mq && size > s.sysv_mq_max) {
    return "above /proc/sys/kernel/msgmax (" + std::to_string(s.sysv_mq_max) + " bytes)";
  }
  return "";
}

// Prints "[7/61] unix 4 KiB round trip..." over itself on stderr, when it is a terminal.
class Progress {
 public:
  explicit Progress(int total) : total_(total), on_(::isatty(STDERR_FILENO) == 1) {}
  ~Progress() {
    if (on_ && done_ > 0) std::fprintf(stderr, "\r\033[K");
  }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void step(const std::string& what) {
    ++done_;
    if (on_) std::fprintf(stderr, "\r\033[K[%d/%d] %s...", done_, total_, what.c_str());
  }

 private:
  int total_;
  bool on_;
  int done_ = 0;
};

// Measures `t` at every size into `results`; `roudi` runs when `t` is iceoryx.
void measure_transport(const Info& t, const Settings& s, Progress& progress, Results& results,
                       int& serial, Roudi* roudi) {
  if (std::none_of(s.sizes.begin(), s.sizes.end(), [&](std::size_t n) { return applies(t, n); })) {
    results.notes.push_back(std::string(t.name) + ": skipped, measured at 64 B only");
  }
  for (std::size_t size : s.sizes) {
    if (!applies(t, size)) continue;
    if (std::string why = skip_reason(t, size, s); !why.empty()) {
      results.notes.push_back(std::string(t.name) + " " + format_bytes(size) + ": skipped, " + why);
      continue;
    }
    Cell cell{size, &t, std::nullopt, std::nullopt, ""};
    const std::string what = std::string(t.name) + " " + format_bytes(size);
    try {
      if (t.round_trip) {
        progress.step(what + " round trip");
        const auto transport = make(t.id, size, true, s, ++serial, roudi);
        cell.round_trip = measure_round_trip(*transport, s.budget);
      }
      if (t.throughput) {
        progress.step(what + " one-way");
        if (t.id == Id::memcpy) {
          cell.stream = measure_memcpy(s.budget, size);
        } else {
          const auto transport = make(t.id, size, false, s, ++serial, roudi);
          cell.stream = measure_stream(*transport, s.budget, size);
        }
      }
    } catch (const Interrupted&) {
      throw;
    } catch (const std::exception& e) {
      cell.failure = e.what();
      results.notes.push_back(what + ": FAILED: " + e.what());
      results.failed = true;
    }
    results.cells.push_back(std::move(cell));
  }
}

int count_steps(const std::vector<const Info*>& chosen, const Settings& s) {
  int steps = 0;
  bool iceoryx = false;
  for (const Info* t : chosen) {
    iceoryx = iceoryx || is_iceoryx(t->id);
    for (std::size_t size : s.sizes) {
      if (applies(*t, size) && skip_reason(*t, size, s).empty()) {
        steps += int{t->round_trip} + int{t->throughput};
      }
    }
  }
  return steps + int{iceoryx};  // starting RouDi is a step too
}

Results measure_all(const std::vector<const Info*>& chosen, const Settings& s) {
  Results results;
  Progress progress(count_steps(chosen, s));
  int serial = 0;
  bool iceoryx_seen = false;
#ifdef SHMKIT_BENCH_HAVE_ICEORYX
  std::unique_ptr<Roudi> roudi;
#endif
  for (const Info* t : chosen) {
    if (!is_iceoryx(t->id)) {
#ifdef SHMKIT_BENCH_HAVE_ICEORYX
      roudi.reset();  // stopped as soon as the iceoryx rows are done: it wakes up periodically
#endif
      measure_transport(*t, s, progress, results, serial, nullptr);
      continue;
    }
#ifdef SHMKIT_BENCH_HAVE_ICEORYX
    if (!iceoryx_seen) {
      progress.step("starting iox-roudi");
      roudi = std::make_unique<Roudi>();
      if (!*roudi) results.notes.push_back("iceoryx: skipped: " + roudi->why());
    }
    if (*roudi) measure_transport(*t, s, progress, results, serial, roudi.get());
#else
    if (!iceoryx_seen) {
      results.notes.push_back("iceoryx: skipped: not built in (CMake did not find iceoryx_posh)");
    }
#endif
    iceoryx_seen = true;
  }
  return results;
}

// ---- Report ----

std::string format_ns(double ns) {
  char buf[32];
  if (ns < 1000) {
    std::snprintf(buf, sizeof buf, "%.0f ns", ns);
  } else if (ns < 10'000) {
    std::snprintf(buf, sizeof buf, "%.2f us", ns / 1e3);
  } else if (ns < 1'000'000) {
    std::snprintf(buf, sizeof buf, "%.1f us", ns / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f ms", ns / 1e6);
  }
  return buf;
}

// 3 significant digits with a decimal prefix: "12.3 M", "456 k".
std::string format_si(double v, const char* unit) {
  static const char* const kPrefixes[] = {"", "k", "M", "G", "T"};
  int p = 0;
  while (v >= 1000 && p < 4) {
    v /= 1000;
    ++p;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf,
                v >= 100  ? "%.0f %s%s"
                : v >= 10 ? "%.1f %s%s"
                          : "%.2f %s%s",
                v, kPrefixes[p], unit);
  return buf;
}

// Axis labels of powers of ten: "100 ns", "1 us", "10 GB/s".
std::string tick_ns(double ns) {
  char buf[32];
  const char* unit = ns >= 1e6 ? "ms" : ns >= 1e3 ? "us" : "ns";
  std::snprintf(buf, sizeof buf, "%g %s", ns >= 1e6 ? ns / 1e6 : ns >= 1e3 ? ns / 1e3 : ns, unit);
  return buf;
}
std::string tick_bytes(double v) {
  static const char* const kUnits[] = {"B/s", "kB/s", "MB/s", "GB/s", "TB/s"};
  int u = 0;
  for (; v >= 1000 && u < 4; ++u) v /= 1000;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g %s", v, kUnits[u]);
  return buf;
}

Table make_table(const Results& r, const Settings& s) {
  Table t;
  t.cells.push_back(
      {"size", "transport", "RT median", "RT p99", "RTs/sample", "msgs/s", "bytes/s"});
  t.right_aligned = {false, false, true, true, true, true, true};
  for (std::size_t size : s.sizes) {
    for (const Cell& c : r.cells) {
      if (c.size != size) continue;
      std::vector<std::string> line = {format_bytes(size), c.transport->label, "", "", "", "", ""};
      if (c.round_trip) {
        line[2] = format_ns(c.round_trip->median_ns);
        line[3] = format_ns(c.round_trip->p99_ns);
        line[4] = std::to_string(c.round_trip->batch);
      }
      if (c.stream) {
        line[5] = format_si(c.stream->median, "");
        line[6] = format_si(c.stream->median * static_cast<double>(size), "B/s");
      }
      if (!c.failure.empty()) line[2] = "failed";
      t.cells.push_back(std::move(line));
    }
  }
  return t;
}

void add_rows(Report& report, const Results& r) {
  for (const Cell& c : r.cells) {
    const double size = static_cast<double>(c.size);
    if (c.round_trip) {
      const Latency& l = *c.round_trip;
      Stats stats{l.median_ns / 1e3, l.min_ns / 1e3, l.max_ns / 1e3, static_cast<int>(l.samples)};
      report.rows.push_back({format_bytes(c.size) + " round trip",
                             c.transport->label,
                             "us",
                             stats,
                             l.batch,
                             "",
                             {{"size_bytes", size}, {"p99_us", l.p99_ns / 1e3}}});
    }
    if (c.stream) {
      report.rows.push_back({format_bytes(c.size) + " one-way",
                             c.transport->label,
                             "msgs/s",
                             *c.stream,
                             0,
                             "",
                             {{"size_bytes", size}, {"bytes_per_s", c.stream->median * size}}});
    }
  }
}

void add_ratios(Report& report, const Results& r) {
  // numerator / denominator, arranged so that > 1 means shmkit is faster.
  auto add = [&](const char* name, double numerator, double denominator, std::optional<double> goal,
                 const char* meaning) {
    if (numerator > 0 && denominator > 0) {
      report.ratios.push_back({name, numerator / denominator, goal, meaning});
    } else {
      report.notes.push_back(std::string(name) + ": omitted, not measured: " + meaning);
    }
  };
  const std::size_t b64 = 64, m1 = kMiB;
  // The headline busy-poll figures use the zero-copy API (loan/publish, receive/release), the
  // way a Ring is meant to be used busy-polled and the way iceoryx is measured; the "_copy"
  // ratios show what send(bytes) / receive(buffer) cost on top.
  add("latency_vs_cacheline", r.round_trip_ns(b64, Id::cacheline),
      r.round_trip_ns(b64, Id::shmkit_zero_copy), 0.67,
      "64 B: cache-line one-way (RT/2) / shmkit busy-poll zero-copy one-way");
  add("latency_vs_cacheline_copy", r.round_trip_ns(b64, Id::cacheline),
      r.round_trip_ns(b64, Id::shmkit_busy), std::nullopt,
      "64 B: cache-line one-way (RT/2) / shmkit busy-poll copying one-way");
  add("latency_vs_iceoryx", r.round_trip_ns(b64, Id::iceoryx),
      r.round_trip_ns(b64, Id::shmkit_zero_copy), 15.0,
      "64 B: iceoryx busy-poll RT / shmkit busy-poll zero-copy RT");
  add("latency_vs_iceoryx_copy", r.round_trip_ns(b64, Id::iceoryx),
      r.round_trip_ns(b64, Id::shmkit_busy), std::nullopt,
      "64 B: iceoryx busy-poll RT / shmkit busy-poll copying RT");
  add("blocking_vs_futex", r.round_trip_ns(b64, Id::futex), r.round_trip_ns(b64, Id::shmkit_block),
      0.9, "64 B: raw futex RT / shmkit Wait::block RT");
  add("spin_then_block_vs_pipe", r.round_trip_ns(b64, Id::pipe),
      r.round_trip_ns(b64, Id::shmkit_spin), 50.0, "64 B: pipe RT / shmkit spin-then-block RT");
  add("throughput64_vs_pipe", r.msgs_per_s(b64, Id::shmkit_zero_copy), r.msgs_per_s(b64, Id::pipe),
      15.0, "64 B: shmkit busy-poll zero-copy msgs/s / pipe msgs/s");
  add("throughput64_copy_vs_pipe", r.msgs_per_s(b64, Id::shmkit_busy),
      r.msgs_per_s(b64, Id::pipe), std::nullopt, "64 B: shmkit busy-poll copying msgs/s / pipe msgs/s");
  add("zero_copy_1m_vs_unix", r.msgs_per_s(m1, Id::shmkit_zero_copy),
      r.msgs_per_s(m1, Id::unix_socket), 5.0,
      "1 MiB: shmkit zero-copy bytes/s / unix socket bytes/s");
  add("throughput64_vs_iceoryx", r.msgs_per_s(b64, Id::shmkit_zero_copy),
      r.msgs_per_s(b64, Id::iceoryx), std::nullopt,
      "64 B: shmkit busy-poll zero-copy msgs/s / iceoryx busy-poll msgs/s");
  add("zero_copy_1m_vs_iceoryx", r.msgs_per_s(m1, Id::shmkit_zero_copy),
      r.msgs_per_s(m1, Id::iceoryx), std::nullopt,
      "1 MiB: shmkit zero-copy bytes/s / iceoryx bytes/s");
  add("zero_copy_1m_vs_copy", r.msgs_per_s(m1, Id::shmkit_zero_copy),
      r.msgs_per_s(m1, Id::shmkit_busy), std::nullopt,
      "1 MiB: shmkit zero-copy bytes/s / shmkit send+receive (copying) bytes/s");
}

void add_method_notes(Report& report, const Settings& s) {
  auto& n = report.notes;
  n.push_back("two processes per measurement, pinned to CPUs " + std::to_string(s.budget.cpu_a) +
              " and " + std::to_string(s.budget.cpu_b) +
              ": a pings (produces), b echoes (consumes)");
  n.push_back(
      "fairness: the producer writes every byte of a message once (memset), the consumer "
      "reads one word per 64 bytes and the last word; zero-copy does both in the slot or chunk itself");
  n.push_back(
      "RT: round trip, same size both ways; median and p99 over samples, a sample = a "
      "batch of RTs (RTs/sample; >= 2 us) timed by steady_clock; one-way latency = RT/2");
  n.push_back(
      "msgs/s: a one-way stream timed until the consumer has read its last message; "
      "median of " +
      std::to_string(kStreams) + " streams; bytes/s = msgs/s x size");
  n.push_back(
      "kernel transports with default buffer sizes and limits; unix = socketpair("
      "AF_UNIX, SOCK_STREAM); POSIX mq depth " +
      std::to_string(s.posix_mq_depth));
  std::string caps;
  for (std::size_t size : s.sizes) {
    caps += (caps.empty() ? "" : ", ") + std::to_string(ring_capacity_round_trip(size)) + "/" +
            std::to_string(ring_capacity_stream(size)) + " (" + format_bytes(size) + ")";
  }
  n.push_back("shmkit: two anonymous Rings, slot = message size, capacity for RT/stream " + caps);
  n.push_back(
      "shmkit busy-poll, spin-then-block, block: send() and receive(buffer), a copy each "
      "way; zero-copy: busy-poll, loan/publish and receive/release");
#ifdef SHMKIT_BENCH_HAVE_ICEORYX
  n.push_back(std::string("iceoryx ") + iceoryx_version() +
              ": iox-roudi started and stopped "
              "(SIGTERM) by this benchmark; untyped pub/sub, WAIT_FOR_CONSUMER + BLOCK_PRODUCER");
  n.push_back(
      "iceoryx queue 256 (4 above 512 KiB: RouDi's built-in pools have ten 4 MiB chunks); "
      "busy-poll: take() in a loop; WaitSet: wait() when empty");
#endif
  n.push_back(
      "floors: cache line = two 8-byte counters on their own lines, busy-polled; futex = "
      "FUTEX_WAKE / FUTEX_WAIT, no spin (both 64 B only); memcpy in one process");
}

void write_plot(const std::string& path, const Results& r, const Settings& s) {
  PlotPanel latency{"round trip, median (log scale; lower is better)", {}, tick_ns};
  PlotPanel stream{"one-way throughput, bytes/s (log scale; higher is better)", {}, tick_bytes};
  for (std::size_t size : s.sizes) {
    PlotGroup rt{format_bytes(size), {}}, tp{format_bytes(size), {}};
    for (const Cell& c : r.cells) {
      if (c.size != size) continue;
      if (c.round_trip) {
        rt.bars.push_back({c.transport->label, c.round_trip->median_ns,
                           format_ns(c.round_trip->median_ns), c.transport->colour});
      }
      if (c.stream) {
        const double bytes = c.stream->median * static_cast<double>(size);
        tp.bars.push_back(
            {c.transport->label, bytes, format_si(bytes, "B/s"), c.transport->colour});
      }
    }
    latency.groups.push_back(std::move(rt));
    stream.groups.push_back(std::move(tp));
  }
  write_svg_chart(path, "shmkit bench ipc: two processes, two CPUs", {latency, stream});
}

// ---- Options ----

// The transports named in `names` (all when empty), in table order; nullopt after printing
// the error when a name is unknown.
std::optional<std::vector<const Info*>> choose(const std::vector<std::string>& names) {
  std::vector<const Info*> chosen;
  for (const std::string& name : names) {
    const auto known = std::find_if(std::begin(kTransports), std::end(kTransports),
                                    [&](const Info& t) { return name == t.name; });
    if (known == std::end(kTransports)) {
      std::string all;
      for (const Info& t : kTransports) all += (all.empty() ? "" : ", ") + std::string(t.name);
      std::fprintf(stderr, "shmkit bench ipc: unknown transport '%s' (known: %s)\n", name.c_str(),
                   all.c_str());
      return std::nullopt;
    }
  }
  for (const Info& t : kTransports) {
    if (names.empty() || std::find(names.begin(), names.end(), t.name) != names.end()) {
      chosen.push_back(&t);
    }
  }
  return chosen;
}

std::optional<Settings> settings_from(const Options& options) {
  Settings s;
  for (std::size_t size : options.sizes) {
    if (size < kMinSize || size > kMaxSize) {
      std::fprintf(stderr, "shmkit bench ipc: message size %zu out of range (8 B .. 64 MiB)\n",
                   size);
      return std::nullopt;
    }
    if (std::find(s.sizes.begin(), s.sizes.end(), size) == s.sizes.end()) s.sizes.push_back(size);
  }
  if (s.sizes.empty()) s.sizes = {64, 4 * kKiB, kMiB};
  const double seconds = options.duration > 0 ? options.duration : options.quick ? 0.03 : 0.4;
  s.budget.measure_ns = static_cast<std::int64_t>(seconds * 1e9);
  s.budget.warmup_ns = s.budget.measure_ns / 4;
  // Count the machine's CPUs, not this process's: --cpu has pinned it already.
  const int cpus = static_cast<int>(std::thread::hardware_concurrency());
  s.budget.cpu_a = options.cpu >= 0 ? options.cpu : 0;
  s.two_cpus = cpus >= 2;
  s.budget.cpu_b = s.two_cpus ? (s.budget.cpu_a == 0 ? 1 : 0) : s.budget.cpu_a;
  s.posix_mq_max = posix_mq_max_message();
  s.sysv_mq_max = sysv_mq_max_message();
  s.posix_mq_depth = posix_mq_max_depth();
  s.mq_names[0] = unique_name("mq-ab");
  s.mq_names[1] = unique_name("mq-ba");
  return s;
}

// Ignores SIGPIPE while it lives, so a write to a dead peer's pipe is an error, not a death.
class IgnoreSigpipe {
 public:
  IgnoreSigpipe() {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &previous_);
  }
  ~IgnoreSigpipe() { ::sigaction(SIGPIPE, &previous_, nullptr); }
  IgnoreSigpipe(const IgnoreSigpipe&) = delete;
  IgnoreSigpipe& operator=(const IgnoreSigpipe&) = delete;

 private:
  struct sigaction previous_ {};
};

Report make_report(const Results& results, const Settings& s) {
  Report report;
  report.benchmark = "ipc";
  report.title = "ipc: two processes exchanging messages, shmkit Ring against the usual IPC";
  char duration[32];
  std::snprintf(duration, sizeof duration, "%g", static_cast<double>(s.budget.measure_ns) / 1e9);
  std::string sizes;
  for (std::size_t size : s.sizes) sizes += (sizes.empty() ? "" : ",") + std::to_string(size);
  report.settings = {{"cpu_a", std::to_string(s.budget.cpu_a)},
                     {"cpu_b", std::to_string(s.budget.cpu_b)},
                     {"duration_s", duration},
                     {"sizes", sizes}};
  add_method_notes(report, s);
  report.notes.insert(report.notes.end(), results.notes.begin(), results.notes.end());
  add_rows(report, results);
  add_ratios(report, results);
  return report;
}

}  // namespace

int run_ipc(const Options& options) {
  const auto chosen = choose(options.transports);
  const auto settings = settings_from(options);
  if (!chosen || !settings) return 2;
  // A chart that cannot be written should fail now, not after a minute of measuring.
  if (!options.plot.empty() && !std::ofstream(options.plot, std::ios::app)) {
    std::fprintf(stderr, "shmkit bench ipc: cannot write %s\n", options.plot.c_str());
    return 2;
  }
  const Settings& s = *settings;

  CleanupScope cleanup;
  cleanup.add_mqueue(s.mq_names[0]);
  cleanup.add_mqueue(s.mq_names[1]);
  IgnoreSigpipe no_sigpipe;
  const Results results = measure_all(*chosen, s);

  Report report = make_report(results, s);
  if (!options.plot.empty()) {
    write_plot(options.plot, results, s);
    report.notes.push_back("chart written to " + options.plot);
  }
  if (options.json) {
    print_json(report);
  } else {
    print_table(report, make_table(results, s));
  }
  return results.failed ? 1 : 0;
}

}  // namespace shmkit::bench
