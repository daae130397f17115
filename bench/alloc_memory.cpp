// SPDX-License-Identifier: MIT
// `shmkit bench alloc`, memory section: how much of a fixed-size region an allocator hands
// out, and what a churning heap costs in memory — shmkit's Arena against Boost.Interprocess's
// managed_shared_memory and glibc malloc on the same work, in the same run.
//   - usable: T threads fill a region of S bytes with random sizes until one is refused; the
//     figure is the bytes asked for over S. shmkit: a fixed arena (autogrow off, max_size S).
//     Boost: a managed_shared_memory of S. glibc (no fixed region): in a child process, fill
//     until what it took from the system (mallinfo2: arenas and mmapped chunks) has grown by S;
//     the bytes asked for by then over what it took.
//   - churn: a live set that swings between a low and a high count of 16..256 B blocks, random
//     frees and allocations; the figure is the memory the allocator committed at the end (its
//     high-water mark: shmkit's arena size, Boost's most bytes in use plus its overhead, glibc's
//     most bytes taken from the system) over the peak of live bytes asked for. Lower is better.
#include <malloc.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "alloc_memory.hpp"
#include "shmkit/arena.hpp"

#ifdef SHMKIT_BENCH_HAVE_BOOST
#  include <boost/interprocess/managed_shared_memory.hpp>
namespace bip = boost::interprocess;
#endif

namespace shmkit::bench {
namespace {

constexpr std::size_t kKiB = 1024, kMiB = 1024 * 1024;

std::uint64_t xorshift(std::uint64_t& x) {
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

struct Sizes {
  const char* label;
  std::uint32_t lo, hi;
};

// Fills from `threads` threads through `try_alloc(size)` (nullptr: refused) until one refuses,
// or `enough()` says so; returns the bytes asked for and handed out.
template <class TryAlloc, class Enough>
std::uint64_t fill(int threads, Sizes s, std::uint64_t seed, TryAlloc try_alloc, Enough enough) {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> total{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + static_cast<std::uint64_t>(t) + 1;
      std::uint64_t mine = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const auto size = static_cast<std::uint32_t>(s.lo + xorshift(x) % (s.hi - s.lo + 1));
        void* p = try_alloc(size);
        if (p == nullptr) {
          stop.store(true, std::memory_order_relaxed);
          break;
        }
        static_cast<unsigned char*>(p)[0] = 1;  // touched, as a user would
        static_cast<unsigned char*>(p)[size - 1] = 1;
        mine += size;
        if (enough(total.load(std::memory_order_relaxed) + mine)) stop.store(true, std::memory_order_relaxed);
      }
      total.fetch_add(mine, std::memory_order_relaxed);
    });
  }
  for (auto& w : workers) w.join();
  return total.load();
}

double usable_shmkit(std::size_t size, int threads, Sizes s, std::uint64_t seed) {
  const std::string name = unique_name("alloc-mem");
  ArenaConfig c;
  c.size = size;
  c.max_size = size;
  c.autogrow = false;
  double f = 0;
  {
    Arena a = Arena::create(name, c);
    const std::uint64_t got =
        fill(threads, s, seed, [&](std::size_t n) { return a.try_allocate(n); }, [](std::uint64_t) { return false; });
    f = static_cast<double>(got) / static_cast<double>(size);
  }
  Arena::remove(name);
  return f;
}

#ifdef SHMKIT_BENCH_HAVE_BOOST
double usable_boost(std::size_t size, int threads, Sizes s, std::uint64_t seed) {
  const std::string name = unique_name("alloc-mem-boost");
  double f = 0;
  {
    bip::managed_shared_memory seg(bip::create_only, name.c_str() + 1, size);
    const std::uint64_t got = fill(
        threads, s, seed, [&](std::size_t n) { return seg.allocate(n, std::nothrow); },
        [](std::uint64_t) { return false; });
    f = static_cast<double>(got) / static_cast<double>(size);
  }
  bip::shared_memory_object::remove(name.c_str() + 1);
  return f;
}
#endif

// Bytes glibc malloc has taken from the system, in every arena and in mmapped chunks.
std::uint64_t taken() {
  const struct mallinfo2 m = ::mallinfo2();
  return m.arena + m.hblkhd;
}

// Runs `body` in a child process and returns the double it reports (or -1).
template <class Body>
double in_child(Body body) {
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    ::close(fds[0]);
    const double v = body();
    (void)!::write(fds[1], &v, sizeof v);
    ::_exit(0);
  }
  ::close(fds[1]);
  double v = -1;
  if (::read(fds[0], &v, sizeof v) != sizeof v) v = -1;
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return v;
}

