// SPDX-License-Identifier: MIT
// `shmkit bench locks`: shmkit's Mutex and Semaphore against the locks a user would otherwise
// put in shared memory, in one run:
//   - uncontended lock+unlock, one process (ns per pair);
//   - two processes on two cores hammering one lock around a shared counter (M ops/s, and
//     fairness: the smaller process's share over the larger's);
//   - semaphore ping-pong between two processes on two cores (round trip, µs).
// Peers: pthread_mutex_t (PROCESS_SHARED, with and without ROBUST), Boost.Interprocess's
// interprocess_mutex (when found), a bare TTAS spinlock (the floor, not robust), POSIX sem_t
// (pshared) and System V semop (seed 003's way). Ratios are peer / shmkit (> 1: shmkit wins).
#include <pthread.h>
#include <semaphore.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "shmkit/detail/robust.hpp"
#include "shmkit/mutex.hpp"
#include "shmkit/semaphore.hpp"

#ifdef SHMKIT_BENCH_HAVE_BOOST
#  include <boost/interprocess/sync/interprocess_mutex.hpp>
#endif

namespace shmkit::bench {
namespace {

// ---- The locks, each behind the same three calls ----

struct Spinlock {
  std::atomic<std::uint32_t> word{0};
  void lock() noexcept {
    for (;;) {
      if (word.exchange(1, std::memory_order_acquire) == 0) return;
      while (word.load(std::memory_order_relaxed) != 0) detail::cpu_relax();
    }
  }
  void unlock() noexcept { word.store(0, std::memory_order_release); }
};

struct PthreadMutex {
  pthread_mutex_t m;
  explicit PthreadMutex(bool robust) {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (robust) pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&m, &attr);
    pthread_mutexattr_destroy(&attr);
  }
  ~PthreadMutex() { pthread_mutex_destroy(&m); }
  void lock() noexcept {
    if (pthread_mutex_lock(&m) == EOWNERDEAD) pthread_mutex_consistent(&m);
  }
  void unlock() noexcept { pthread_mutex_unlock(&m); }
};

struct ShmkitMutex {
  Mutex m;
  void lock() noexcept {
    if (m.acquire() == LockStatus::owner_died) m.mark_consistent();
  }
  void unlock() noexcept { m.unlock(); }
};

// Every lock and its counter on cache lines of their own, in memory shared with the child.
template <class Lock>
struct alignas(64) Arena {
  Lock lock;
  alignas(64) std::uint64_t counter = 0;
  alignas(64) std::atomic<std::uint32_t> stop{0};
  std::atomic<std::uint64_t> child_ops{0};
  template <class... A>
  explicit Arena(A&&... a) : lock(std::forward<A>(a)...) {}
};

// ---- Uncontended ----

template <class Lock>
Variant uncontended(const std::string& name, Lock& lock) {
  return {name, [&lock](std::int64_t n) {
            for (std::int64_t i = 0; i < n; ++i) {
              lock.lock();
              std::atomic_signal_fence(std::memory_order_seq_cst);
              lock.unlock();
            }
          }};
}

// ---- Contended: two processes, fixed time, count each side's acquisitions ----

struct Contended {
  double mops = 0;      // aggregate, millions of lock+increment+unlock per second
  double fairness = 0;  // min(share) / max(share), 1 = perfectly even
};

template <class Lock, class... A>
Contended contended_once(int child_cpu, std::int64_t window_ns, A&&... args) {
  SharedObject<Arena<Lock>> arena(std::forward<A>(args)...);
  Arena<Lock>& a = *arena;
  std::uint64_t mine = 0;
  std::int64_t elapsed = 0;
  run_with_child(
      child_cpu,
      [&a](Barrier& barrier) {
        barrier.arrive_and_wait();
        std::uint64_t ops = 0;
        while (a.stop.load(std::memory_order_relaxed) == 0) {
          a.lock.lock();
          ++a.counter;
          a.lock.unlock();
          ++ops;
        }
        a.child_ops.store(ops, std::memory_order_release);
        return 0;
      },
      [&](Barrier& barrier) {
        barrier.arrive_and_wait();
        const std::int64_t start = now_ns();
        for (;;) {
          for (int i = 0; i < 256; ++i) {
            a.lock.lock();
            ++a.counter;
            a.lock.unlock();
          }
          mine += 256;
          elapsed = now_ns() - start;
          if (elapsed >= window_ns) break;
        }
        a.stop.store(1, std::memory_order_relaxed);
      });
  const std::uint64_t theirs = a.child_ops.load(std::memory_order_acquire);
  if (a.counter != mine + theirs) throw std::runtime_error("contended counter lost updates");
  Contended c;
  // The child may run a little past the window; count only the parent's window.
  c.mops = static_cast<double>(mine + theirs) / static_cast<double>(elapsed) * 1e3;
  const double lo = static_cast<double>(std::min(mine, theirs));
  const double hi = static_cast<double>(std::max(mine, theirs));
  c.fairness = hi > 0 ? lo / hi : 0;
  return c;
}

template <class Lock, class... A>
void contended(Report& report, const std::string& name, int child_cpu, const Plan& plan,
               std::int64_t window_ns, A... args) {
  std::vector<double> mops, fairness;
  for (int r = 0; r < plan.warmup + plan.repetitions; ++r) {
    throw_if_stop_requested();
    const Contended c = contended_once<Lock>(child_cpu, window_ns, args...);
    if (r < plan.warmup) continue;
    mops.push_back(c.mops);
    fairness.push_back(c.fairness);
  }
  Row row{"contended (2 processes)", name, "M ops/s", summarize(mops), 0, "", {}};
  row.params.push_back({"fairness", summarize(fairness).median});
  report.rows.push_back(row);
  Row f{"fairness (min/max share)", name, "ratio", summarize(fairness), 0, "", {}};
  report.rows.push_back(f);
}

// ---- Semaphore ping-pong ----

struct SysvSemaphores {
  int id;
  SysvSemaphores() : id(::semget(IPC_PRIVATE, 2, IPC_CREAT | 0600)) {
    if (id < 0) throw std::system_error(errno, std::generic_category(), "semget");
  }
  ~SysvSemaphores() { ::semctl(id, 0, IPC_RMID); }
  void post(unsigned short n) const noexcept {
    sembuf op{n, 1, 0};
    while (::semop(id, &op, 1) != 0 && errno == EINTR) {
    }
  }
  void wait(unsigned short n) const noexcept {
    sembuf op{n, -1, 0};
    while (::semop(id, &op, 1) != 0 && errno == EINTR) {
    }
  }
};

struct PosixSemaphores {
  sem_t s[2];
  PosixSemaphores() {
    sem_init(&s[0], 1, 0);
    sem_init(&s[1], 1, 0);
  }
  ~PosixSemaphores() {
    sem_destroy(&s[0]);
    sem_destroy(&s[1]);
  }
  void post(int n) noexcept { sem_post(&s[n]); }
  void wait(int n) noexcept {
    while (sem_wait(&s[n]) != 0 && errno == EINTR) {
    }
  }
};

struct ShmkitSemaphores {
  Semaphore s[2];
  void post(int n) noexcept { s[n].post(); }
  void wait(int n) noexcept { s[n].wait(); }
};

// Median round trip in ns over the plan's repetitions.
template <class Pair>
Stats pingpong(Pair& pair, int child_cpu, const Plan& plan) {
  const std::int64_t total = plan.operations * (plan.warmup + plan.repetitions);
  std::vector<double> samples;
  run_with_child(
      child_cpu,
      [&pair, total](Barrier& barrier) {
        barrier.arrive_and_wait();
        for (std::int64_t i = 0; i < total; ++i) {
          pair.wait(0);
          pair.post(1);
        }
        return 0;
      },
      [&](Barrier& barrier) {
        barrier.arrive_and_wait();
        for (int r = 0; r < plan.warmup + plan.repetitions; ++r) {
          const std::int64_t start = now_ns();
          for (std::int64_t i = 0; i < plan.operations; ++i) {
            pair.post(0);
            pair.wait(1);
          }
          const double rt = static_cast<double>(now_ns() - start) /
                            static_cast<double>(plan.operations);
          if (r >= plan.warmup) samples.push_back(rt);
        }
      });
  return summarize(samples);
}

double median_of(const Report& report, const std::string& c, const std::string& v) {
  const Row* row = report.find(c, v);
  return row != nullptr ? row->stats.median : 0;
}

}  // namespace

