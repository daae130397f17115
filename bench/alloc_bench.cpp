// SPDX-License-Identifier: MIT
// `shmkit bench alloc`: the arena's allocator against Boost.Interprocess managed_shared_memory
// (the shared-memory peer) and glibc malloc and mimalloc (private heaps: the speed users know).
//   - small: 1000 live blocks of 16..256 B; each step frees a random live block and allocates a
//     new one of random size into its slot (measured-here.md §3); ns per free+allocate pair;
//   - mixed: the same with 90 % 16..1024 B, 9 % 1..16 KiB, 1 % 16..64 KiB;
//   - two processes on two cores churning one arena / one segment, each with its own blocks,
//     interleaved with one process alone: aggregate M pairs/s and the scaling;
//   - cross-process free: one process allocates, the other frees (an SPSC ring of offsets);
//   - memory (alloc_memory.cpp): usable fractions of fixed regions, and churn overhead.
// Every block carries a byte pattern that is checked; every arena and segment is checked after.
#include <dlfcn.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "alloc_memory.hpp"
#include "harness.hpp"
#include "shmkit/arena.hpp"
#include "shmkit/detail/robust.hpp"

#ifdef SHMKIT_BENCH_HAVE_BOOST
#  include <boost/interprocess/managed_shared_memory.hpp>
#endif

namespace shmkit::bench {
namespace {

constexpr std::uint32_t kLive = 1000;                      // live blocks per process
constexpr std::size_t kBoostSegmentSize = std::size_t{64} << 20;  // as the anchors

// ---- The workload: a precomputed xorshift sequence of (slot to free, size to allocate) ----

enum class SizeMix { small, mixed };

struct Step {
  std::uint32_t size;  // bytes to allocate
  std::uint32_t slot;  // live block freed first, 0..kLive-1
};

class Xorshift {
 public:
  explicit Xorshift(std::uint64_t seed) noexcept : x_(seed) {}
  std::uint64_t next() noexcept {
    x_ ^= x_ << 13;
    x_ ^= x_ >> 7;
    x_ ^= x_ << 17;
    return x_;
  }
  std::uint32_t below(std::uint32_t n) noexcept { return static_cast<std::uint32_t>(next() % n); }

 private:
  std::uint64_t x_;
};

std::uint32_t draw_size(SizeMix mix, Xorshift& rng) {
  if (mix == SizeMix::small) return 16 + rng.below(241);  // 16..256
  const std::uint32_t bucket = rng.below(100);
  if (bucket < 90) return 16 + rng.below(1009);                // 16..1024
  if (bucket < 99) return 1025 + rng.below(16384 - 1024);      // 1025..16384
  return 16385 + rng.below(65536 - 16384);                     // 16385..65536
}

// The same steps for every allocator of a case; each reader keeps its own position and wraps.
class Sequence {
 public:
  Sequence(SizeMix mix, std::uint64_t seed, int length_log2)
      : steps_(std::size_t{1} << length_log2), initial_(kLive), mask_(steps_.size() - 1) {
    Xorshift rng(seed);
    for (std::uint32_t& size : initial_) size = draw_size(mix, rng);
    for (Step& s : steps_) {
      s.slot = rng.below(kLive);
      s.size = draw_size(mix, rng);
    }
  }
  const Step& operator[](std::uint64_t i) const noexcept { return steps_[i & mask_]; }
  std::uint32_t initial_size(std::uint32_t slot) const noexcept { return initial_[slot]; }

 private:
  std::vector<Step> steps_;
  std::vector<std::uint32_t> initial_;
  std::uint64_t mask_;
};

// ---- The allocators, each behind allocate / deallocate (inlined into the loop) ----

struct GlibcHeap {
  void* allocate(std::size_t size) {
    void* p = std::malloc(size);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void deallocate(void* p) noexcept { std::free(p); }
};

// Debian ships mimalloc only as a shared library that exports malloc/free: linked, it would
// replace malloc in the whole tool (and glibc's figures would be mimalloc's). Loaded with
// RTLD_LOCAL, its malloc stays out of the global scope and mi_malloc/mi_free are called
// through pointers (one predictable indirect call each).
struct Mimalloc {
  void* (*mi_malloc)(std::size_t) = nullptr;
  void (*mi_free)(void*) = nullptr;
  int version = 0;
  std::string how;      // how it was loaded, for the notes
  std::string problem;  // why it is not available; "" when it is
};

const Mimalloc& mimalloc() {
  static const Mimalloc lib = [] {
    Mimalloc m;
#ifdef SHMKIT_BENCH_MIMALLOC_LIBRARY
    const char* path = SHMKIT_BENCH_MIMALLOC_LIBRARY;
    void* handle = ::dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      path = "libmimalloc.so.2";
      handle = ::dlopen(path, RTLD_NOW | RTLD_LOCAL);
    }
    if (handle == nullptr) {
      m.problem = std::string("cannot load mimalloc: ") + ::dlerror();
      return m;
    }
    using InHeap = bool (*)(const void*);
    using Version = int (*)();
    m.mi_malloc = reinterpret_cast<void* (*)(std::size_t)>(::dlsym(handle, "mi_malloc"));
    m.mi_free = reinterpret_cast<void (*)(void*)>(::dlsym(handle, "mi_free"));
    const auto in_heap = reinterpret_cast<InHeap>(::dlsym(handle, "mi_is_in_heap_region"));
    const auto version = reinterpret_cast<Version>(::dlsym(handle, "mi_version"));
    if (m.mi_malloc == nullptr || m.mi_free == nullptr || in_heap == nullptr) {
      m.mi_malloc = nullptr;
      m.problem = std::string(path) + " lacks mi_malloc, mi_free or mi_is_in_heap_region";
      return m;
    }
    if (version != nullptr) m.version = version();
    // The tool's malloc must still be glibc's.
    void* probe = std::malloc(48);
    const bool replaced = in_heap(probe);
    std::free(probe);
    if (replaced) m.problem = "malloc is mimalloc's in this process: the glibc figures are not glibc's";
    m.how = std::string("dlopen(\"") + path + "\", RTLD_LOCAL), mi_malloc/mi_free by pointer; " +
            (replaced ? "malloc REPLACED" : "malloc checked to be still glibc's");
#else
    m.problem = "mimalloc not found at build time";
#endif
    return m;
  }();
  return lib;
}

struct MimallocHeap {
  const Mimalloc* lib;
  void* allocate(std::size_t size) {
    void* p = lib->mi_malloc(size);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void deallocate(void* p) noexcept { lib->mi_free(p); }
};

struct ShmkitHeap {
  Arena* arena;
  void* allocate(std::size_t size) { return arena->allocate(size); }
  void deallocate(void* p) noexcept { arena->deallocate(p); }
};

#ifdef SHMKIT_BENCH_HAVE_BOOST
namespace bip = boost::interprocess;

struct BoostHeap {
  bip::managed_shared_memory* segment;
  void* allocate(std::size_t size) { return segment->allocate(size); }
  void deallocate(void* p) noexcept { segment->deallocate(p); }
};
#endif

// ---- Where the shared allocators live: a host (the parent, creates) and guests (children) ----

// A fresh arena per case, with the default configuration (1 MiB, growing up to 1 GiB).
class ShmkitHost {
 public:
  ShmkitHost(CleanupScope& cleanup, const std::string& tag) : name_(unique_name(tag)) {
    cleanup.add_posix(name_);
    arena_ = Arena::create(name_);
  }
  ~ShmkitHost() {
    arena_ = Arena();
    try {
      Arena::remove(name_);
    } catch (const std::exception&) {  // removed already: nothing to do
    }
  }
  ShmkitHost(const ShmkitHost&) = delete;
  ShmkitHost& operator=(const ShmkitHost&) = delete;
  ShmkitHeap heap() noexcept { return {&arena_}; }
  std::byte* base() const noexcept { return static_cast<std::byte*>(arena_.base()); }
  const std::string& name() const noexcept { return name_; }
  // "" when the arena is consistent (and, with `empty`, holds no block).
  std::string problem(bool empty) {
    std::string p = arena_.check();
    if (!p.empty()) return "check(): " + p;
    if (empty) {
      const ArenaStats st = arena_.stats();
      if (st.in_use != 0 || st.large_blocks != 0) {
        return "stats() after freeing everything: in_use " + std::to_string(st.in_use) +
               ", large blocks " + std::to_string(st.large_blocks);
      }
    }
    return {};
  }