double usable_glibc(std::size_t size, int threads, Sizes s, std::uint64_t seed) {
  return in_child([=] {
    const std::uint64_t start = taken();
    std::atomic<std::uint64_t> since_look{0};
    const std::uint64_t step = std::max<std::uint64_t>(size / 256, 256);
    const std::uint64_t got = fill(
        threads, s, seed, [](std::size_t n) { return std::malloc(n); },
        [&](std::uint64_t asked) {
          // mallinfo2 walks the arenas under their locks; look every `step` bytes asked for.
          if (asked < since_look.load(std::memory_order_relaxed) + step) return false;
          since_look.store(asked, std::memory_order_relaxed);
          return taken() - start >= size;
        });
    const std::uint64_t grown = taken() - start;
    return static_cast<double>(got) / static_cast<double>(std::max<std::uint64_t>(grown, size));
  });
}

// ---- Churn ----

struct ChurnShape {
  std::uint64_t low, high;  // live blocks
  std::uint64_t steps;      // frees and allocations, in pairs
};

// Drives the live set between low and high: half-waves of random length, each step freeing or
// allocating one block (random slot). Returns the peak of live bytes asked for.
template <class Alloc, class Free>
std::uint64_t churn(const ChurnShape& c, Alloc alloc, Free release) {
  struct Live {
    void* p;
    std::uint32_t size;
  };
  std::vector<Live> live;
  live.reserve(c.high);
  std::uint64_t x = 0x853c49e6748fea9bull, bytes = 0, peak = 0;
  const auto add = [&] {
    const auto size = static_cast<std::uint32_t>(16 + xorshift(x) % 241);
    void* p = alloc(size);
    if (p == nullptr) return;
    static_cast<unsigned char*>(p)[0] = 1;
    live.push_back({p, size});
    bytes += size;
    peak = std::max(peak, bytes);
  };
  const auto drop = [&] {
    if (live.empty()) return;
    const std::size_t i = xorshift(x) % live.size();
    release(live[i].p);
    bytes -= live[i].size;
    live[i] = live.back();
    live.pop_back();
  };
  while (live.size() < c.low) add();
  bool rising = true;
  for (std::uint64_t step = 0; step < c.steps; ++step) {
    // A biased walk: three in four steps go the way of the wave.
    const bool up = (xorshift(x) % 4 != 0) == rising;
    if (up) {
      add();
    } else {
      drop();
    }
    if (rising && live.size() >= c.high) rising = false;
    if (!rising && live.size() <= c.low) rising = true;
  }
  while (!live.empty()) drop();
  return peak;
}

double churn_shmkit(const ChurnShape& c) {
  const std::string name = unique_name("alloc-churn");
  double overhead = 0;
  {
    ArenaConfig cfg;  // grows as needed, from 1 MiB up to 4 GiB
    cfg.max_size = std::size_t{4} << 30;
    Arena a = Arena::create(name, cfg);
    const std::uint64_t peak =
        churn(c, [&](std::size_t n) { return a.try_allocate(n); }, [&](void* p) { a.deallocate(p); });
    overhead = static_cast<double>(a.size()) / static_cast<double>(peak);
  }
  Arena::remove(name);
  return overhead;
}

#ifdef SHMKIT_BENCH_HAVE_BOOST
double churn_boost(const ChurnShape& c) {
  const std::string name = unique_name("alloc-churn-boost");
  double overhead = 0;
  {
    bip::managed_shared_memory seg(bip::create_only, name.c_str() + 1, std::size_t{4} << 30);
    std::uint64_t high_water = 0;
    const std::uint64_t total = seg.get_size();
    const std::uint64_t peak = churn(
        c,
        [&](std::size_t n) {
          void* p = seg.allocate(n, std::nothrow);
          high_water = std::max<std::uint64_t>(high_water, total - seg.get_free_memory());
          return p;
        },
        [&](void* p) { seg.deallocate(p); });
    overhead = static_cast<double>(high_water) / static_cast<double>(peak);
  }
  bip::shared_memory_object::remove(name.c_str() + 1);
  return overhead;
}
#endif

double churn_glibc(const ChurnShape& c) {
  return in_child([=] {
    const std::uint64_t start = taken();
    std::uint64_t high_water = 0, n = 0;
    const std::uint64_t peak = churn(
        c,
        [&](std::size_t size) {
          if (++n % 4096 == 0) high_water = std::max(high_water, taken() - start);
          return std::malloc(size);
        },
        [](void* p) { std::free(p); });
    return static_cast<double>(high_water) / static_cast<double>(peak);
  });
}

std::string mib(std::size_t size) {
  return size >= kMiB ? std::to_string(size / kMiB) + " MiB" : std::to_string(size / kKiB) + " KiB";
}

Stats stats_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  Stats s;
  s.median = v[v.size() / 2];
  s.min = v.front();
  s.max = v.back();
  s.repetitions = static_cast<int>(v.size());
  return s;
}

}  // namespace

