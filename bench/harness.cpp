// SPDX-License-Identifier: MIT
// The benchmark harness: repetitions and statistics, pinning, reports, cleanup, children.
// Benchmarks are not library code: they call the kernel directly, as the peers they compare
// shmkit with do, so the system headers are used here and not through src/os.
#include "harness.hpp"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <system_error>

namespace shmkit::bench {

// ---- Timing ----

Stats summarize(std::vector<double> samples) {
  Stats s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  const std::size_t n = samples.size();
  s.median = n % 2 == 1 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
  s.min = samples.front();
  s.max = samples.back();
  s.repetitions = static_cast<int>(n);
  return s;
}

Stats scaled(Stats stats, double divisor) {
  stats.median /= divisor;
  stats.min /= divisor;
  stats.max /= divisor;
  return stats;
}

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::vector<Stats> measure_round_robin(const std::vector<Variant>& variants, const Plan& plan) {
  const std::size_t count = variants.size();
  for (int w = 0; w < plan.warmup; ++w) {
    for (const Variant& v : variants) {
      throw_if_stop_requested();
      v.run(plan.operations);
    }
  }
  std::vector<std::vector<double>> samples(count);
  for (int r = 0; r < plan.repetitions; ++r) {
    // Rotating the first variant keeps "runs right after variant X" from biasing one variant.
    for (std::size_t i = 0; i < count; ++i) {
      throw_if_stop_requested();
      const std::size_t k = (i + static_cast<std::size_t>(r)) % count;
      const std::int64_t start = now_ns();
      variants[k].run(plan.operations);
      const std::int64_t stop = now_ns();
      samples[k].push_back(static_cast<double>(stop - start) /
                           static_cast<double>(plan.operations));
    }
  }
  std::vector<Stats> stats;
  stats.reserve(count);
  for (auto& s : samples) stats.push_back(summarize(std::move(s)));
  return stats;
}

Stats measure(const Variant& variant, const Plan& plan) {
  return measure_round_robin({variant}, plan).front();
}

double geometric_mean(const std::vector<double>& values) {
  if (values.empty()) return 0;
  double log_sum = 0;
  for (double v : values) log_sum += std::log(v);
  return std::exp(log_sum / static_cast<double>(values.size()));
}

// ---- CPU placement ----

void pin_to_cpu(int cpu) {
  if (cpu < 0 || cpu >= CPU_SETSIZE) {
    throw std::system_error(EINVAL, std::generic_category(), "pin to cpu " + std::to_string(cpu));
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    throw std::system_error(errno, std::generic_category(), "pin to cpu " + std::to_string(cpu));
  }
}

int cpus_available() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return CPU_COUNT(&set);
}

// ---- Reports ----

const Row* Report::find(const std::string& case_name, const std::string& variant) const {
  for (const Row& row : rows) {
    if (row.case_name == case_name && row.variant == variant) return &row;
  }
  return nullptr;
}

namespace {

// Four significant digits without an exponent, as in research/measured-here.md.
std::string number(double v) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  const double a = std::fabs(v);
  const char* format = a >= 1000 ? "%.0f" : a >= 100 ? "%.1f" : a >= 10 ? "%.2f" : "%.3f";
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  const bool integral = std::fabs(v) < 9e15 && v == std::floor(v);
  std::snprintf(buf, sizeof buf, integral ? "%.0f" : "%.6g", v);
  return buf;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

struct Machine {
  int cpus = 0;
  std::string cpu_model;
  std::string kernel;
  bool virtualized = false;
};

Machine machine() {
  Machine m;
  m.cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  utsname u{};
  if (uname(&u) == 0) m.kernel = u.release;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (m.cpu_model.empty() && line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) m.cpu_model = line.substr(colon + 2);
    }
    if (line.rfind("flags", 0) == 0 && line.find(" hypervisor") != std::string::npos) {
      m.virtualized = true;
    }
  }
  return m;
}

void print_cells(const std::vector<std::vector<std::string>>& cells,
                 const std::vector<bool>& right_aligned) {
  std::vector<std::size_t> width(right_aligned.size(), 0);
  for (const auto& line : cells) {
    for (std::size_t c = 0; c < line.size(); ++c) width[c] = std::max(width[c], line[c].size());
  }
  for (std::size_t l = 0; l < cells.size(); ++l) {
    std::string out;
    for (std::size_t c = 0; c < cells[l].size(); ++c) {
      const std::string& cell = cells[l][c];
      const std::string pad(width[c] - cell.size(), ' ');
      out += c == 0 ? "" : "  ";
      out += right_aligned[c] ? pad + cell : cell + pad;
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    std::printf("%s\n", out.c_str());
    if (l == 0) {
      std::size_t total = 0;
      for (std::size_t w : width) total += w + 2;
      std::printf("%s\n", std::string(total - 2, '-').c_str());
    }
  }
}

}  // namespace