 private:
  std::string name_;
  Arena arena_;
};

class ShmkitGuest {
 public:
  explicit ShmkitGuest(const std::string& name) : arena_(Arena::open(name)) {}
  ShmkitHeap heap() noexcept { return {&arena_}; }
  std::byte* base() const noexcept { return static_cast<std::byte*>(arena_.base()); }

 private:
  Arena arena_;
};

// The control for ShmkitGuest: the child allocates from an arena of its own, so nothing is
// shared; the scaling of that is what the machine allows shmkit's code.
class ShmkitOwnGuest {
 public:
  explicit ShmkitOwnGuest(const std::string&) : arena_(Arena::create_anonymous()) {}
  ShmkitHeap heap() noexcept { return {&arena_}; }

 private:
  Arena arena_;
};

#ifdef SHMKIT_BENCH_HAVE_BOOST
class BoostHost {
 public:
  BoostHost(CleanupScope& cleanup, const std::string& tag) : name_(unique_name(tag)) {
    cleanup.add_posix(name_);
    segment_ = bip::managed_shared_memory(bip::create_only, name_.c_str() + 1, kBoostSegmentSize);
  }
  ~BoostHost() {
    segment_ = bip::managed_shared_memory();
    bip::shared_memory_object::remove(name_.c_str() + 1);
  }
  BoostHost(const BoostHost&) = delete;
  BoostHost& operator=(const BoostHost&) = delete;
  BoostHeap heap() noexcept { return {&segment_}; }
  std::byte* base() const noexcept { return static_cast<std::byte*>(segment_.get_address()); }
  const std::string& name() const noexcept { return name_; }
  std::string problem(bool empty) {
    if (!segment_.check_sanity()) return "check_sanity() is false";
    if (empty && !segment_.all_memory_deallocated()) {
      return "all_memory_deallocated() is false after freeing everything";
    }
    return {};
  }

 private:
  std::string name_;
  bip::managed_shared_memory segment_;
};

class BoostGuest {
 public:
  explicit BoostGuest(const std::string& name) : segment_(bip::open_only, name.c_str() + 1) {}
  BoostHeap heap() noexcept { return {&segment_}; }
  std::byte* base() const noexcept { return static_cast<std::byte*>(segment_.get_address()); }

 private:
  bip::managed_shared_memory segment_;
};
#endif

// Private heaps in each process: what two processes get when nothing is shared.
struct GlibcGuest {
  explicit GlibcGuest(const std::string&) {}
  GlibcHeap heap() noexcept { return {}; }
};

// ---- The churn: kLive live blocks, free one and allocate one per step ----

template <class Heap>
class Churn {
 public:
  Churn(Heap heap, const Sequence& sequence) : heap_(heap), sequence_(sequence), blocks_(kLive) {
    for (std::uint32_t i = 0; i < kLive; ++i) {
      const std::uint32_t size = sequence.initial_size(i);
      auto* p = static_cast<std::uint8_t*>(heap_.allocate(size));
      fill(p, size, static_cast<std::uint8_t>(i));
      blocks_[i] = {p, size, static_cast<std::uint8_t>(i), true};
    }
  }
  ~Churn() { release(); }
  Churn(const Churn&) = delete;
  Churn& operator=(const Churn&) = delete;

  // The measured step (measured-here.md §3): free, allocate, write the first byte. The byte is
  // also checked before its block is freed (a load of a line the free touches anyway).
  void run(std::int64_t n) {
    std::uint64_t pos = position_;
    std::uint64_t bad = 0;
    for (std::int64_t i = 0; i < n; ++i, ++pos) {
      const Step& s = sequence_[pos];
      Block& b = blocks_[s.slot];
      bad += *b.p != b.tag ? 1 : 0;
      heap_.deallocate(b.p);
      b.p = nullptr;  // if allocate throws, release() must not free it again
      auto* p = static_cast<std::uint8_t*>(heap_.allocate(s.size));
      const auto tag = static_cast<std::uint8_t>(pos);
      *p = tag;
      b = {p, s.size, tag, false};
    }
    position_ = pos;
    errors_ += bad;
  }