int run_locks(const Options& options) {
  // Count the machine's CPUs, not this process's: the caller may have pinned it already.
  const int cpus = static_cast<int>(std::thread::hardware_concurrency());
  const int parent_cpu = options.cpu >= 0 ? options.cpu : 0;
  pin_to_cpu(parent_cpu);
  const int child_cpu = cpus >= 2 ? (parent_cpu == 0 ? 1 : 0) : parent_cpu;
  const bool quick = options.quick;

  Report report;
  report.benchmark = "locks";
  report.title = "locks: shmkit Mutex / Semaphore against the process-shared peers";
  report.settings = {{"parent_cpu", std::to_string(parent_cpu)},
                     {"child_cpu", std::to_string(child_cpu)}};
  report.notes.push_back("uncontended: lock+unlock pairs in one process; contended: two "
                         "processes on two cores, lock / ++counter / unlock for a fixed time");
  report.notes.push_back("ping-pong: two semaphores, two processes, one round trip = two "
                         "hand-offs; spinlock is the floor (not robust, never sleeps)");
#ifndef SHMKIT_BENCH_HAVE_BOOST
  report.notes.push_back("Boost.Interprocess not found at build time: its mutex is skipped");
#endif

  // Uncontended.
  {
    SharedObject<ShmkitMutex> shmkit_mutex;
    SharedObject<PthreadMutex> robust(true);
    SharedObject<PthreadMutex> plain(false);
    SharedObject<Spinlock> spin;
    std::vector<Variant> variants = {
        uncontended("shmkit Mutex (robust)", *shmkit_mutex),
        uncontended("pthread robust", *robust),
        uncontended("pthread pshared", *plain),
        uncontended("spinlock (floor)", *spin),
    };
#ifdef SHMKIT_BENCH_HAVE_BOOST
    SharedObject<boost::interprocess::interprocess_mutex> boost_mutex;
    variants.push_back(uncontended("boost interprocess_mutex", *boost_mutex));
#endif
    const Plan plan = quick ? Plan{5, 200'000, 1} : Plan{11, 2'000'000, 1};
    const auto stats = measure_round_robin(variants, plan);
    for (std::size_t i = 0; i < variants.size(); ++i) {
      report.rows.push_back({"uncontended lock+unlock", variants[i].name, "ns", stats[i],
                             plan.operations, "shmkit Mutex (robust)", {}});
    }
  }

  // Contended.
  {
    const Plan plan = quick ? Plan{3, 0, 1} : Plan{9, 0, 1};
    const std::int64_t window = quick ? 50'000'000 : 200'000'000;
    contended<ShmkitMutex>(report, "shmkit Mutex (robust)", child_cpu, plan, window);
    contended<PthreadMutex>(report, "pthread robust", child_cpu, plan, window, true);
    contended<PthreadMutex>(report, "pthread pshared", child_cpu, plan, window, false);
    contended<Spinlock>(report, "spinlock (floor)", child_cpu, plan, window);
#ifdef SHMKIT_BENCH_HAVE_BOOST
    contended<boost::interprocess::interprocess_mutex>(report, "boost interprocess_mutex",
                                                       child_cpu, plan, window);
#endif
  }

  // Semaphore ping-pong.
  {
    const Plan fast = quick ? Plan{3, 20'000, 1} : Plan{11, 100'000, 1};
    const Plan slow = quick ? Plan{3, 500, 1} : Plan{11, 3'000, 1};  // sleeping kinds: ~70 µs each
    SharedObject<ShmkitSemaphores> mine;
    SharedObject<PosixSemaphores> posix;
    SysvSemaphores sysv;
    const std::string c = "semaphore ping-pong round trip";
    report.rows.push_back({c, "shmkit Semaphore", "us", scaled(pingpong(*mine, child_cpu, fast), 1e3),
                           fast.operations, "shmkit Semaphore", {}});
    report.rows.push_back({c, "POSIX sem_t", "us", scaled(pingpong(*posix, child_cpu, slow), 1e3),
                           slow.operations, "shmkit Semaphore", {}});
    report.rows.push_back({c, "System V semop", "us", scaled(pingpong(sysv, child_cpu, slow), 1e3),
                           slow.operations, "shmkit Semaphore", {}});
  }

  const std::string un = "uncontended lock+unlock", co = "contended (2 processes)";
  const std::string pp = "semaphore ping-pong round trip";
  const double shmkit_un = median_of(report, un, "shmkit Mutex (robust)");
  const double shmkit_co = median_of(report, co, "shmkit Mutex (robust)");
  const double shmkit_pp = median_of(report, pp, "shmkit Semaphore");
  if (shmkit_un > 0) {
    report.ratios.push_back({"uncontended_vs_pthread_robust",
                             median_of(report, un, "pthread robust") / shmkit_un, 1.6,
                             "pthread robust ns / shmkit ns"});
  }
  const double pthread_co = median_of(report, co, "pthread robust");
  if (pthread_co > 0) {
    report.ratios.push_back({"contended_vs_pthread_robust", shmkit_co / pthread_co, 1.0,
                             "shmkit ops/s / pthread robust ops/s"});
  }
  if (shmkit_pp > 0) {
    report.ratios.push_back({"sem_pingpong_vs_sysv", median_of(report, pp, "System V semop") / shmkit_pp,
                             10.0, "System V round trip / shmkit round trip"});
    report.ratios.push_back({"sem_pingpong_vs_posix", median_of(report, pp, "POSIX sem_t") / shmkit_pp,
                             std::nullopt, "sem_t round trip / shmkit round trip"});
  }
  if (const Row* f = report.find("fairness (min/max share)", "shmkit Mutex (robust)")) {
    report.ratios.push_back({"contended_fairness", f->stats.median, std::nullopt,
                             "shmkit: smaller process's acquisitions / larger's"});
  }

  if (options.json) {
    print_json(report);
  } else {
    print_table(report);
  }
  return 0;
}

}  // namespace shmkit::bench