namespace {

void print_heading(const Report& report) {
  std::printf("%s\n", report.title.c_str());
  for (const std::string& note : report.notes) std::printf("  %s\n", note.c_str());
  std::printf("\n");
}

void print_ratios(const Report& report) {
  if (report.ratios.empty()) return;
  std::printf("\nratios (A / B = median time of A over that of B; > 1: B is faster; a name "
              "without a case suffix is the geometric mean over the cases)\n");
  std::vector<std::vector<std::string>> rcells = {{"ratio", "value", "goal", "meaning"}};
  for (const Ratio& r : report.ratios) {
    std::string goal;
    if (r.goal) {
      const bool met = r.at_most ? r.value <= *r.goal : r.value >= *r.goal;
      goal = (r.at_most ? "<= " : ">= ") + number(*r.goal) + (met ? " met" : " MISSED");
    }
    rcells.push_back({r.name, number(r.value), goal, r.meaning});
  }
  print_cells(rcells, {false, true, false, false});
}

}  // namespace

void print_table(const Report& report) {
  print_heading(report);

  bool one_unit = true;
  for (const Row& row : report.rows) one_unit = one_unit && row.unit == report.rows.front().unit;
  const std::string unit = one_unit && !report.rows.empty() ? report.rows.front().unit : "";

  std::vector<std::vector<std::string>> cells;
  std::vector<std::string> header = {"case", "variant"};
  if (!one_unit) header.emplace_back("unit");
  header.push_back(one_unit ? "median " + unit : "median");
  header.insert(header.end(), {"min..max", "R x N", "baseline/this"});
  cells.push_back(header);
  for (const Row& row : report.rows) {
    std::vector<std::string> line = {row.case_name, row.variant};
    if (!one_unit) line.push_back(row.unit);
    line.push_back(number(row.stats.median));
    line.push_back(number(row.stats.min) + ".." + number(row.stats.max));
    line.push_back(std::to_string(row.stats.repetitions) + " x " + std::to_string(row.operations));
    const Row* base = row.baseline.empty() ? nullptr : report.find(row.case_name, row.baseline);
    line.push_back(base != nullptr && row.stats.median > 0
                       ? number(base->stats.median / row.stats.median) + " (" + row.baseline + ")"
                       : "");
    cells.push_back(std::move(line));
  }
  std::vector<bool> right(header.size(), true);
  right[0] = right[1] = false;
  right.back() = false;
  print_cells(cells, right);
  print_ratios(report);
}

void print_table(const Report& report, const Table& table) {
  print_heading(report);
  print_cells(table.cells, table.right_aligned);
  print_ratios(report);
}

namespace {

// Appends JSON members with += only (g++ 12 warns falsely, -Wrestrict, on long `"x" + s` chains).
class JsonObject {
 public:
  explicit JsonObject(std::string& out) : out_(out) { out_ += '{'; }
  ~JsonObject() { out_ += '}'; }
  JsonObject(const JsonObject&) = delete;
  JsonObject& operator=(const JsonObject&) = delete;
  // Appends "key": and leaves the value to the caller.
  std::string& key(const std::string& name) {
    if (!first_) out_ += ',';
    first_ = false;
    out_ += json_string(name);
    out_ += ':';
    return out_;
  }
  void raw(const std::string& name, const std::string& json) { key(name) += json; }
  void text(const std::string& name, const std::string& value) { key(name) += json_string(value); }
  void number(const std::string& name, double value) { key(name) += json_number(value); }

 private:
  std::string& out_;
  bool first_ = true;
};

}  // namespace