  // Unmeasured: the same steps writing a pattern over whole blocks and checking it whole
  // before each free, so overlapping or short blocks show; then checks every live block.
  void verify(std::int64_t n) {
    std::uint64_t pos = position_;
    for (std::int64_t i = 0; i < n; ++i, ++pos) {
      const Step& s = sequence_[pos];
      Block& b = blocks_[s.slot];
      errors_ += intact(b) ? 0 : 1;
      heap_.deallocate(b.p);
      b.p = nullptr;
      auto* p = static_cast<std::uint8_t*>(heap_.allocate(s.size));
      const auto tag = static_cast<std::uint8_t>(pos * 151);
      fill(p, s.size, tag);
      b = {p, s.size, tag, true};
    }
    position_ = pos;
    for (const Block& b : blocks_) errors_ += b.p != nullptr && !intact(b) ? 1 : 0;
  }

  // Frees every live block (checking its first byte).
  void release() noexcept {
    for (Block& b : blocks_) {
      if (b.p == nullptr) continue;
      errors_ += *b.p != b.tag ? 1 : 0;
      heap_.deallocate(b.p);
      b.p = nullptr;
    }
  }

  std::uint64_t errors() const noexcept { return errors_; }

 private:
  struct Block {
    std::uint8_t* p;
    std::uint32_t size;
    std::uint8_t tag;
    bool whole;  // the pattern covers the block (else only its first byte is set)
  };
  static void fill(std::uint8_t* p, std::uint32_t size, std::uint8_t tag) noexcept {
    for (std::uint32_t j = 0; j < size; ++j) p[j] = static_cast<std::uint8_t>(tag + j);
  }
  static bool intact(const Block& b) noexcept {
    if (!b.whole) return *b.p == b.tag;
    std::uint8_t diff = 0;
    for (std::uint32_t j = 0; j < b.size; ++j) diff |= b.p[j] ^ static_cast<std::uint8_t>(b.tag + j);
    return diff == 0;
  }