void memory_section(Report& report, bool quick) {
  const Sizes small[] = {{"16..256 B", 16, 256}, {"8..1024 B", 8, 1024}, {"64 B", 64, 64}};
  const Sizes large[] = {{"2..42 KiB", 2048, 42 * 1024}, {"33 KiB", 33 * 1024, 33 * 1024}};
  struct Fill {
    std::size_t size;
    int threads;
    Sizes sizes;
    bool small;
  };
  std::vector<Fill> fills;
  for (std::size_t size : {64 * kKiB, 1 * kMiB, 4 * kMiB, 64 * kMiB}) {
    for (int threads : size == 64 * kKiB ? std::vector<int>{1, 2} : std::vector<int>{1, 4, 8}) {
      for (const Sizes& s : small) fills.push_back({size, threads, s, true});
    }
  }
  for (int threads : {1, 4, 8}) {
    for (const Sizes& s : large) fills.push_back({64 * kMiB, threads, s, false});
  }
  double usable_min = 2, usable_64k = 2, usable_64k_16_256 = 2, usable_large = 2;
  for (const Fill& f : fills) {
    if (quick && f.size == 64 * kMiB && f.threads != 1) continue;
    const std::string case_name =
        "usable " + mib(f.size) + ", " + std::to_string(f.threads) + "t, " + f.sizes.label;
    const int reps = quick ? 1 : f.size >= 64 * kMiB ? 2 : 3;
    std::vector<double> mine, boost, glibc;
    for (int r = 0; r < reps; ++r) {  // interleaved: a noisy moment touches all three
      const auto seed = static_cast<std::uint64_t>(r + 1);
      mine.push_back(usable_shmkit(f.size, f.threads, f.sizes, seed));
#ifdef SHMKIT_BENCH_HAVE_BOOST
      boost.push_back(usable_boost(f.size, f.threads, f.sizes, seed));
#endif
      // glibc takes memory from the system in steps of 128 KiB and more, per arena: a region
      // of a few MiB says more about those steps than about its use of them.
      if (f.size >= 64 * kMiB) glibc.push_back(usable_glibc(f.size, f.threads, f.sizes, seed));
    }
    const Stats s = stats_of(mine);
    report.rows.push_back({case_name, "shmkit", "fraction", s, 1, "", {}});
    if (!boost.empty()) report.rows.push_back({case_name, "boost", "fraction", stats_of(boost), 1, "", {}});
    if (!glibc.empty()) report.rows.push_back({case_name, "glibc malloc", "fraction", stats_of(glibc), 1, "", {}});
    // The goals are on the worst repetition, not the median: a fill either fits or it does not.
    if (f.small && f.size >= 1 * kMiB) usable_min = std::min(usable_min, s.min);
    if (f.small && f.size == 64 * kKiB) usable_64k = std::min(usable_64k, s.min);
    if (f.small && f.size == 64 * kKiB && f.sizes.lo == 16) usable_64k_16_256 = std::min(usable_64k_16_256, s.min);
    if (!f.small) usable_large = std::min(usable_large, s.min);
  }
  report.ratios.push_back({"memory_usable_min", usable_min, 0.85,
                           "least fraction usable, small sizes, 1 MiB..64 MiB, 1-8 threads"});
  report.ratios.push_back({"memory_usable_64k", usable_64k, 0.60,
                           "least fraction usable, small sizes, 64 KiB, 1-2 threads"});
  report.ratios.push_back({"memory_usable_64k_16_256", usable_64k_16_256, 0.60,
                           "least fraction usable, 16..256 B, 64 KiB, 1-2 threads"});
  report.ratios.push_back({"memory_usable_large", usable_large, 0.88,
                           "least fraction usable, 2..42 KiB and 33 KiB, 64 MiB"});

  const ChurnShape shape = quick ? ChurnShape{1'000, 100'000, 1'000'000} : ChurnShape{10'000, 1'000'000, 10'000'000};
  const std::string churn_case = "churn " + std::to_string(shape.low) + ".." + std::to_string(shape.high) +
                                 " live, " + std::to_string(shape.steps / 1'000'000) + " M steps";
  const double mine = churn_shmkit(shape);
  report.rows.push_back({churn_case, "shmkit", "committed/peak", stats_of({mine}), static_cast<std::int64_t>(shape.steps), "", {}});
#ifdef SHMKIT_BENCH_HAVE_BOOST
  report.rows.push_back({churn_case, "boost", "committed/peak", stats_of({churn_boost(shape)}),
                         static_cast<std::int64_t>(shape.steps), "", {}});
#endif
  report.rows.push_back({churn_case, "glibc malloc", "committed/peak", stats_of({churn_glibc(shape)}),
                         static_cast<std::int64_t>(shape.steps), "", {}});
  Ratio overhead{"memory_churn_overhead", mine, 1.25, "shmkit's committed bytes / peak live bytes (lower is better)"};
  overhead.at_most = true;
  report.ratios.push_back(overhead);
  report.notes.push_back(
      "memory: usable = bytes asked for / region size, T threads filling until one allocation is "
      "refused (shmkit: a fixed arena; boost: a managed_shared_memory; glibc: a child process "
      "until mallinfo2's arena + hblkhd grew by the size, for 64 MiB only); the goals hold on the "
      "worst repetition");
  report.notes.push_back("memory: churn = committed bytes at the end (shmkit: the arena's size; "
                         "boost: its most bytes in use; glibc: its most bytes taken from the system) / "
                         "peak live bytes");
}

}  // namespace shmkit::bench