void print_json(const Report& report) {
  const Machine m = machine();
  std::string out;
  {
    JsonObject top(out);
    top.text("benchmark", report.benchmark);
    top.text("title", report.title);
    top.key("machine");
    {
      JsonObject o(out);
      o.number("cpus", m.cpus);
      o.text("cpu_model", m.cpu_model);
      o.text("kernel", m.kernel);
      o.raw("virtualized", m.virtualized ? "true" : "false");
    }
    top.key("settings");
    {
      JsonObject o(out);
      for (const auto& [name, value] : report.settings) o.text(name, value);
    }
    top.key("notes") += '[';
    for (std::size_t i = 0; i < report.notes.size(); ++i) {
      if (i > 0) out += ',';
      out += json_string(report.notes[i]);
    }
    out += ']';
    top.key("results") += '[';
    for (std::size_t i = 0; i < report.rows.size(); ++i) {
      const Row& row = report.rows[i];
      if (i > 0) out += ',';
      JsonObject o(out);
      o.text("case", row.case_name);
      o.text("variant", row.variant);
      o.text("unit", row.unit);
      o.number("median", row.stats.median);
      o.number("min", row.stats.min);
      o.number("max", row.stats.max);
      o.number("repetitions", row.stats.repetitions);
      o.number("operations", static_cast<double>(row.operations));
      for (const auto& [name, value] : row.params) o.number(name, value);
    }
    out += ']';
    top.key("ratios");
    {
      JsonObject o(out);
      for (const Ratio& r : report.ratios) o.number(r.name, r.value);
    }
    top.key("goals");
    {
      JsonObject o(out);
      for (const Ratio& r : report.ratios) {
        if (r.goal) o.number(r.name, *r.goal);
      }
    }
    top.key("goals_at_most");  // of these ratios, the goal is a ceiling (lower is better)
    {
      JsonObject o(out);
      for (const Ratio& r : report.ratios) {
        if (r.goal && r.at_most) o.number(r.name, *r.goal);
      }
    }
  }
  std::printf("%s\n", out.c_str());
}

std::string format_bytes(std::uint64_t bytes) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  std::uint64_t v = bytes;
  int unit = -1;
  while (v >= 1024 && v % 1024 == 0 && unit < 3) {
    v /= 1024;
    ++unit;
  }
  if (unit < 0) return std::to_string(bytes) + " B";
  return std::to_string(v) + " " + kUnits[unit];
}

// ---- Cleanup ----

namespace {

// Fixed storage, so the signal handler touches no allocator: "/dev/shm" + name per entry.
constexpr int kMaxNames = 64;
constexpr std::size_t kMaxPath = 256;
constexpr std::size_t kShmDirLength = sizeof("/dev/shm") - 1;
char g_paths[kMaxNames][kMaxPath];
std::atomic<int> g_path_count{0};  // entries of g_paths published (release) for the handler
char g_mqueues[kMaxNames][kMaxPath];  // POSIX message queue names, leading '/' included
std::atomic<int> g_mqueue_count{0};   // entries of g_mqueues published (release)
std::atomic<int> g_sysv_id{-1};    // live System V segment of a variant, or -1
pid_t g_owner = 0;                 // the process whose scope it is; children never clean up
std::atomic<int> g_pending_signal{0};  // first SIGINT/SIGTERM/SIGHUP received, or 0
constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
struct sigaction g_previous[3];

void remove_registered(bool from_handler) noexcept {
  const int count = g_path_count.load(std::memory_order_acquire);
  for (int i = 0; i < count; ++i) {
    // unlink() is async-signal-safe; shm_unlink() is the same call on glibc.
    if (from_handler) {
      ::unlink(g_paths[i]);
    } else {
      ::shm_unlink(g_paths[i] + kShmDirLength);
    }
  }
  // The raw system call (mq_unlink(3) minus its check of the '/') is async-signal-safe.
  const int queues = g_mqueue_count.load(std::memory_order_acquire);
  for (int i = 0; i < queues; ++i) ::syscall(SYS_mq_unlink, g_mqueues[i] + 1);
  const int id = g_sysv_id.exchange(-1, std::memory_order_acq_rel);
  if (id >= 0) ::shmctl(id, IPC_RMID, nullptr);
}

// The first signal asks the run to stop between two measured batches, so that everything,
// shmkit's own segments included, is released by unwinding; a second one removes what was
// registered and dies at once. A forked child dies as it would without us.
void on_signal(int sig) {
  int none = 0;
  if (::getpid() == g_owner) {
    if (g_pending_signal.compare_exchange_strong(none, sig)) return;
    remove_registered(true);
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

bool stop_requested() noexcept { return g_pending_signal.load(std::memory_order_relaxed) != 0; }

void throw_if_stop_requested() {
  if (const int sig = g_pending_signal.load(std::memory_order_relaxed); sig != 0) {
    throw Interrupted("interrupted by " + std::string(::strsignal(sig)));
  }
}

CleanupScope::CleanupScope() {
  g_owner = ::getpid();
  g_pending_signal.store(0, std::memory_order_relaxed);
  g_path_count.store(0, std::memory_order_release);
  g_mqueue_count.store(0, std::memory_order_release);
  g_sysv_id.store(-1, std::memory_order_release);
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  for (int i = 0; i < 3; ++i) {
    sigaction(kSignals[i], nullptr, &g_previous[i]);
    // A signal ignored by whoever started us (nohup, a background job) stays ignored.
    if (g_previous[i].sa_handler != SIG_IGN) sigaction(kSignals[i], &action, nullptr);
  }
}

CleanupScope::~CleanupScope() {
  remove_all();
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &g_previous[i], nullptr);
  g_path_count.store(0, std::memory_order_release);
  g_mqueue_count.store(0, std::memory_order_release);
  // Now that nothing is left behind, let the signal do what it would have done.
  if (const int sig = g_pending_signal.exchange(0, std::memory_order_relaxed); sig != 0) {
    ::raise(sig);
  }
}

void CleanupScope::add_posix(const std::string& name) {
  const int count = g_path_count.load(std::memory_order_relaxed);
  if (count >= kMaxNames || kShmDirLength + name.size() + 1 > kMaxPath || name.empty() ||
      name[0] != '/') {
    throw std::system_error(EINVAL, std::generic_category(), "register bench name " + name);
  }
  std::snprintf(g_paths[count], kMaxPath, "/dev/shm%s", name.c_str());
  g_path_count.store(count + 1, std::memory_order_release);
}

void CleanupScope::add_mqueue(const std::string& name) {
  const int count = g_mqueue_count.load(std::memory_order_relaxed);
  if (count >= kMaxNames || name.size() + 1 > kMaxPath || name.size() < 2 || name[0] != '/') {
    throw std::system_error(EINVAL, std::generic_category(), "register bench queue " + name);
  }
  std::snprintf(g_mqueues[count], kMaxPath, "%s", name.c_str());
  g_mqueue_count.store(count + 1, std::memory_order_release);
}

void CleanupScope::note_sysv(int id) noexcept { g_sysv_id.store(id, std::memory_order_relaxed); }

void CleanupScope::forget_sysv() noexcept { g_sysv_id.store(-1, std::memory_order_relaxed); }

void CleanupScope::remove_all() noexcept { remove_registered(false); }

std::string unique_name(const std::string& tag) {
  return "/shmkit-bench-" + std::to_string(::getpid()) + "-" + tag;
}

// ---- Two processes ----

void* map_shared_anonymous(std::size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap shared");
  return p;
}

void unmap_shared_anonymous(void* memory, std::size_t size) noexcept { ::munmap(memory, size); }

namespace {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

long futex(std::atomic<std::uint32_t>* word, int op, std::uint32_t value) noexcept {
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  // Process-shared: no FUTEX_PRIVATE_FLAG, the word lives in MAP_SHARED memory.
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), op, value, nullptr,
                   nullptr, 0);
}

}  // namespace