  Heap heap_;
  const Sequence& sequence_;
  std::vector<Block> blocks_;
  std::uint64_t position_ = 0;
  std::uint64_t errors_ = 0;
};

// ---- Case 1 and 2: one process, all allocators interleaved ----

struct Checks {
  std::vector<std::string> failures;  // what went wrong, for the notes and the exit status
  void expect(bool ok, const std::string& what, const std::string& detail = "") {
    if (ok) return;
    failures.push_back(what + (detail.empty() ? "" : ": " + detail));
  }
};

template <class Heap>
void add_variant(std::vector<Variant>& variants, std::vector<std::int64_t>& factors,
                 const std::string& name, Churn<Heap>& churn, std::int64_t factor) {
  variants.push_back({name, [&churn, factor](std::int64_t n) { churn.run(n * factor); }});
  factors.push_back(factor);
}

struct SingleCase {
  std::string name;       // e.g. "small 16..256 B"
  SizeMix mix;
  std::uint64_t seed;
  Plan plan;              // N = the slow peer's (Boost's) pairs per repetition
  std::int64_t fast_factor;  // the private heaps and shmkit do this many times N
  std::int64_t verify_steps;
};

void single_process_case(Report& report, Checks& checks, CleanupScope& cleanup,
                         const SingleCase& c, int length_log2, const std::string& tag) {
  const Sequence sequence(c.mix, c.seed, length_log2);
  std::vector<Variant> variants;
  std::vector<std::int64_t> factors;

  ShmkitHost shmkit_host(cleanup, "alloc-" + tag + "-shmkit");
  std::optional<Churn<ShmkitHeap>> shmkit;
  shmkit.emplace(shmkit_host.heap(), sequence);
  shmkit->verify(c.verify_steps);
  add_variant(variants, factors, "shmkit", *shmkit, c.fast_factor);
#ifdef SHMKIT_BENCH_HAVE_BOOST
  BoostHost boost_host(cleanup, "alloc-" + tag + "-boost");
  std::optional<Churn<BoostHeap>> boost;
  boost.emplace(boost_host.heap(), sequence);
  boost->verify(c.verify_steps);
  add_variant(variants, factors, "boost", *boost, 1);
#endif
  Churn<GlibcHeap> glibc(GlibcHeap{}, sequence);
  glibc.verify(c.verify_steps);
  add_variant(variants, factors, "glibc malloc", glibc, c.fast_factor);
  std::optional<Churn<MimallocHeap>> mi;
  if (mimalloc().mi_malloc != nullptr) {
    mi.emplace(MimallocHeap{&mimalloc()}, sequence);
    mi->verify(c.verify_steps);
    add_variant(variants, factors, "mimalloc", *mi, c.fast_factor);
  }

  const std::vector<Stats> stats = measure_round_robin(variants, c.plan);
  for (std::size_t i = 0; i < variants.size(); ++i) {
    Row row;
    row.case_name = c.name;
    row.variant = variants[i].name;
    row.unit = "ns";
    row.stats = scaled(stats[i], static_cast<double>(factors[i]));
    row.operations = c.plan.operations * factors[i];
    row.baseline = variants[i].name == "shmkit" ? "" : "shmkit";
    report.rows.push_back(std::move(row));
  }

  // Checks: with the blocks live, then after freeing every one.
  const std::string where = c.name + ": ";
  checks.expect(shmkit_host.problem(false).empty(), where + "shmkit arena with live blocks",
                shmkit_host.problem(false));
  shmkit->release();
  checks.expect(shmkit->errors() == 0, where + "shmkit blocks' bytes",
                std::to_string(shmkit->errors()) + " damaged");
  const std::string shmkit_problem = shmkit_host.problem(true);
  checks.expect(shmkit_problem.empty(), where + "shmkit arena after freeing all", shmkit_problem);
#ifdef SHMKIT_BENCH_HAVE_BOOST
  checks.expect(boost_host.problem(false).empty(), where + "boost segment with live blocks",
                boost_host.problem(false));
  boost->release();
  checks.expect(boost->errors() == 0, where + "boost blocks' bytes",
                std::to_string(boost->errors()) + " damaged");
  const std::string boost_problem = boost_host.problem(true);
  checks.expect(boost_problem.empty(), where + "boost segment after freeing all", boost_problem);
#endif
  glibc.release();
  checks.expect(glibc.errors() == 0, where + "glibc blocks' bytes", std::to_string(glibc.errors()));
  if (mi) {
    mi->release();
    checks.expect(mi->errors() == 0, where + "mimalloc blocks' bytes", std::to_string(mi->errors()));
  }
}

// ---- Case 3: two processes on one arena, against one process alone ----

// What the calling thread got of its CPU. A round is disturbed when a process waited on a run
// queue (runnable, but another task had its CPU: another build, on this VM) for more than 5 %
// of its wall time. Sleeping in a lock (Boost under contention) is not waiting on a run queue.
struct CpuUsage {
  std::int64_t run_delay_ns = -1;  // from /proc/thread-self/schedstat; -1 if unavailable
  std::int64_t cpu_ns = 0;         // fallback: CPU time (< 90 % of the wall time: disturbed)
};
CpuUsage cpu_usage() noexcept {
  CpuUsage u;
  if (std::FILE* f = std::fopen("/proc/thread-self/schedstat", "r")) {
    long long on_cpu = 0, waiting = 0;
    if (std::fscanf(f, "%lld %lld", &on_cpu, &waiting) == 2) u.run_delay_ns = waiting;
    std::fclose(f);
  }
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  u.cpu_ns = std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
  return u;
}
bool undisturbed(const CpuUsage& before, std::int64_t wall_ns) noexcept {
  const CpuUsage after = cpu_usage();
  const auto wall = static_cast<double>(wall_ns);
  if (before.run_delay_ns >= 0 && after.run_delay_ns >= 0) {
    return static_cast<double>(after.run_delay_ns - before.run_delay_ns) <= 0.05 * wall;
  }
  return static_cast<double>(after.cpu_ns - before.cpu_ns) >= 0.9 * wall;
}

// In memory shared with the child.
struct ChildReport {
  std::atomic<std::int64_t> start{0};   // ns, steady clock (shared by both processes)
  std::atomic<std::int64_t> end{0};
  std::atomic<std::uint32_t> clean{1};  // the child's last round was undisturbed
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint32_t> failed{0};  // the child hit an exception (text in `message`)
  char message[240] = {};
  void fail(const char* what) noexcept {
    std::snprintf(message, sizeof message, "%s", what);
    failed.store(1, std::memory_order_release);
  }
};

// One measured round: M pairs (or blocks) per second.
struct Round {
  double solo = 0;   // one process alone (two-process case only)
  double pair = 0;   // both processes: aggregate
  double parent_ns = 0, child_ns = 0;  // each process's own ns per pair while both ran
  bool clean = true;
};

struct Rounds {
  std::vector<Round> all;
  // The undisturbed rounds when there are enough of them (a third, and at least 3), else all.
  std::vector<Round> used() const {
    std::vector<Round> clean;
    for (const Round& r : all) {
      if (r.clean) clean.push_back(r);
    }
    return clean.size() >= 3 && clean.size() * 3 >= all.size() ? clean : all;
  }
  std::string note(const std::string& what) const {
    const std::size_t disturbed = all.size() - used().size();
    const std::size_t dirty = static_cast<std::size_t>(
        std::count_if(all.begin(), all.end(), [](const Round& r) { return !r.clean; }));
    if (dirty == 0) return {};
    const std::string counts = std::to_string(dirty) + " of " + std::to_string(all.size());
    return disturbed != 0 ? what + ": " + counts + " rounds disturbed (a process spent > 5 % of "
                                "its wall time waiting for its CPU) and left out"
                          : what + ": " + counts + " rounds disturbed, too many to leave out: "
                                "all counted, the figure is unreliable";
  }
  Stats solo() const { return pick([](const Round& r) { return r.solo; }); }
  Stats pair() const { return pick([](const Round& r) { return r.pair; }); }
  Stats scaling() const { return pick([](const Round& r) { return r.pair / r.solo; }); }
  Stats parent_ns() const { return pick([](const Round& r) { return r.parent_ns; }); }
  Stats child_ns() const { return pick([](const Round& r) { return r.child_ns; }); }

 private:
  template <class F>
  Stats pick(F f) const {
    std::vector<double> v;
    for (const Round& r : used()) v.push_back(f(r));
    return summarize(v);
  }
};

// One allocator in the two-process case: a child churning on `cpu`, and the parent's rounds.
// Every round: both processes at once for n steps each, from a shared start to the later
// finisher, then the parent alone for n steps while the child waits in its barrier.
class PairVariant {
 public:
  virtual ~PairVariant() = default;
  virtual int child(Barrier& barrier) = 0;           // the child's whole life
  virtual void parent_round(Barrier& barrier) = 0;   // one round, parent side
  virtual void finish(Checks& checks) = 0;           // after the child exited
  const Rounds& rounds() const noexcept { return rounds_; }

 protected:
  Rounds rounds_;
};

template <class Guest, class Heap>
class PairRun final : public PairVariant {
 public:
  PairRun(std::string what, Heap parent_heap, std::string shared_name,
          const Sequence& parent_sequence, const Sequence& child_sequence, int rounds,
          int warmup, std::int64_t n)
      : what_(std::move(what)), shared_name_(std::move(shared_name)),
        child_sequence_(child_sequence), rounds_total_(rounds), warmup_(warmup), n_(n),
        churn_(parent_heap, parent_sequence) {}

  int child(Barrier& barrier) override {
    ChildReport& report = *shared_;
    std::optional<Guest> guest;
    using ChildHeap = decltype(guest->heap());
    std::optional<Churn<ChildHeap>> mine;
    try {
      guest.emplace(shared_name_);
      mine.emplace(guest->heap(), child_sequence_);
    } catch (const std::exception& e) {
      report.fail(e.what());
    }
    for (int r = 0; r < rounds_total_; ++r) {
      barrier.arrive_and_wait();  // this variant's turn; may wake from a sleep
      if (report.failed.load(std::memory_order_relaxed) == 0) {
        try {
          mine->run(n_ / 8);  // caches warm again after the other variants' turns
        } catch (const std::exception& e) {
          report.fail(e.what());
        }
      }
      barrier.arrive_and_wait();  // a spinning hand-over: both start together
      const CpuUsage usage = cpu_usage();
      const std::int64_t start = now_ns();
      if (report.failed.load(std::memory_order_relaxed) == 0) {
        try {
          mine->run(n_);
        } catch (const std::exception& e) {
          report.fail(e.what());
        }
      }
      const std::int64_t end = now_ns();
      report.clean.store(undisturbed(usage, end - start) ? 1 : 0, std::memory_order_relaxed);
      report.start.store(start, std::memory_order_relaxed);
      report.end.store(end, std::memory_order_relaxed);
      barrier.arrive_and_wait();  // publishes the times
    }
    if (mine) {
      mine->release();
      report.errors.store(mine->errors(), std::memory_order_relaxed);
    }
    mine.reset();
    guest.reset();
    return report.failed.load(std::memory_order_relaxed) == 0 ? 0 : 1;
  }

  // Both warm up (untimed), both run (timed), then the parent alone, still warm, while the
  // child waits for the next round.
  void parent_round(Barrier& barrier) override {
    ChildReport& report = *shared_;
    barrier.arrive_and_wait();
    churn_.run(n_ / 8);
    barrier.arrive_and_wait();
    const CpuUsage usage = cpu_usage();
    const std::int64_t start = now_ns();
    churn_.run(n_);
    const std::int64_t end = now_ns();
    const bool parent_clean = undisturbed(usage, end - start);
    barrier.arrive_and_wait();
    if (report.failed.load(std::memory_order_acquire) != 0) {
      throw std::runtime_error(what_ + ": child: " + report.message);
    }
    const CpuUsage solo_usage = cpu_usage();
    const std::int64_t solo_start = now_ns();
    churn_.run(n_);
    const std::int64_t solo_ns = now_ns() - solo_start;
    const bool solo_clean = undisturbed(solo_usage, solo_ns);
    if (done_++ < warmup_) return;
    const std::int64_t child_start = report.start.load(std::memory_order_relaxed);
    const std::int64_t child_end = report.end.load(std::memory_order_relaxed);
    const std::int64_t wall = std::max(end, child_end) - std::min(start, child_start);
    Round round;
    round.solo = static_cast<double>(n_) / static_cast<double>(solo_ns) * 1e3;
    round.pair = static_cast<double>(2 * n_) / static_cast<double>(wall) * 1e3;
    round.parent_ns = static_cast<double>(end - start) / static_cast<double>(n_);
    round.child_ns = static_cast<double>(child_end - child_start) / static_cast<double>(n_);
    round.clean = solo_clean && parent_clean && report.clean.load(std::memory_order_relaxed) != 0;
    rounds_.all.push_back(round);
  }

  void finish(Checks& checks) override {
    const std::uint64_t child_errors = shared_->errors.load();
    checks.expect(child_errors == 0, what_ + ": child's blocks' bytes",
                  std::to_string(child_errors) + " damaged");
    churn_.release();
    checks.expect(churn_.errors() == 0, what_ + ": parent's blocks' bytes",
                  std::to_string(churn_.errors()) + " damaged");
  }