void Barrier::arrive_and_wait() noexcept {
  const std::uint32_t generation = generation_.load(std::memory_order_acquire);
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == parties_) {
    arrived_.store(0, std::memory_order_relaxed);  // published by the release below
    generation_.fetch_add(1, std::memory_order_release);
    futex(&generation_, FUTEX_WAKE, INT_MAX);
    return;
  }
  for (std::uint32_t i = 0; i < spin_; ++i) {
    if (generation_.load(std::memory_order_acquire) != generation) return;
    cpu_relax();
  }
  while (generation_.load(std::memory_order_acquire) == generation) {
    futex(&generation_, FUTEX_WAIT, generation);  // EAGAIN/EINTR: re-check the word
  }
}

Child Child::start(int cpu, const std::function<int()>& body) {
  std::fflush(nullptr);  // or buffered output would be printed by both processes
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid > 0) return Child(pid);
  int code = 99;
  try {
    if (cpu >= 0) pin_to_cpu(cpu);
    code = body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench child %d: %s\n", static_cast<int>(::getpid()), e.what());
  } catch (...) {
    std::fprintf(stderr, "bench child %d: unknown exception\n", static_cast<int>(::getpid()));
  }
  std::fflush(nullptr);
  ::_exit(code);  // no atexit handlers or static destructors of the parent's state
}

Child::~Child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

Child& Child::operator=(Child&& other) noexcept {
  if (this != &other) {
    Child dying(std::exchange(pid_, std::exchange(other.pid_, -1)));
  }
  return *this;
}

int Child::join() {
  if (pid_ <= 0) throw std::system_error(ECHILD, std::generic_category(), "join child");
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "waitpid");
  }
  pid_ = -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

void run_with_child(int child_cpu, const std::function<int(Barrier&)>& child_body,
                    const std::function<void(Barrier&)>& parent_body) {
  SharedObject<Barrier> barrier(2u);
  Child child = Child::start(child_cpu, [&] { return child_body(*barrier); });
  parent_body(*barrier);
  if (const int code = child.join(); code != 0) {
    throw std::runtime_error("bench child exited with status " + std::to_string(code));
  }
}

}  // namespace shmkit::bench