 private:
  std::string what_;
  std::string shared_name_;
  const Sequence& child_sequence_;
  int rounds_total_;
  int warmup_;
  std::int64_t n_;
  int done_ = 0;
  SharedObject<ChildReport> shared_;
  Churn<Heap> churn_;
};

// Starts one child per variant (all on `child_cpu`, each asleep but while its variant runs),
// then runs `rounds` rounds in each of which every variant takes its turn, the first one
// rotating: a drift of the host (these are vCPUs) hits every variant alike.
void run_interleaved(const std::vector<PairVariant*>& variants, int child_cpu, int rounds,
                     std::vector<Barrier*>& barriers, std::size_t next = 0) {
  if (next < variants.size()) {
    run_with_child(
        child_cpu, [&](Barrier& b) { return variants[next]->child(b); },
        [&](Barrier& b) {
          barriers.push_back(&b);
          run_interleaved(variants, child_cpu, rounds, barriers, next + 1);
        });
    return;
  }
  for (int r = 0; r < rounds; ++r) {
    for (std::size_t i = 0; i < variants.size(); ++i) {
      throw_if_stop_requested();
      const std::size_t k = (i + static_cast<std::size_t>(r)) % variants.size();
      variants[k]->parent_round(*barriers[k]);
      // The child just done spins in its barrier for a while before it sleeps: let it, so
      // that it does not share its CPU with the next variant's child.
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
}

void add_pair_rows(Report& report, const std::string& case_name, const std::string& name,
                   const Rounds& r, std::int64_t n) {
  Row solo{case_name, name + ", 1 process", "M pairs/s", r.solo(), n, "", {}};
  Row pair{case_name, name + ", 2 processes", "M pairs/s", r.pair(), 2 * n, "", {}};
  pair.params.push_back({"scaling", r.scaling().median});
  pair.params.push_back({"parent_ns_per_pair", r.parent_ns().median});
  pair.params.push_back({"child_ns_per_pair", r.child_ns().median});
  pair.params.push_back({"rounds_disturbed",
                         static_cast<double>(r.all.size() - r.used().size())});
  report.rows.push_back(solo);
  report.rows.push_back(pair);
  char line[200];
  std::snprintf(line, sizeof line,
                "%s, 2 processes: parent %.4g ns/pair, child %.4g ns/pair; alone %.4g ns/pair",
                name.c_str(), r.parent_ns().median, r.child_ns().median,
                r.solo().median > 0 ? 1e3 / r.solo().median : 0.0);
  report.notes.emplace_back(line);
  if (const std::string note = r.note(case_name + ", " + name); !note.empty()) {
    report.notes.push_back(note);
  }
}

// ---- Case 4: one process allocates, the other frees ----

// A single-producer single-consumer ring of block offsets (tag in the top byte), in memory
// shared with the child.
struct alignas(64) Ring {
  static constexpr std::uint64_t kSlots = 1024;
  static constexpr std::uint64_t kOffsetMask = (std::uint64_t{1} << 56) - 1;
  alignas(64) std::atomic<std::uint64_t> head{0};  // pushed so far; producer stores (release)
  alignas(64) std::atomic<std::uint64_t> tail{0};  // popped so far; consumer stores (release)
  alignas(64) ChildReport consumer;
  alignas(64) std::uint64_t slots[kSlots] = {};    // published by head
};

// No allocator: the ring alone, the ceiling of this pattern.
struct NoHeap {};

template <class Heap>
void produce(Ring& ring, Heap& heap, std::byte* base, const Sequence& sequence,
             std::uint64_t& position, std::int64_t n) {
  std::uint64_t head = ring.head.load(std::memory_order_relaxed);
  std::uint64_t tail = ring.tail.load(std::memory_order_acquire);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint64_t pos = position++;
    const auto tag = static_cast<std::uint8_t>(pos);
    std::uint64_t value;
    if constexpr (std::is_same_v<Heap, NoHeap>) {
      value = pos & Ring::kOffsetMask;
    } else {
      auto* p = static_cast<std::uint8_t*>(heap.allocate(sequence[pos].size));
      *p = tag;
      value = static_cast<std::uint64_t>(reinterpret_cast<std::byte*>(p) - base);
    }
    while (head - tail == Ring::kSlots) {
      if (ring.consumer.failed.load(std::memory_order_relaxed) != 0) {
        throw std::runtime_error(std::string("consumer: ") + ring.consumer.message);
      }
      detail::cpu_relax();
      tail = ring.tail.load(std::memory_order_acquire);
    }
    ring.slots[head % Ring::kSlots] = value | std::uint64_t{tag} << 56;
    ring.head.store(++head, std::memory_order_release);
  }
}

template <class Heap>
std::uint64_t consume(Ring& ring, Heap& heap, std::byte* base, std::uint64_t& expected,
                      std::int64_t n) {
  std::uint64_t tail = ring.tail.load(std::memory_order_relaxed);
  std::uint64_t head = ring.head.load(std::memory_order_acquire);
  std::uint64_t bad = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    while (head == tail) {
      detail::cpu_relax();
      head = ring.head.load(std::memory_order_acquire);
    }
    const std::uint64_t value = ring.slots[tail % Ring::kSlots];
    const auto tag = static_cast<std::uint8_t>(value >> 56);
    if constexpr (std::is_same_v<Heap, NoHeap>) {
      bad += (value & Ring::kOffsetMask) != (expected & Ring::kOffsetMask) ? 1 : 0;
    } else {
      auto* p = reinterpret_cast<std::uint8_t*>(base + (value & Ring::kOffsetMask));
      bad += *p != tag ? 1 : 0;
      heap.deallocate(p);
    }
    bad += tag != static_cast<std::uint8_t>(expected) ? 1 : 0;
    ++expected;
    ring.tail.store(++tail, std::memory_order_release);
  }
  return bad;
}

struct NoGuest {
  explicit NoGuest(const std::string&) {}
  NoHeap heap() noexcept { return {}; }
  std::byte* base() const noexcept { return nullptr; }
};

// M blocks/s per round: from the shared start until the consumer freed the n-th block.
template <class Guest, class Heap>
Rounds cross_free(Checks& checks, const std::string& what, Heap parent_heap,
                  std::byte* parent_base, const std::string& shared_name,
                  const Sequence& sequence, int child_cpu, int rounds, int warmup,
                  std::int64_t n) {
  SharedObject<Ring> shared;
  Ring& ring = *shared;
  ChildReport& consumer = ring.consumer;
  Rounds result;
  std::uint64_t position = 0;
  run_with_child(
      child_cpu,
      [&](Barrier& barrier) {
        std::optional<Guest> guest;
        try {
          guest.emplace(shared_name);
        } catch (const std::exception& e) {
          consumer.fail(e.what());
        }
        std::uint64_t expected = 0;
        for (int r = 0; r < rounds; ++r) {
          barrier.arrive_and_wait();  // may wake from a sleep
          barrier.arrive_and_wait();  // a spinning hand-over: both start together
          const CpuUsage usage = cpu_usage();
          const std::int64_t start = now_ns();
          if (consumer.failed.load(std::memory_order_relaxed) == 0) {
            auto heap = guest->heap();
            const std::uint64_t bad = consume(ring, heap, guest->base(), expected, n);
            consumer.errors.fetch_add(bad, std::memory_order_relaxed);
          }
          const std::int64_t end = now_ns();
          consumer.clean.store(undisturbed(usage, end - start) ? 1 : 0, std::memory_order_relaxed);
          consumer.start.store(start, std::memory_order_relaxed);
          consumer.end.store(end, std::memory_order_relaxed);
          barrier.arrive_and_wait();
        }
        guest.reset();
        return consumer.failed.load(std::memory_order_relaxed) == 0 ? 0 : 1;
      },
      [&](Barrier& barrier) {
        for (int r = 0; r < rounds; ++r) {
          throw_if_stop_requested();
          barrier.arrive_and_wait();
          barrier.arrive_and_wait();
          const CpuUsage usage = cpu_usage();
          const std::int64_t start = now_ns();
          produce(ring, parent_heap, parent_base, sequence, position, n);
          const std::int64_t end = now_ns();
          const bool producer_clean = undisturbed(usage, end - start);
          barrier.arrive_and_wait();
          if (consumer.failed.load(std::memory_order_acquire) != 0) {
            throw std::runtime_error(what + ": consumer: " + consumer.message);
          }
          if (r < warmup) continue;
          const std::int64_t consumer_start = consumer.start.load(std::memory_order_relaxed);
          const std::int64_t consumer_end = consumer.end.load(std::memory_order_relaxed);
          const std::int64_t wall = consumer_end - std::min(start, consumer_start);
          Round round;
          round.pair = static_cast<double>(n) / static_cast<double>(wall) * 1e3;
          round.clean = producer_clean && consumer.clean.load(std::memory_order_relaxed) != 0;
          result.all.push_back(round);
        }
      });
  checks.expect(consumer.errors.load() == 0, what + ": blocks' bytes and order",
                std::to_string(consumer.errors.load()) + " wrong");
  return result;
}

void add_cross_row(Report& report, const std::string& case_name, const std::string& name,
                   const Rounds& r, std::int64_t n) {
  Row row{case_name, name, "M blocks/s", r.pair(), n, "", {}};
  row.params.push_back({"rounds_disturbed", static_cast<double>(r.all.size() - r.used().size())});
  report.rows.push_back(row);
  if (const std::string note = r.note(case_name + ", " + name); !note.empty()) {
    report.notes.push_back(note);
  }
}

// ---- The report ----

double median_of(const Report& report, const std::string& c, const std::string& v) {
  const Row* row = report.find(c, v);
  return row != nullptr ? row->stats.median : 0;
}

// Adds numerator / denominator (medians) as `name` when both rows exist.
void add_ratio(Report& report, const std::string& name, const std::string& c,
               const std::string& numerator, const std::string& denominator,
               std::optional<double> goal, const std::string& meaning) {
  const double num = median_of(report, c, numerator);
  const double den = median_of(report, c, denominator);
  if (num > 0 && den > 0) report.ratios.push_back({name, num / den, goal, meaning});
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

}  // namespace

int run_alloc(const Options& options) {
  // Count the machine's CPUs, not this process's: the caller may have pinned it already.
  const int cpus = static_cast<int>(std::thread::hardware_concurrency());
  const int parent_cpu = options.cpu >= 0 ? options.cpu : 0;
  pin_to_cpu(parent_cpu);
  const int child_cpu = cpus >= 2 ? (parent_cpu == 0 ? 1 : 0) : parent_cpu;
  const bool quick = options.quick;
  CleanupScope cleanup;
  Checks checks;
  const Mimalloc& mi = mimalloc();

  Report report;
  report.benchmark = "alloc";
  report.title = "alloc: shmkit Arena against Boost.Interprocess, glibc malloc and mimalloc";
  std::string command = "shmkit bench alloc";
  if (options.json) command += " --json";
  if (quick) command += " --quick";
  if (options.cpu >= 0) command += " --cpu " + std::to_string(options.cpu);
  report.settings = {{"command", command},
                     {"parent_cpu", std::to_string(parent_cpu)},
                     {"child_cpu", std::to_string(child_cpu)},
                     {"quick", quick ? "true" : "false"},
                     {"live_blocks", std::to_string(kLive)},
                     {"boost_segment_bytes", std::to_string(kBoostSegmentSize)},
                     {"load_average_at_start", load_average()},
                     {"mimalloc", mi.problem.empty() ? mi.how : mi.problem}};
  report.notes.push_back("each step frees a random one of 1000 live blocks and allocates a new "
                         "random-size block into its slot, writing its first byte; sizes and "
                         "slots from a precomputed xorshift sequence, the same for every allocator");
  report.notes.push_back("shmkit: Arena::create with the default config (1 MiB, grows to 1 GiB), "
                         "allocate/deallocate; boost: managed_shared_memory of 64 MiB "
                         "(rbtree_best_fit, mutex), allocate/deallocate");
  report.notes.push_back("1-process cases: median ns per free+allocate pair, allocators interleaved "
                         "in each repetition; 2 processes: parent on CPU " +
                         std::to_string(parent_cpu) + ", child on CPU " + std::to_string(child_cpu) +
                         ", each with its own 1000 blocks on one arena/segment (the child opens it "
                         "by name); aggregate = 2N / (shared start to later finisher)");
  report.notes.push_back("cross-process free: the parent allocates 16..256 B and pushes the offset "
                         "on a 1024-slot ring, the child frees; M blocks/s");
  if (!mi.problem.empty()) report.notes.push_back("mimalloc: " + mi.problem);
  if (mi.version != 0) report.notes.push_back("mimalloc version " + std::to_string(mi.version));
#ifndef SHMKIT_BENCH_HAVE_BOOST
  report.notes.push_back("Boost.Interprocess not found at build time: its variants are skipped");
#endif

  const int length_log2 = quick ? 18 : 20;
  const std::int64_t verify_steps = quick ? 5'000 : 50'000;
  const std::string small = "small 16..256 B";
  const std::string mixed = "mixed 16 B..64 KiB";
  // N is Boost's pairs per repetition; the others do 10 N (Boost is ~30x slower).
  const SingleCase small_case{small, SizeMix::small, 0x9e3779b97f4a7c15ull,
                              quick ? Plan{5, 10'000, 1} : Plan{15, 100'000, 1}, 10, verify_steps};
  const SingleCase mixed_case{mixed, SizeMix::mixed, 0xd1b54a32d192ed03ull,
                              quick ? Plan{5, 5'000, 1} : Plan{15, 50'000, 1}, 10, verify_steps};
  single_process_case(report, checks, cleanup, small_case, length_log2, "small");
  single_process_case(report, checks, cleanup, mixed_case, length_log2, "mixed");

  // Two processes. Short rounds, many of them: the median then stands on undisturbed ones.
  const int rounds = quick ? 5 : 25;
  const int warmup = 1;
  const std::int64_t fast_n = quick ? 100'000 : 500'000;
  const std::int64_t boost_n = quick ? 10'000 : 50'000;
  const std::string two = "2 processes, one arena/segment (small)";
  {
    const Sequence parent_sequence(SizeMix::small, 0x2545f4914f6cdd1dull, length_log2);
    const Sequence child_sequence(SizeMix::small, 0x5851f42d4c957f2dull, length_log2);
    ShmkitHost shared_host(cleanup, "alloc-2p-shmkit");
    ShmkitHost own_host(cleanup, "alloc-2p-shmkit-own");
    PairRun<ShmkitGuest, ShmkitHeap> shmkit("2 processes shmkit", shared_host.heap(),
                                            shared_host.name(), parent_sequence, child_sequence,
                                            rounds, warmup, fast_n);
    PairRun<ShmkitOwnGuest, ShmkitHeap> own("2 processes shmkit, an arena each", own_host.heap(),
                                            "", parent_sequence, child_sequence, rounds, warmup,
                                            fast_n);
    PairRun<GlibcGuest, GlibcHeap> glibc("2 processes glibc", GlibcHeap{}, "", parent_sequence,
                                         child_sequence, rounds, warmup, fast_n);
    std::vector<PairVariant*> variants = {&shmkit, &own, &glibc};
#ifdef SHMKIT_BENCH_HAVE_BOOST
    BoostHost boost_host(cleanup, "alloc-2p-boost");
    PairRun<BoostGuest, BoostHeap> boost("2 processes boost", boost_host.heap(), boost_host.name(),
                                         parent_sequence, child_sequence, rounds, warmup, boost_n);
    variants.push_back(&boost);
#endif
    std::vector<Barrier*> barriers;
    run_interleaved(variants, child_cpu, rounds, barriers);
    for (PairVariant* v : variants) v->finish(checks);

    add_pair_rows(report, two, "shmkit", shmkit.rounds(), fast_n);
    report.ratios.push_back({"two_process_scaling", shmkit.rounds().scaling().median, 1.8,
                             "shmkit: 2-process aggregate / 1 process (paired per round)"});
    add_pair_rows(report, two, "shmkit, an arena each (control)", own.rounds(), fast_n);
    report.ratios.push_back({"two_process_scaling_own_arenas", own.rounds().scaling().median,
                             std::nullopt, "shmkit, an arena per process: nothing shared"});
#ifdef SHMKIT_BENCH_HAVE_BOOST
    add_pair_rows(report, two, "boost", boost.rounds(), boost_n);
    report.ratios.push_back({"two_process_scaling_boost", boost.rounds().scaling().median,
                             std::nullopt, "boost: 2-process aggregate / 1 process"});
    const std::string bp = boost_host.problem(true);
    checks.expect(bp.empty(), "2 processes boost: segment after freeing all", bp);
#endif
    add_pair_rows(report, two, "glibc (private heaps)", glibc.rounds(), fast_n);
    report.ratios.push_back({"two_process_scaling_glibc", glibc.rounds().scaling().median,
                             std::nullopt, "glibc, a private heap each: what this machine allows"});
    add_ratio(report, "two_process_vs_boost", two, "shmkit, 2 processes", "boost, 2 processes",
              std::nullopt, "shmkit aggregate / boost aggregate");
    const std::string sp = shared_host.problem(true);
    checks.expect(sp.empty(), "2 processes shmkit: arena after freeing all", sp);
    const std::string op = own_host.problem(true);
    checks.expect(op.empty(), "2 processes shmkit, an arena each: parent's arena after freeing all",
                  op);
  }

  // Cross-process free.
  const std::string cross = "cross-process free (16..256 B)";
  {
    const Sequence sequence(SizeMix::small, 0x94d049bb133111ebull, length_log2);
    {
      ShmkitHost host(cleanup, "alloc-xf-shmkit");
      const Rounds r = cross_free<ShmkitGuest>(checks, "cross free shmkit", host.heap(),
                                               host.base(), host.name(), sequence, child_cpu,
                                               rounds, warmup, fast_n);
      add_cross_row(report, cross, "shmkit", r, fast_n);
      const std::string p = host.problem(false);
      checks.expect(p.empty(), "cross free shmkit: arena after the consumer freed all", p);
    }
#ifdef SHMKIT_BENCH_HAVE_BOOST
    {
      BoostHost host(cleanup, "alloc-xf-boost");
      const Rounds r = cross_free<BoostGuest>(checks, "cross free boost", host.heap(),
                                              host.base(), host.name(), sequence, child_cpu,
                                              rounds, warmup, boost_n);
      add_cross_row(report, cross, "boost", r, boost_n);
      const std::string p = host.problem(true);
      checks.expect(p.empty(), "cross free boost: segment after the consumer freed all", p);
    }
#endif
    {
      const Rounds r = cross_free<NoGuest>(checks, "cross free ring alone", NoHeap{}, nullptr, "",
                                           sequence, child_cpu, rounds, warmup, fast_n);
      add_cross_row(report, cross, "ring alone (ceiling)", r, fast_n);
    }
    add_ratio(report, "cross_free_vs_boost", cross, "shmkit", "boost", std::nullopt,
              "shmkit blocks/s / boost blocks/s");
    add_ratio(report, "cross_free_vs_ring", cross, "shmkit", "ring alone (ceiling)", std::nullopt,
              "shmkit blocks/s / the ring's own");
  }

  // The headline ratios: peer ns / shmkit ns (> 1: shmkit is faster).
  std::vector<Ratio> head;
  const auto peer_ratio = [&](const std::string& name, const std::string& c, const std::string& peer,
                              std::optional<double> goal) {
    const double s = median_of(report, c, "shmkit");
    const double p = median_of(report, c, peer);
    if (s > 0 && p > 0) head.push_back({name, p / s, goal, peer + " ns / shmkit ns"});
  };
  peer_ratio("small_vs_boost", small, "boost", 20.0);
  peer_ratio("small_vs_glibc", small, "glibc malloc", 1.0);
  peer_ratio("small_vs_mimalloc", small, "mimalloc", std::nullopt);
  peer_ratio("mixed_vs_boost", mixed, "boost", std::nullopt);
  peer_ratio("mixed_vs_glibc", mixed, "glibc malloc", std::nullopt);
  peer_ratio("mixed_vs_mimalloc", mixed, "mimalloc", std::nullopt);
  report.ratios.insert(report.ratios.begin(), head.begin(), head.end());

  memory_section(report, quick);

  report.notes.push_back("verified: " + std::to_string(verify_steps) +
                         " steps per allocator and 1-process case with whole-block byte patterns, "
                         "first bytes in every measured step, arena check() and Boost "
                         "check_sanity()/all_memory_deallocated() after each case");
  for (const std::string& f : checks.failures) report.notes.push_back("FAILED: " + f);

  if (options.json) {
    print_json(report);
  } else {
    print_table(report);
  }
  return checks.failures.empty() ? 0 : 1;
}

}  // namespace shmkit::bench
