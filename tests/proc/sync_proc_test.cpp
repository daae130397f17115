// SPDX-License-Identifier: MIT
// The sync objects between real processes: mutual exclusion, owner death at chosen and at
// random moments (SIGKILL, normal exit, a thread's exit), dead readers and barrier parties,
// hand-offs without lost wake-ups, timeouts. Objects live in an anonymous segment the children
// inherit (zero bytes, never initialised), or in a named one that separate programs open: this
// binary re-executed with `--helper` (see helper_main at the end).
// Children report through exit codes and shared words (gtest assertions in a child are lost).
// Every child dies by SIGALRM after 60 s (Children's limit) and with the test process; the
// parent uses only timed waits, so a library bug fails a test instead of hanging it.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "shmkit/barrier.hpp"
#include "shmkit/condition.hpp"
#include "shmkit/error.hpp"
#include "shmkit/event.hpp"
#include "shmkit/mutex.hpp"
#include "shmkit/segment.hpp"
#include "shmkit/semaphore.hpp"
#include "shmkit/shared_mutex.hpp"
#include "test_support.hpp"

namespace shmkit {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using test::Children;
using test::exit_code;
using test::Remover;
using test::unique_name;
using test::wait_until_blocked_on;

constexpr int kKilled = 128 + SIGKILL;  // exit_code() of a SIGKILLed child
constexpr std::size_t kSegmentSize = 1 << 20;

// ---- Watchdog ----

// Ends the run (SIGALRM) if one test takes longer than this: the last resort should a timed
// wait in this process not return (children are then killed by PR_SET_PDEATHSIG).
constexpr unsigned kWatchdogSeconds = 120;

class Watchdog : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo&) override { ::alarm(kWatchdogSeconds); }
  void OnTestEnd(const ::testing::TestInfo&) override { ::alarm(0); }
};

// ---- Helpers ----

std::int32_t my_tid() { return static_cast<std::int32_t>(::gettid()); }

// Polls `done` until it holds or `limit` passes: a bound against hangs, not a timing check.
bool eventually(const std::function<bool()>& done, std::chrono::seconds limit = 20s) {
  const auto end = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(50us);
  }
  return true;
}

// A child meant to be killed leaves no core file.
void no_core_dump() {
  const rlimit none{0, 0};
  ::setrlimit(RLIMIT_CORE, &none);
}

// Sleeps until a signal ends the process (bounded by the child's alarm).
[[noreturn]] void sleep_until_killed() {
  for (;;) ::pause();
}

// LockStatus as a word in shared memory: 0 means "nothing yet".
int code(LockStatus s) { return static_cast<int>(s) + 1; }
constexpr int kThrewOther = 100;  // the Lockable form threw something unexpected

// Locks through the Lockable form (lock(), which throws) and says what happened as a code.
int lock_via_exceptions(Mutex& m) {
  try {
    m.lock();
    return code(LockStatus::acquired);
  } catch (const OwnerDied& e) {
    return e.errnum() == EOWNERDEAD ? code(LockStatus::owner_died) : kThrewOther;
  } catch (const Error& e) {
    return e.errnum() == ENOTRECOVERABLE ? code(LockStatus::not_recoverable) : kThrewOther;
  }
}

// A random pause from about a microsecond to a few milliseconds (log-uniform): short ones
// spin, so that they are not rounded up to the scheduler's tick.
void random_pause(std::mt19937& rng) {
  std::uniform_real_distribution<double> exponent(0.0, 3.5);
  const auto pause =
      std::chrono::nanoseconds(static_cast<std::int64_t>(1000.0 * std::pow(10.0, exponent(rng))));
  if (pause < 100us) {
    const auto end = Clock::now() + pause;
    while (Clock::now() < end) {
    }
  } else {
    std::this_thread::sleep_for(pause);
  }
}

std::string self_exe() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

// ---- Mutex: mutual exclusion ----

struct Counted {
  Mutex m;
  std::uint64_t counter;      // under m
  std::atomic<int> inside;    // threads inside the critical section
  std::atomic<int> overlaps;  // times two were inside at once
};
static_assert(std::is_standard_layout_v<Counted>);

constexpr int kProcesses = 4;
constexpr int kIncrements = 100'000;

TEST(MutexStress, FourProcessesIncrementExactly) {
  Segment seg = Segment::create_anonymous(kSegmentSize);
  Counted& c = seg.as<Counted>();  // zero bytes: an unlocked Mutex, no initialisation
  Children kids;
  for (int p = 0; p < kProcesses; ++p) {
    const int pid = kids.start([&] {
      for (int i = 0; i < kIncrements; ++i) {
        if (c.m.acquire() != LockStatus::acquired) return 2;
        if (c.inside.fetch_add(1, std::memory_order_relaxed) != 0) {
          c.overlaps.fetch_add(1, std::memory_order_relaxed);
        }
        ++c.counter;
        c.inside.fetch_sub(1, std::memory_order_relaxed);
        c.m.unlock();
      }
      return 0;
    });
    ASSERT_GT(pid, 0);
  }
  for (int status : kids.wait_all()) EXPECT_EQ(exit_code(status), 0);
  EXPECT_EQ(c.counter, std::uint64_t{kProcesses} * kIncrements);
  EXPECT_EQ(c.overlaps.load(), 0);
  EXPECT_FALSE(c.m.is_locked());
}

// What the separate helper programs share through a named segment.
struct Named {
  Mutex m;
  std::uint64_t counter;  // under m
  std::atomic<int> held;  // the holder sets it once it holds m
};

TEST(MutexProc, SeparateProgramsShareANamedSegment) {
  const std::string name = unique_name("/", "mutex");
  Remover rm(name);
  Segment seg = Segment::create(name, 4096);
  Named& n = seg.as<Named>();
  Children kids;
  for (int p = 0; p < kProcesses; ++p) {
    ASSERT_GT(kids.spawn({self_exe(), "--helper", "increment", name, "25000"}), 0);
  }
  for (int status : kids.wait_all()) EXPECT_EQ(exit_code(status), 0);
  EXPECT_EQ(n.counter, std::uint64_t{kProcesses} * 25000);
}

TEST(MutexProc, TimedAcquireWhileAnotherProcessHolds) {
  Segment seg = Segment::create_anonymous(4096);
  Named& n = seg.as<Named>();
  Children kids;
  const int holder = kids.start([&] {
    if (n.m.acquire() != LockStatus::acquired) return 2;
    n.held.store(1, std::memory_order_release);
    while (n.held.load(std::memory_order_acquire) != 2) std::this_thread::sleep_for(100us);
    n.m.unlock();
    return 0;
  });
  ASSERT_GT(holder, 0);
  ASSERT_TRUE(eventually([&] { return n.held.load() == 1; }));
  EXPECT_EQ(n.m.try_acquire(), LockStatus::busy);
  const auto deadline = Clock::now() + 50ms;
  EXPECT_EQ(n.m.acquire_until(deadline), LockStatus::timed_out);
  EXPECT_GE(Clock::now(), deadline);
  EXPECT_FALSE(n.m.try_lock_for(10ms));
  n.held.store(2, std::memory_order_release);
  EXPECT_EQ(exit_code(kids.wait(holder)), 0);
  ASSERT_EQ(n.m.acquire_for(10s), LockStatus::acquired);
  n.m.unlock();
}

// ---- Mutex: owner death while others sleep ----

struct Sleepers {
  Mutex m;
  std::uint64_t data;  // under m: 1 while "half-written" by the owner
  std::atomic<int> held;
  std::atomic<int> outcome[3];  // code() of what each sleeper was told
};

enum class Api { status, exceptions };

class OwnerKilled : public ::testing::TestWithParam<Api> {};

// The owner is SIGKILLed while three processes sleep in acquire() (or lock()): each of them
// proceeds, exactly one is told owner_died (and repairs), the others simply acquire.
TEST_P(OwnerKilled, ExactlyOneSleeperIsToldAndTheOthersAcquire) {
  Segment seg = Segment::create_anonymous(4096);
  Sleepers& s = seg.as<Sleepers>();
  s.m.set_metering(true);
  Children kids;
  const int owner = kids.start([&] {
    no_core_dump();
    if (s.m.acquire() != LockStatus::acquired) return 2;
    s.data = 1;
    s.held.store(1, std::memory_order_release);
    sleep_until_killed();
  });
  ASSERT_GT(owner, 0);
  ASSERT_TRUE(eventually([&] { return s.held.load() == 1; }));
  std::vector<int> sleepers;
  for (int i = 0; i < 3; ++i) {
    sleepers.push_back(kids.start([&, i] {
      const int got = GetParam() == Api::status ? code(s.m.acquire()) : lock_via_exceptions(s.m);
      s.outcome[i].store(got, std::memory_order_release);
      if (got == code(LockStatus::owner_died)) {
        s.data = 0;  // the repair
        s.m.mark_consistent();
      } else if (got != code(LockStatus::acquired)) {
        return 3;
      }
      if (s.data != 0) return 4;  // acquired over data nobody repaired
      s.m.unlock();
      return 0;
    }));
    ASSERT_GT(sleepers.back(), 0);
  }
  for (int pid : sleepers) ASSERT_TRUE(wait_until_blocked_on(pid, s.m)) << "sleeper " << pid;
  kids.kill(owner);
  EXPECT_EQ(exit_code(kids.wait(owner)), kKilled);
  for (int pid : sleepers) EXPECT_EQ(exit_code(kids.wait(pid, 20)), 0);
  int died = 0, acquired = 0;
  for (auto& o : s.outcome) {
    died += o.load() == code(LockStatus::owner_died) ? 1 : 0;
    acquired += o.load() == code(LockStatus::acquired) ? 1 : 0;
  }
  EXPECT_EQ(died, 1);
  EXPECT_EQ(acquired, 2);
  ASSERT_EQ(s.m.acquire_for(5s), LockStatus::acquired);
  EXPECT_FALSE(s.m.inconsistent());
  s.m.unlock();
  const LockMeter meter = s.m.meter();
  EXPECT_EQ(meter.acquisitions, 5u);  // owner, three sleepers, this process
  EXPECT_EQ(meter.contended, 3u);
  EXPECT_EQ(meter.owner_deaths, 1u);
}

// The one told owner_died unlocks without mark_consistent(): the mutex is then not
// recoverable for everyone, the sleepers included, whichever form they lock with.
TEST_P(OwnerKilled, UnlockWithoutRepairIsNotRecoverableForEveryone) {
  Segment seg = Segment::create_anonymous(4096);
  Sleepers& s = seg.as<Sleepers>();
  Children kids;
  const int owner = kids.start([&] {
    no_core_dump();
    if (s.m.acquire() != LockStatus::acquired) return 2;
    s.held.store(1, std::memory_order_release);
    sleep_until_killed();
  });
  ASSERT_GT(owner, 0);
  ASSERT_TRUE(eventually([&] { return s.held.load() == 1; }));
  std::vector<int> sleepers;
  for (int i = 0; i < 3; ++i) {
    sleepers.push_back(kids.start([&, i] {
      const int got = GetParam() == Api::status ? code(s.m.acquire()) : lock_via_exceptions(s.m);
      s.outcome[i].store(got, std::memory_order_release);
      if (got == code(LockStatus::owner_died)) {
        s.m.unlock();  // without mark_consistent()
      } else if (got == code(LockStatus::acquired)) {
        s.m.unlock();
        return 5;
      }
      return 0;
    }));
    ASSERT_GT(sleepers.back(), 0);
  }
  for (int pid : sleepers) ASSERT_TRUE(wait_until_blocked_on(pid, s.m)) << "sleeper " << pid;
  kids.kill(owner);
  EXPECT_EQ(exit_code(kids.wait(owner)), kKilled);
  for (int pid : sleepers) EXPECT_EQ(exit_code(kids.wait(pid, 20)), 0);
  int died = 0, unusable = 0;
  for (auto& o : s.outcome) {
    died += o.load() == code(LockStatus::owner_died) ? 1 : 0;
    unusable += o.load() == code(LockStatus::not_recoverable) ? 1 : 0;
  }
  EXPECT_EQ(died, 1);
  EXPECT_EQ(unusable, 2);
  EXPECT_TRUE(s.m.not_recoverable());
  EXPECT_FALSE(s.m.is_locked());
  EXPECT_EQ(s.m.acquire_for(5s), LockStatus::not_recoverable);
  EXPECT_EQ(s.m.try_acquire(), LockStatus::not_recoverable);
  try {
    if (s.m.try_lock_for(5s)) s.m.unlock();
    ADD_FAILURE() << "try_lock_for() of a not recoverable mutex returned";
  } catch (const OwnerDied&) {
    ADD_FAILURE() << "try_lock_for() threw OwnerDied, not ENOTRECOVERABLE";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), ENOTRECOVERABLE) << e.what();
  }
  s.m.reset();
  EXPECT_FALSE(s.m.not_recoverable());
  ASSERT_EQ(s.m.acquire_for(5s), LockStatus::acquired);
  s.m.unlock();
}

std::string api_name(const ::testing::TestParamInfo<Api>& param) {
  return param.param == Api::status ? "Status" : "Exceptions";
}

void PrintTo(Api api, std::ostream* os) { *os << (api == Api::status ? "status" : "exceptions"); }

INSTANTIATE_TEST_SUITE_P(Api, OwnerKilled, ::testing::Values(Api::status, Api::exceptions),
                         api_name);

// ---- Mutex: owners that end without SIGKILL ----

TEST(MutexProc, OwnerExitingNormallyIsReportedToTheSleeper) {
  Segment seg = Segment::create_anonymous(4096);
  Sleepers& s = seg.as<Sleepers>();
  Children kids;
  const int owner = kids.start([&] {
    if (s.m.acquire() != LockStatus::acquired) return 2;
    s.held.store(1, std::memory_order_release);
    while (s.held.load(std::memory_order_acquire) != 2) std::this_thread::sleep_for(100us);
    return 0;  // exits, still holding the lock
  });
  ASSERT_GT(owner, 0);
  ASSERT_TRUE(eventually([&] { return s.held.load() == 1; }));
  const int sleeper = kids.start([&] {
    const LockStatus st = s.m.acquire();
    s.outcome[0].store(code(st), std::memory_order_release);
    if (st != LockStatus::owner_died) return 3;
    s.m.mark_consistent();
    s.m.unlock();
    return 0;
  });
  ASSERT_GT(sleeper, 0);
  ASSERT_TRUE(wait_until_blocked_on(sleeper, s.m));
  s.held.store(2, std::memory_order_release);
  EXPECT_EQ(exit_code(kids.wait(owner)), 0);
  EXPECT_EQ(exit_code(kids.wait(sleeper, 20)), 0);
  EXPECT_EQ(s.outcome[0].load(), code(LockStatus::owner_died));
  ASSERT_EQ(s.m.acquire_for(5s), LockStatus::acquired);
  s.m.unlock();
}

TEST(MutexProc, OwnerExitedNormallyIsReportedToTheNextLocker) {
  Segment seg = Segment::create_anonymous(4096);
  Sleepers& s = seg.as<Sleepers>();
  Children kids;
  const int owner = kids.start([&] { return s.m.acquire() == LockStatus::acquired ? 0 : 2; });
  ASSERT_GT(owner, 0);
  ASSERT_EQ(exit_code(kids.wait(owner)), 0);
  EXPECT_FALSE(s.m.is_locked());
  ASSERT_EQ(s.m.try_acquire(), LockStatus::owner_died);
  EXPECT_TRUE(s.m.inconsistent());
  EXPECT_EQ(s.m.owner(), my_tid());
  s.m.mark_consistent();
  s.m.unlock();
  ASSERT_EQ(s.m.try_acquire(), LockStatus::acquired);
  s.m.unlock();
}

// A thread of another process ends holding the lock while that process lives on.
TEST(MutexProc, ThreadOfALiveProcessExitingIsReported) {
  Segment seg = Segment::create_anonymous(4096);
  Sleepers& s = seg.as<Sleepers>();
  Children kids;
  const int child = kids.start([&] {
    std::thread t([&] {
      if (s.m.acquire() == LockStatus::acquired) s.held.store(1, std::memory_order_release);
    });
    t.join();
    while (s.held.load(std::memory_order_acquire) != 2) std::this_thread::sleep_for(100us);
    return 0;
  });
  ASSERT_GT(child, 0);
  ASSERT_TRUE(eventually([&] { return s.held.load() == 1; }));
  const LockStatus st = s.m.acquire_for(5s);
  EXPECT_EQ(st, LockStatus::owner_died);
  if (st == LockStatus::owner_died || st == LockStatus::acquired) {
    s.m.mark_consistent();
    s.m.unlock();
  }
  s.held.store(2, std::memory_order_release);
  EXPECT_EQ(exit_code(kids.wait(child)), 0);
}

// A separate program holding the lock is killed while this process sleeps in acquire.
TEST(MutexProc, SeparateProgramKilledWhileHoldingWakesTheSleeper) {
  const std::string name = unique_name("/", "hold");
  Remover rm(name);
  Segment seg = Segment::create(name, 4096);
  Named& n = seg.as<Named>();
  Children kids;
  const int holder = kids.spawn({self_exe(), "--helper", "hold", name});
  ASSERT_GT(holder, 0);
  ASSERT_TRUE(eventually([&] { return n.held.load() == 1; }));
  const std::int32_t me = my_tid();
  std::thread killer([&] {
    if (wait_until_blocked_on(me, n.m)) ::kill(holder, SIGKILL);
  });
  const LockStatus st = n.m.acquire_for(10s);
  killer.join();
  EXPECT_EQ(st, LockStatus::owner_died);
  EXPECT_EQ(exit_code(kids.wait(holder)), kKilled);
  if (st == LockStatus::owner_died) {
    EXPECT_EQ(n.counter, 1u);  // the helper's half-done work is there to repair
    n.m.mark_consistent();
    n.m.unlock();
  }
}

// A process killed while it sleeps in acquire() holds nothing: the others carry on.
TEST(MutexProc, SleeperKilledWhileWaitingDisturbsNobody) {
  Segment seg = Segment::create_anonymous(4096);
  Sleepers& s = seg.as<Sleepers>();
  ASSERT_EQ(s.m.acquire_for(5s), LockStatus::acquired);
  Children kids;
  const int doomed = kids.start([&] {
    no_core_dump();
    (void)s.m.acquire();
    return 2;
  });
  ASSERT_GT(doomed, 0);
  ASSERT_TRUE(wait_until_blocked_on(doomed, s.m));
  kids.kill(doomed);
  EXPECT_EQ(exit_code(kids.wait(doomed)), kKilled);
  const int next = kids.start([&] {
    const LockStatus st = s.m.acquire();
    s.outcome[0].store(code(st), std::memory_order_release);
    if (st == LockStatus::acquired) s.m.unlock();
    return 0;
  });
  ASSERT_GT(next, 0);
  ASSERT_TRUE(wait_until_blocked_on(next, s.m));
  s.m.unlock();
  EXPECT_EQ(exit_code(kids.wait(next, 20)), 0);
  EXPECT_EQ(s.outcome[0].load(), code(LockStatus::acquired));
  ASSERT_EQ(s.m.acquire_for(5s), LockStatus::acquired);
  EXPECT_FALSE(s.m.inconsistent());
  s.m.unlock();
}

// ---- Random kills ----

// A child loops acquire / update two words / unlock; the parent kills it at a random moment
// (optionally while a thread of its own competes for the lock), then takes the lock. Whoever
// is told owner_died repairs; whoever simply acquires must find the two words equal.
struct Victim {
  Mutex m;
  SharedMutex rw;
  std::uint64_t counter;            // under the lock
  std::uint64_t shadow;             // == counter whenever the lock is free and consistent
  std::uint32_t in_cs;              // 1 while the child is between acquire and unlock
  std::atomic<std::uint64_t> done;  // the child's completed updates (after unlock)
  std::atomic<int> started;
  std::atomic<int> stop;  // tells the parent's competing thread to stop
};

enum class Lock { mutex, shared_mutex };

// The child's updates: every 16th round on the SharedMutex is a read (kill a reader too).
int victim_loop(Victim& v, Lock lock) {
  for (std::uint64_t i = 0;; ++i) {
    const bool read = lock == Lock::shared_mutex && i % 16 == 15;
    if (read) {
      if (v.rw.acquire_shared() != LockStatus::acquired) return 3;
      if (v.counter != v.shadow || v.in_cs != 0) return 4;
      v.rw.unlock_shared();
      continue;
    }
    const LockStatus st = lock == Lock::mutex ? v.m.acquire() : v.rw.acquire();
    if (st != LockStatus::acquired) return 2;  // nobody else dies: never owner_died here
    if (v.counter != v.shadow) return 4;
    v.in_cs = 1;
    ++v.counter;
    for (int k = 0; k < 50; ++k) detail::cpu_relax();
    v.shadow = v.counter;
    v.in_cs = 0;
    if (lock == Lock::mutex) {
      v.m.unlock();
    } else {
      v.rw.unlock();
    }
    v.done.fetch_add(1, std::memory_order_release);
    v.started.store(1, std::memory_order_release);
  }
}

struct RoundResult {
  int owner_died = 0;  // times this process was told owner_died in the round
  int bad = 0;         // acquisitions that found the words unequal
  int failed = 0;      // acquisitions that neither acquired nor reported a death
};

// Takes the lock once with a deadline: `shared` asks for a read lock (owner_died then means
// the caller holds it exclusively). Checks or repairs the data, then unlocks.
void take_once(Victim& v, Lock lock, bool shared, RoundResult& r) {
  const auto deadline = Clock::now() + 5s;
  LockStatus st;
  if (lock == Lock::mutex) {
    st = v.m.acquire_until(deadline);
  } else {
    st = shared ? v.rw.acquire_shared_until(deadline) : v.rw.acquire_until(deadline);
  }
  if (st == LockStatus::owner_died) {
    ++r.owner_died;
    if (lock == Lock::shared_mutex && (v.rw.writer() != my_tid() || v.rw.readers() != 0)) {
      ++r.bad;  // owner_died must come with the lock held exclusively
    }
    v.shadow = v.counter;
    v.in_cs = 0;
    if (lock == Lock::mutex) {
      v.m.mark_consistent();
      v.m.unlock();
    } else {
      v.rw.mark_consistent();
      v.rw.unlock();
    }
    return;
  }
  if (st != LockStatus::acquired) {
    ++r.failed;
    ADD_FAILURE() << "take_once: " << to_string(st);
    return;
  }
  if (v.counter != v.shadow || v.in_cs != 0) ++r.bad;
  if (lock == Lock::mutex) {
    v.m.unlock();
  } else if (shared) {
    v.rw.unlock_shared();
  } else {
    v.rw.unlock();
  }
}

class RandomKillsStress : public ::testing::TestWithParam<Lock> {};

TEST_P(RandomKillsStress, TheLockIsAlwaysRecoverable) {
  constexpr int kRounds = 200;
  const Lock lock = GetParam();
  Segment seg = Segment::create_anonymous(4096);
  Victim& v = seg.as<Victim>();
  const auto seed = static_cast<unsigned>(::getpid());
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  int deaths = 0;
  for (int round = 0; round < kRounds && !HasFailure(); ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const std::uint64_t before = v.counter;
    v.done.store(0);
    v.started.store(0);
    v.stop.store(0);
    Children kids;
    const int pid = kids.start([&] {
      no_core_dump();
      return victim_loop(v, lock);
    });
    ASSERT_GT(pid, 0);
    // Most rounds let the child get going first; some kill it wherever it is.
    if (round % 5 != 0) {
      ASSERT_TRUE(eventually([&] { return v.started.load() == 1; }));
    }
    RoundResult in_round;
    std::thread competitor;
    if (round % 2 == 1) {
      competitor = std::thread([&] {
        for (unsigned i = 0; v.stop.load(std::memory_order_acquire) == 0 && !in_round.failed; ++i) {
          take_once(v, lock, i % 2 == 1, in_round);
        }
      });
    }
    random_pause(rng);
    kids.kill(pid);
    const int status = kids.wait(pid);
    v.stop.store(1, std::memory_order_release);
    if (competitor.joinable()) competitor.join();
    EXPECT_EQ(exit_code(status), kKilled);
    const std::uint32_t in_cs = v.in_cs;
    take_once(v, lock, round % 4 >= 2, in_round);
    EXPECT_EQ(in_round.bad, 0);
    EXPECT_EQ(in_round.failed, 0);
    EXPECT_LE(in_round.owner_died, 1);
    // Nobody repaired a death inside the critical section before the final take: it must.
    if (in_cs != 0) {
      EXPECT_EQ(in_round.owner_died, 1) << "the child died inside";
    }
    deaths += in_round.owner_died;
    // Every completed update is counted; at most one more was under way.
    const std::uint64_t delta = v.counter - before;
    const std::uint64_t done = v.done.load();
    EXPECT_TRUE(delta == done || delta == done + 1) << delta << " vs " << done;
    EXPECT_EQ(v.counter, v.shadow);
  }
  const auto after = Clock::now() + 5s;
  if (lock == Lock::mutex) {
    ASSERT_EQ(v.m.acquire_until(after), LockStatus::acquired);
    v.m.unlock();
  } else {
    ASSERT_EQ(v.rw.acquire_until(after), LockStatus::acquired);
    v.rw.unlock();
  }
  std::printf("%d rounds, owner died holding the lock in %d\n", kRounds, deaths);
}

std::string lock_name(const ::testing::TestParamInfo<Lock>& param) {
  return param.param == Lock::mutex ? "Mutex" : "SharedMutex";
}

void PrintTo(Lock lock, std::ostream* os) {
  *os << (lock == Lock::mutex ? "mutex" : "shared_mutex");
}

INSTANTIATE_TEST_SUITE_P(Lock, RandomKillsStress,
                         ::testing::Values(Lock::mutex, Lock::shared_mutex), lock_name);

// ---- SharedMutex ----

struct Table {
  SharedMutex rw;
  std::uint64_t counter;               // under rw (exclusive)
  std::array<std::uint64_t, 8> words;  // all equal to counter, written under rw
  std::atomic<int> inside_writers;
  std::atomic<int> overlaps;  // a writer met another writer or a reader
  std::atomic<int> inside_readers;
  std::atomic<int> writers_done;
  std::atomic<std::uint64_t> reads;
  std::atomic<std::uint64_t> torn;  // reads that saw unequal words
};

TEST(SharedMutexStress, FourWriterProcessesAndTwoReaders) {
  Segment seg = Segment::create_anonymous(kSegmentSize);
  Table& t = seg.as<Table>();
  Children kids;
  for (int p = 0; p < kProcesses; ++p) {
    const int pid = kids.start([&] {
      for (int i = 0; i < kIncrements; ++i) {
        if (t.rw.acquire() != LockStatus::acquired) return 2;
        if (t.inside_writers.fetch_add(1, std::memory_order_relaxed) != 0 ||
            t.inside_readers.load(std::memory_order_relaxed) != 0) {
          t.overlaps.fetch_add(1, std::memory_order_relaxed);
        }
        const std::uint64_t next = ++t.counter;
        for (auto& w : t.words) w = next;
        t.inside_writers.fetch_sub(1, std::memory_order_relaxed);
        t.rw.unlock();
      }
      t.writers_done.fetch_add(1, std::memory_order_release);
      return 0;
    });
    ASSERT_GT(pid, 0);
  }
  for (int r = 0; r < 2; ++r) {
    const int pid = kids.start([&] {
      bool last = false;
      while (!last) {
        last = t.writers_done.load(std::memory_order_acquire) == kProcesses;
        if (t.rw.acquire_shared() != LockStatus::acquired) return 2;
        t.inside_readers.fetch_add(1, std::memory_order_relaxed);
        if (t.inside_writers.load(std::memory_order_relaxed) != 0) {
          t.overlaps.fetch_add(1, std::memory_order_relaxed);
        }
        const std::uint64_t first = t.words[0];
        bool equal = first == t.counter;
        for (const auto& w : t.words) equal = equal && w == first;
        if (!equal) t.torn.fetch_add(1, std::memory_order_relaxed);
        t.reads.fetch_add(1, std::memory_order_relaxed);
        t.inside_readers.fetch_sub(1, std::memory_order_relaxed);
        t.rw.unlock_shared();
      }
      return 0;
    });
    ASSERT_GT(pid, 0);
  }
  for (int status : kids.wait_all()) EXPECT_EQ(exit_code(status), 0);
  EXPECT_EQ(t.counter, std::uint64_t{kProcesses} * kIncrements);
  EXPECT_EQ(t.overlaps.load(), 0);
  EXPECT_EQ(t.torn.load(), 0u);
  EXPECT_GE(t.reads.load(), 2u);
  EXPECT_EQ(t.rw.readers(), 0u);
  EXPECT_EQ(t.rw.writer(), 0);
}

struct RwSleepers {
  SharedMutex rw;
  std::uint64_t data;  // under rw: 1 while "half-written" by the writer
  std::atomic<int> held;
  std::atomic<int> outcome[3];  // code() of what each sleeper was told
  std::atomic<int> exclusive;   // the reader told owner_died held the lock exclusively
};

// A writer is SIGKILLed while two writers and a reader sleep: exactly one is told
// owner_died (a reader then holds the lock exclusively), the others acquire.
TEST(SharedMutexProc, WriterKilledWhileWritersAndAReaderSleep) {
  Segment seg = Segment::create_anonymous(4096);
  RwSleepers& s = seg.as<RwSleepers>();
  Children kids;
  const int owner = kids.start([&] {
    no_core_dump();
    if (s.rw.acquire() != LockStatus::acquired) return 2;
    s.data = 1;
    s.held.store(1, std::memory_order_release);
    sleep_until_killed();
  });
  ASSERT_GT(owner, 0);
  ASSERT_TRUE(eventually([&] { return s.held.load() == 1; }));
  std::vector<int> sleepers;
  for (int i = 0; i < 3; ++i) {
    const bool reader = i == 2;
    sleepers.push_back(kids.start([&, i, reader] {
      const LockStatus st = reader ? s.rw.acquire_shared() : s.rw.acquire();
      s.outcome[i].store(code(st), std::memory_order_release);
      if (st == LockStatus::owner_died) {
        if (reader && s.rw.writer() == my_tid() && s.rw.readers() == 0) s.exclusive.store(1);
        s.data = 0;
        s.rw.mark_consistent();
        s.rw.unlock();
        return 0;
      }
      if (st != LockStatus::acquired) return 3;
      if (s.data != 0) return 4;
      if (reader) {
        s.rw.unlock_shared();
      } else {
        s.rw.unlock();
      }
      return 0;
    }));
    ASSERT_GT(sleepers.back(), 0);
  }
  for (int pid : sleepers) ASSERT_TRUE(wait_until_blocked_on(pid, s.rw)) << "sleeper " << pid;
  kids.kill(owner);
  EXPECT_EQ(exit_code(kids.wait(owner)), kKilled);
  for (int pid : sleepers) EXPECT_EQ(exit_code(kids.wait(pid, 20)), 0);
  int died = 0, acquired = 0;
  for (auto& o : s.outcome) {
    died += o.load() == code(LockStatus::owner_died) ? 1 : 0;
    acquired += o.load() == code(LockStatus::acquired) ? 1 : 0;
  }
  EXPECT_EQ(died, 1);
  EXPECT_EQ(acquired, 2);
  if (s.outcome[2].load() == code(LockStatus::owner_died)) {
    EXPECT_EQ(s.exclusive.load(), 1);
  }
  ASSERT_EQ(s.rw.acquire_until(Clock::now() + 5s), LockStatus::acquired);
  s.rw.unlock();
}

// A reader that finds the last writer dead holds the lock exclusively, and must repair.
TEST(SharedMutexProc, ReaderFindingTheWriterDeadHoldsItExclusively) {
  Segment seg = Segment::create_anonymous(4096);
  RwSleepers& s = seg.as<RwSleepers>();
  Children kids;
  const int owner = kids.start([&] {
    no_core_dump();
    if (s.rw.acquire() != LockStatus::acquired) return 2;
    s.held.store(1, std::memory_order_release);
    sleep_until_killed();
  });
  ASSERT_GT(owner, 0);
  ASSERT_TRUE(eventually([&] { return s.held.load() == 1; }));
  kids.kill(owner);
  EXPECT_EQ(exit_code(kids.wait(owner)), kKilled);
  ASSERT_EQ(s.rw.acquire_shared_until(Clock::now() + 5s), LockStatus::owner_died);
  EXPECT_EQ(s.rw.writer(), my_tid());
  EXPECT_EQ(s.rw.readers(), 0u);
  // Another process can neither read nor write meanwhile.
  const int other = kids.start([&] {
    if (s.rw.try_acquire_shared() != LockStatus::busy) return 2;
    if (s.rw.try_acquire() != LockStatus::busy) return 3;
    return 0;
  });
  EXPECT_EQ(exit_code(kids.wait(other)), 0);
  s.rw.mark_consistent();
  s.rw.unlock();
  ASSERT_EQ(s.rw.acquire_shared_until(Clock::now() + 5s), LockStatus::acquired);
  s.rw.unlock_shared();
}

// A reader SIGKILLed while holding a shared lock does not keep writers out: the writer that
// was already waiting and a later one both get the lock (the dead reader's slot is freed at
// the next liveness check, ~100 ms; the bound here is generous).
TEST(SharedMutexProc, ReaderKilledHoldingTheLockDoesNotBlockWriters) {
  Segment seg = Segment::create_anonymous(4096);
  RwSleepers& s = seg.as<RwSleepers>();
  Children kids;
  const int reader = kids.start([&] {
    no_core_dump();
    if (s.rw.acquire_shared() != LockStatus::acquired) return 2;
    s.held.store(1, std::memory_order_release);
    sleep_until_killed();
  });
  ASSERT_GT(reader, 0);
  ASSERT_TRUE(eventually([&] { return s.held.load() == 1; }));
  EXPECT_EQ(s.rw.readers(), 1u);
  const int writer = kids.start([&] {
    const LockStatus st = s.rw.acquire_until(Clock::now() + 10s);
    s.outcome[0].store(code(st), std::memory_order_release);
    if (st != LockStatus::acquired) return 2;
    s.rw.unlock();
    return 0;
  });
  ASSERT_GT(writer, 0);
  ASSERT_TRUE(wait_until_blocked_on(writer, s.rw));
  kids.kill(reader);  // not reaped yet: a zombie must count as dead
  EXPECT_EQ(exit_code(kids.wait(writer, 20)), 0);
  EXPECT_EQ(s.outcome[0].load(), code(LockStatus::acquired));
  ASSERT_EQ(s.rw.acquire_until(Clock::now() + 5s), LockStatus::acquired);
  EXPECT_EQ(s.rw.readers(), 0u);
  s.rw.unlock();
  EXPECT_EQ(exit_code(kids.wait(reader)), kKilled);
}

// A writer is SIGKILLed while it waits for a reader (a thread of this process) to leave: the
// writer word says OWNER_DIED, and a reader is still inside. Each probe then makes one call:
//   TimedWriter   acquire_until() expires: timed_out, and the repair duty is kept (the next
//                 writer is told owner_died), the mutex is not made not recoverable;
//   TryWriter     try_acquire(): busy, or owner_died only with no reader inside;
//   TimedReader   acquire_shared_until() returns by its deadline;
//   TryReader     try_acquire_shared() returns at once;
//   Writer        acquire() waits for the reader, then owner_died with the lock exclusive.
enum class Probe { timed_writer, try_writer, timed_reader, try_reader, writer };

std::string probe_name(const ::testing::TestParamInfo<Probe>& param) {
  switch (param.param) {
    case Probe::timed_writer:
      return "TimedWriter";
    case Probe::try_writer:
      return "TryWriter";
    case Probe::timed_reader:
      return "TimedReader";
    case Probe::try_reader:
      return "TryReader";
    case Probe::writer:
      return "Writer";
  }
  return "Unknown";
}

void PrintTo(Probe probe, std::ostream* os) {
  *os << probe_name(::testing::TestParamInfo<Probe>(probe, 0));
}

class WriterKilledWhileDraining : public ::testing::TestWithParam<Probe> {};

// A thread of this process that holds a shared lock until told to leave (or destroyed).
class ReaderInside {
 public:
  explicit ReaderInside(SharedMutex& rw)
      : thread_([this, &rw] {
          if (rw.acquire_shared_until(Clock::now() + 10s) != LockStatus::acquired) return;
          inside_.store(true);
          (void)eventually([this] { return leave_.load(); }, 60s);
          rw.unlock_shared();
        }) {
    (void)eventually([this] { return inside_.load(); });
  }
  ~ReaderInside() { leave(); }
  ReaderInside(const ReaderInside&) = delete;
  ReaderInside& operator=(const ReaderInside&) = delete;

  bool inside() const { return inside_.load(); }
  void leave() {
    leave_.store(true);
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> inside_{false};
  std::atomic<bool> leave_{false};
  std::thread thread_;
};

TEST_P(WriterKilledWhileDraining, ACallMadeWhileTheReaderStaysInside) {
  Segment seg = Segment::create_anonymous(4096);
  RwSleepers& s = seg.as<RwSleepers>();
  ReaderInside reader(s.rw);
  ASSERT_TRUE(reader.inside());
  Children kids;
  const int writer = kids.start([&] {
    no_core_dump();
    (void)s.rw.acquire();  // takes the writer word, then waits for the reader forever
    return 2;
  });
  ASSERT_GT(writer, 0);
  ASSERT_TRUE(eventually([&] { return s.rw.writer() == writer; }));
  ASSERT_TRUE(wait_until_blocked_on(writer, s.rw));
  kids.kill(writer);
  ASSERT_EQ(exit_code(kids.wait(writer)), kKilled);
  ASSERT_EQ(s.rw.readers(), 1u);

  // The call runs in a thread, so that a call that blocks past its promise is seen (and
  // ended by letting the reader go) instead of hanging the test.
  std::atomic<bool> returned{false};
  std::atomic<std::int32_t> caller{0};
  LockStatus got = LockStatus::busy;
  std::uint32_t readers_then = 0;
  std::int32_t writer_then = 0;
  const auto deadline = Clock::now() + 200ms;
  std::thread call([&] {
    caller.store(my_tid());
    switch (GetParam()) {
      case Probe::timed_writer:
        got = s.rw.acquire_until(deadline);
        break;
      case Probe::try_writer:
        got = s.rw.try_acquire();
        break;
      case Probe::timed_reader:
        got = s.rw.acquire_shared_until(deadline);
        break;
      case Probe::try_reader:
        got = s.rw.try_acquire_shared();
        break;
      case Probe::writer:
        got = s.rw.acquire_until(Clock::now() + 20s);
        break;
    }
    readers_then = s.rw.readers();
    writer_then = s.rw.writer();
    returned.store(true);
    if (got == LockStatus::owner_died) {
      s.rw.mark_consistent();
      s.rw.unlock();
    } else if (got == LockStatus::acquired) {
      if (GetParam() == Probe::timed_reader || GetParam() == Probe::try_reader) {
        s.rw.unlock_shared();
      } else {
        s.rw.unlock();
      }
    }
  });
  if (GetParam() == Probe::writer) {
    EXPECT_TRUE(eventually([&] { return caller.load() != 0; }));
    EXPECT_TRUE(wait_until_blocked_on(caller.load(), s.rw) && !returned.load()) << "did not wait";
  } else {
    EXPECT_TRUE(eventually([&] { return returned.load(); }, 3s))
        << "still blocked 3 s after its deadline, until the reader leaves";
  }
  const bool early = returned.load();
  const bool recoverable_then = !s.rw.not_recoverable();
  reader.leave();
  call.join();

  switch (GetParam()) {
    case Probe::timed_writer:
    case Probe::timed_reader:
      if (early) {
        EXPECT_EQ(got, LockStatus::timed_out);
      }
      EXPECT_TRUE(recoverable_then) << "a call that gave up made the mutex not recoverable";
      break;
    case Probe::try_writer:
    case Probe::try_reader:
      if (got == LockStatus::owner_died) {
        EXPECT_EQ(readers_then, 0u) << "owner_died, the lock exclusive, a reader still inside";
      } else {
        EXPECT_EQ(got, LockStatus::busy);
      }
      break;
    case Probe::writer:
      EXPECT_EQ(got, LockStatus::owner_died);
      EXPECT_EQ(readers_then, 0u);
      EXPECT_EQ(writer_then, caller.load());
      break;
  }
  // Whatever the probe did, the next writer gets the lock: told owner_died unless the probe
  // was told (and repaired) already.
  const LockStatus next = s.rw.acquire_until(Clock::now() + 5s);
  if (got == LockStatus::owner_died) {
    EXPECT_EQ(next, LockStatus::acquired);
  } else {
    EXPECT_EQ(next, LockStatus::owner_died);
  }
  if (next == LockStatus::owner_died || next == LockStatus::acquired) {
    s.rw.mark_consistent();
    s.rw.unlock();
  }
}

INSTANTIATE_TEST_SUITE_P(Probe, WriterKilledWhileDraining,
                         ::testing::Values(Probe::timed_writer, Probe::try_writer,
                                           Probe::timed_reader, Probe::try_reader, Probe::writer),
                         probe_name);

// ---- Barrier ----

constexpr int kGenerations = 5000;

struct Rendezvous {
  Barrier b;
  std::atomic<std::uint32_t> arrivals[kGenerations];  // parties that reached generation g
  std::atomic<std::uint32_t> last[kGenerations];      // released_last in generation g
  std::atomic<int> early;                             // released before all had arrived
};

TEST(BarrierStress, FourProcessesReuseItOverManyGenerations) {
  Segment seg = Segment::create_anonymous(sizeof(Rendezvous));
  Rendezvous& r = seg.as<Rendezvous>();
  r.b.init(kProcesses);
  Children kids;
  for (int p = 0; p < kProcesses; ++p) {
    const int pid = kids.start([&] {
      for (int g = 0; g < kGenerations; ++g) {
        r.arrivals[g].fetch_add(1, std::memory_order_relaxed);
        const BarrierStatus st = r.b.arrive_and_wait();
        if (st == BarrierStatus::released_last) {
          r.last[g].fetch_add(1, std::memory_order_relaxed);
        } else if (st != BarrierStatus::released) {
          return 2;
        }
        if (r.arrivals[g].load(std::memory_order_relaxed) != kProcesses) {
          r.early.fetch_add(1, std::memory_order_relaxed);
        }
      }
      return 0;
    });
    ASSERT_GT(pid, 0);
  }
  for (int status : kids.wait_all()) EXPECT_EQ(exit_code(status), 0);
  int wrong = 0;
  for (int g = 0; g < kGenerations; ++g) wrong += r.last[g].load() == 1 ? 0 : 1;
  EXPECT_EQ(wrong, 0) << "generations without exactly one released_last";
  EXPECT_EQ(r.early.load(), 0);
  EXPECT_EQ(r.b.generation(), static_cast<std::uint32_t>(kGenerations % 65536));
  EXPECT_EQ(r.b.arrived(), 0u);
  EXPECT_FALSE(r.b.broken());
}

struct Party {
  Barrier b;
  std::atomic<int> joined;
  std::atomic<int> outcome[3];  // BarrierStatus + 1
};

// A party that joined is SIGKILLed before it arrives: the three waiting get `broken`.
TEST(BarrierProc, PartyKilledBeforeArrivingBreaksIt) {
  Segment seg = Segment::create_anonymous(4096);
  Party& p = seg.as<Party>();
  p.b.init(4);
  Children kids;
  const int victim = kids.start([&] {
    no_core_dump();
    p.b.join();
    p.joined.store(1, std::memory_order_release);
    sleep_until_killed();
    return 0;
  });
  ASSERT_GT(victim, 0);
  ASSERT_TRUE(eventually([&] { return p.joined.load() == 1; }));
  std::vector<int> waiting;
  for (int i = 0; i < 3; ++i) {
    waiting.push_back(kids.start([&, i] {
      const BarrierStatus st = p.b.arrive_and_wait();
      p.outcome[i].store(static_cast<int>(st) + 1, std::memory_order_release);
      return st == BarrierStatus::broken ? 0 : 2;
    }));
    ASSERT_GT(waiting.back(), 0);
  }
  ASSERT_TRUE(eventually([&] { return p.b.arrived() == 3; }));
  for (int pid : waiting) ASSERT_TRUE(wait_until_blocked_on(pid, p.b));
  kids.kill(victim);
  for (int pid : waiting) EXPECT_EQ(exit_code(kids.wait(pid, 20)), 0);
  EXPECT_EQ(exit_code(kids.wait(victim)), kKilled);
  EXPECT_TRUE(p.b.broken());
  EXPECT_EQ(p.b.arrive_and_wait_until(Clock::now() + 5s), BarrierStatus::broken);
  p.b.init(1);
  EXPECT_EQ(p.b.arrive_and_wait_until(Clock::now() + 5s), BarrierStatus::released_last);
}

// A timed wait that expires withdraws its arrival; the barrier works on afterwards.
TEST(BarrierProc, TimedOutArrivalIsWithdrawn) {
  Segment seg = Segment::create_anonymous(4096);
  Party& p = seg.as<Party>();
  p.b.init(2);
  Children kids;
  const int child = kids.start([&] {
    const BarrierStatus first = p.b.arrive_and_wait_until(Clock::now() + 50ms);
    p.outcome[0].store(static_cast<int>(first) + 1, std::memory_order_release);
    if (first != BarrierStatus::timed_out || p.b.arrived() != 0) return 2;
    p.joined.store(1, std::memory_order_release);
    const BarrierStatus second = p.b.arrive_and_wait_until(Clock::now() + 20s);
    p.outcome[1].store(static_cast<int>(second) + 1, std::memory_order_release);
    return second == BarrierStatus::released || second == BarrierStatus::released_last ? 0 : 3;
  });
  ASSERT_GT(child, 0);
  ASSERT_TRUE(eventually([&] { return p.joined.load() == 1; }));
  const BarrierStatus mine = p.b.arrive_and_wait_until(Clock::now() + 20s);
  EXPECT_EQ(exit_code(kids.wait(child)), 0);
  EXPECT_EQ(p.outcome[0].load(), static_cast<int>(BarrierStatus::timed_out) + 1);
  const int theirs = p.outcome[1].load() - 1;
  EXPECT_TRUE((mine == BarrierStatus::released &&
               theirs == static_cast<int>(BarrierStatus::released_last)) ||
              (mine == BarrierStatus::released_last &&
               theirs == static_cast<int>(BarrierStatus::released)));
  EXPECT_FALSE(p.b.broken());
  EXPECT_EQ(p.b.generation(), 1u);
}

// ---- Condition ----

struct Mailbox {
  Mutex m;
  Condition not_empty;
  Condition not_full;
  bool full;            // under m
  std::uint64_t value;  // under m: 1, 2, 3 … and 0 for "no more"
  std::uint64_t sent;   // the producer's count of values
  std::uint64_t taken;  // the consumer's count of values
  std::uint64_t sum;    // the consumer's total
  std::uint64_t out_of_order;
};

// Puts `value` into the mailbox, waiting while it is full. Odd values are announced while the
// mutex is held, even ones just after unlocking: both are correct uses and both must work.
int put(Mailbox& box, std::uint64_t value) {
  if (box.m.acquire() != LockStatus::acquired) return 2;
  const CondWait w = box.not_full.wait(box.m, [&] { return !box.full; });
  if (w.lock != LockStatus::acquired) return 3;
  box.value = value;
  box.full = true;
  if (value % 2 == 1) {
    box.not_empty.notify_one();
    box.m.unlock();
  } else {
    box.m.unlock();
    box.not_empty.notify_one();
  }
  return 0;
}

// A million hand-offs through a one-slot mailbox, no wake-up lost (about a second here: a
// Condition waiter spins before it sleeps). The time budget only stops a broken build from
// running for ever; the checks cover exactly the values sent, and all must be.
TEST(ConditionStress, MillionHandOffsThroughAOneSlotMailbox) {
  constexpr std::uint64_t kHandOffs = 1'000'000;
  constexpr std::uint64_t kAtLeast = kHandOffs;
  constexpr auto kBudget = 120s;
  Segment seg = Segment::create_anonymous(4096);
  Mailbox& box = seg.as<Mailbox>();
  Children kids;
  const int producer = kids.start([&] {
    const auto end = Clock::now() + kBudget;
    std::uint64_t i = 1;
    for (; i <= kHandOffs && (i % 1024 != 0 || Clock::now() < end); ++i) {
      if (const int rc = put(box, i); rc != 0) return rc;
    }
    box.sent = i - 1;  // read by the parent once both have exited
    return put(box, 0);
  });
  const int consumer = kids.start([&] {
    for (std::uint64_t expected = 1;; ++expected) {
      if (box.m.acquire() != LockStatus::acquired) return 2;
      const CondWait w = box.not_empty.wait(box.m, [&] { return box.full; });
      if (w.lock != LockStatus::acquired) return 3;
      const std::uint64_t v = box.value;
      box.full = false;
      if (v != 0) {
        if (v != expected) ++box.out_of_order;
        box.sum += v;
        ++box.taken;
      }
      if (v % 2 == 1) {
        box.not_full.notify_one();
        box.m.unlock();
      } else {
        box.m.unlock();
        box.not_full.notify_one();
      }
      if (v == 0) return 0;
    }
  });
  ASSERT_GT(producer, 0);
  ASSERT_GT(consumer, 0);
  EXPECT_EQ(exit_code(kids.wait(producer)), 0);
  EXPECT_EQ(exit_code(kids.wait(consumer)), 0);
  const std::uint64_t n = box.sent;
  EXPECT_GE(n, kAtLeast);
  EXPECT_EQ(box.taken, n);
  EXPECT_EQ(box.sum, n * (n + 1) / 2);
  EXPECT_EQ(box.out_of_order, 0u);
  EXPECT_FALSE(box.full);
  std::printf("%llu hand-offs\n", static_cast<unsigned long long>(n));
}

TEST(ConditionProc, NotifyFromAnotherProcessAndTimedWait) {
  Segment seg = Segment::create_anonymous(4096);
  Mailbox& box = seg.as<Mailbox>();
  Children kids;
  const int waiter = kids.start([&] {
    if (box.m.acquire() != LockStatus::acquired) return 2;
    // Nobody notifies yet: a timed wait returns timed_out with the mutex held again.
    const CondWait first = box.not_empty.wait_for(box.m, 50ms);
    if (!first.timed_out || first.lock != LockStatus::acquired) return 3;
    if (box.m.owner() != my_tid()) return 4;
    box.value = 1;  // "ready for the notify"
    while (!box.full) {
      const CondWait w = box.not_empty.wait_for(box.m, 20s);
      if (w.lock != LockStatus::acquired) return 5;
      if (w.timed_out && !box.full) return 6;
    }
    box.m.unlock();
    return 0;
  });
  ASSERT_GT(waiter, 0);
  ASSERT_TRUE(eventually([&] {
    if (box.m.acquire_for(5s) != LockStatus::acquired) return false;
    const bool ready = box.value == 1;
    if (ready) {
      box.full = true;
      box.not_empty.notify_one();
    }
    box.m.unlock();
    return ready;
  }));
  EXPECT_EQ(exit_code(kids.wait(waiter)), 0);
}

// A waiter killed in its sleep leaves the mutex free and the condition usable.
TEST(ConditionProc, WaiterKilledWhileWaitingLeavesEverythingUsable) {
  Segment seg = Segment::create_anonymous(4096);
  Mailbox& box = seg.as<Mailbox>();
  Children kids;
  const int doomed = kids.start([&] {
    no_core_dump();
    if (box.m.acquire() != LockStatus::acquired) return 2;
    (void)box.not_empty.wait(box.m, [&] { return box.full; });
    return 3;
  });
  ASSERT_GT(doomed, 0);
  ASSERT_TRUE(wait_until_blocked_on(doomed, box.not_empty));
  kids.kill(doomed);
  EXPECT_EQ(exit_code(kids.wait(doomed)), kKilled);
  ASSERT_EQ(box.m.acquire_for(5s), LockStatus::acquired);  // not owner_died: it was not held
  box.not_empty.notify_all();
  box.m.unlock();
  const int waiter = kids.start([&] {
    if (box.m.acquire() != LockStatus::acquired) return 2;
    const CondWait w = box.not_empty.wait(box.m, [&] { return box.full; });
    if (w.lock != LockStatus::acquired) return 3;
    box.m.unlock();
    return 0;
  });
  ASSERT_GT(waiter, 0);
  ASSERT_TRUE(wait_until_blocked_on(waiter, box.not_empty));
  ASSERT_EQ(box.m.acquire_for(5s), LockStatus::acquired);
  box.full = true;
  box.not_empty.notify_one();
  box.m.unlock();
  EXPECT_EQ(exit_code(kids.wait(waiter, 20)), 0);
}

// ---- Semaphore ----

struct PingPong {
  Semaphore ping;
  Semaphore pong;
  std::atomic<std::uint64_t> pings_seen;
  std::atomic<std::uint64_t> pongs_seen;
};

TEST(SemaphoreStress, PingPongHundredThousandRoundTrips) {
  constexpr std::uint64_t kRounds = 100'000;
  Segment seg = Segment::create_anonymous(4096);
  PingPong& pp = seg.as<PingPong>();
  Children kids;
  const int pinger = kids.start([&] {
    for (std::uint64_t i = 0; i < kRounds; ++i) {
      pp.ping.post();
      if (!pp.pong.wait_for(10s)) return 2;
      pp.pongs_seen.fetch_add(1, std::memory_order_relaxed);
    }
    return 0;
  });
  const int ponger = kids.start([&] {
    for (std::uint64_t i = 0; i < kRounds; ++i) {
      if (!pp.ping.wait_for(10s)) return 2;
      pp.pings_seen.fetch_add(1, std::memory_order_relaxed);
      pp.pong.post();
    }
    return 0;
  });
  ASSERT_GT(pinger, 0);
  ASSERT_GT(ponger, 0);
  EXPECT_EQ(exit_code(kids.wait(pinger)), 0);
  EXPECT_EQ(exit_code(kids.wait(ponger)), 0);
  EXPECT_EQ(pp.pings_seen.load(), kRounds);
  EXPECT_EQ(pp.pongs_seen.load(), kRounds);
  EXPECT_EQ(pp.ping.value(), 0u);
  EXPECT_EQ(pp.pong.value(), 0u);
  EXPECT_EQ(pp.ping.waiting(), 0u);
}

// Two processes post, two take: every unit is taken exactly once; the meter agrees.
TEST(SemaphoreProc, UnitsAreCountedAcrossProcesses) {
  constexpr std::uint64_t kUnits = 50'000;
  Segment seg = Segment::create_anonymous(4096);
  PingPong& pp = seg.as<PingPong>();
  pp.ping.set_metering(true);
  Children kids;
  for (int i = 0; i < 2; ++i) {
    const int poster = kids.start([&] {
      for (std::uint64_t k = 0; k < kUnits; ++k) pp.ping.post();
      return 0;
    });
    ASSERT_GT(poster, 0);
    const int taker = kids.start([&] {
      for (std::uint64_t k = 0; k < kUnits; ++k) {
        if (!pp.ping.wait_for(10s)) return 2;
        pp.pings_seen.fetch_add(1, std::memory_order_relaxed);
      }
      return 0;
    });
    ASSERT_GT(taker, 0);
  }
  for (int status : kids.wait_all()) EXPECT_EQ(exit_code(status), 0);
  EXPECT_EQ(pp.pings_seen.load(), 2 * kUnits);
  EXPECT_EQ(pp.ping.value(), 0u);
  EXPECT_FALSE(pp.ping.try_wait());
  const SemaphoreMeter m = pp.ping.meter();
  EXPECT_EQ(m.posts, 2 * kUnits);
  EXPECT_EQ(m.waits, 2 * kUnits);
  EXPECT_EQ(m.immediate + m.blocked, m.waits);
  EXPECT_LE(m.posts_no_waiter, m.posts);
}

// semaphore.hpp: "A waiter that dies while sleeping leaves no unit taken."
TEST(SemaphoreProc, WaiterKilledWhileSleepingTakesNoUnit) {
  Segment seg = Segment::create_anonymous(4096);
  PingPong& pp = seg.as<PingPong>();
  Children kids;
  const int doomed = kids.start([&] {
    no_core_dump();
    pp.ping.wait();
    return 2;
  });
  ASSERT_GT(doomed, 0);
  ASSERT_TRUE(eventually([&] { return pp.ping.waiting() == 1; }));
  ASSERT_TRUE(wait_until_blocked_on(doomed, pp.ping));
  kids.kill(doomed);
  EXPECT_EQ(exit_code(kids.wait(doomed)), kKilled);
  pp.ping.post();
  EXPECT_EQ(pp.ping.value(), 1u);
  const int taker = kids.start([&] { return pp.ping.wait_for(10s) ? 0 : 2; });
  EXPECT_EQ(exit_code(kids.wait(taker)), 0);
  EXPECT_EQ(pp.ping.value(), 0u);
  // A new sleeper is still woken by a post.
  const int sleeper = kids.start([&] { return pp.ping.wait_for(20s) ? 0 : 2; });
  ASSERT_TRUE(wait_until_blocked_on(sleeper, pp.ping));
  pp.ping.post();
  EXPECT_EQ(exit_code(kids.wait(sleeper)), 0);
  EXPECT_EQ(pp.ping.value(), 0u);
}

// ---- Event ----

struct Signal {
  Event data;                        // notified when `value` moves
  Event ack;                         // notified when `acked` moves
  std::atomic<std::uint64_t> value;  // the producer's counter
  std::atomic<std::uint64_t> acked;  // the last value the consumer saw
  std::atomic<std::uint64_t> wakes;  // the consumer's completed waits
  std::atomic<std::uint64_t> lost;   // waits that ended without a notify, the value moved
  std::atomic<std::uint64_t> backwards;
};

// The Event protocol of event.hpp, with one addition: after each sleep it looks whether the
// epoch moved. A sleep that ends with the epoch unmoved although the condition now holds was
// ended by the 100 ms liveness timer, not by the notify that made the condition true: that
// notify was lost. (A false alarm needs the notifier to stall 100 ms between its store and
// its notify.)
template <class Pred>
bool wait_watching_for_lost(Event& ev, Pred ready, Clock::time_point deadline,
                            std::atomic<std::uint64_t>& lost) {
  while (!ready()) {
    const std::uint32_t key = ev.prepare_wait();
    if (ready()) {
      ev.cancel_wait();
      return true;
    }
    if (!ev.wait_until(key, deadline)) return ready();
    const std::uint32_t now = ev.prepare_wait();
    ev.cancel_wait();
    if (now == key && ready()) lost.fetch_add(1, std::memory_order_relaxed);
  }
  return true;
}

TEST(EventStress, MillionNotificationsWithoutALostWakeUp) {
  constexpr std::uint64_t kNotifications = 1'000'000;
  constexpr std::uint64_t kBatch = 64;  // the producer waits for the consumer this often
  Segment seg = Segment::create_anonymous(4096);
  Signal& sig = seg.as<Signal>();
  Children kids;
  const int producer = kids.start([&] {
    for (std::uint64_t i = 1; i <= kNotifications; ++i) {
      sig.value.store(i, std::memory_order_release);
      sig.data.notify_all();
      if (i % kBatch == 0 &&
          !sig.ack.wait_for_condition([&] { return sig.acked.load() >= i; }, Clock::now() + 20s)) {
        return 2;
      }
    }
    return 0;
  });
  const int consumer = kids.start([&] {
    std::uint64_t seen = 0;
    for (unsigned round = 0; seen < kNotifications; ++round) {
      const auto moved = [&] { return sig.value.load(std::memory_order_acquire) > seen; };
      bool ok;
      if (round % 2 == 0) {
        ok = sig.data.wait_for_condition(moved, Clock::now() + 20s);
      } else {
        ok = wait_watching_for_lost(sig.data, moved, Clock::now() + 20s, sig.lost);
      }
      if (!ok) return 2;
      const std::uint64_t v = sig.value.load(std::memory_order_acquire);
      if (v <= seen) sig.backwards.fetch_add(1, std::memory_order_relaxed);
      seen = v;
      sig.wakes.fetch_add(1, std::memory_order_relaxed);
      sig.acked.store(seen, std::memory_order_release);
      sig.ack.notify_all();
    }
    return 0;
  });
  ASSERT_GT(producer, 0);
  ASSERT_GT(consumer, 0);
  EXPECT_EQ(exit_code(kids.wait(producer)), 0);
  EXPECT_EQ(exit_code(kids.wait(consumer)), 0);
  EXPECT_EQ(sig.acked.load(), kNotifications);
  EXPECT_EQ(sig.backwards.load(), 0u);
  EXPECT_EQ(sig.lost.load(), 0u) << "sleeps ended by the liveness timer, not by a notify";
  EXPECT_EQ(sig.data.waiting(), 0u);
  EXPECT_EQ(sig.ack.waiting(), 0u);
  std::printf("%llu notifications, the consumer woke %llu times\n",
              static_cast<unsigned long long>(kNotifications),
              static_cast<unsigned long long>(sig.wakes.load()));
}

// Notifying with nobody registered never reaches the kernel: the epoch (which only the
// waking path moves) stays where it was, and nobody is counted as waiting.
TEST(EventProc, NotifyFromAnotherProcessWithoutWaitersStaysInUserSpace) {
  Segment seg = Segment::create_anonymous(4096);
  Signal& sig = seg.as<Signal>();
  const std::uint32_t before = sig.data.prepare_wait();
  sig.data.cancel_wait();
  Children kids;
  const int notifier = kids.start([&] {
    for (int i = 0; i < 100'000; ++i) {
      sig.data.notify_one();
      sig.data.notify_all();
      if (sig.data.waiting() != 0) return 2;
    }
    return 0;
  });
  EXPECT_EQ(exit_code(kids.wait(notifier)), 0);
  const std::uint32_t after = sig.data.prepare_wait();
  sig.data.cancel_wait();
  EXPECT_EQ(before, after);
  EXPECT_EQ(sig.data.waiting(), 0u);
}

// ---- The helper program ----

// `<this binary> --helper increment NAME COUNT` adds COUNT to the counter of the Named
// structure in segment NAME under its mutex; `--helper hold NAME` takes the mutex, bumps the
// counter (work left half-done) and sleeps until killed. Exit 0 on success.
int helper_main(int argc, char** argv) {
  if (argc < 4) return 64;
  const std::string verb = argv[2];
  Segment seg = Segment::open(argv[3]);
  Named& n = seg.as<Named>();
  if (verb == "increment" && argc == 5) {
    const long count = std::atol(argv[4]);
    for (long i = 0; i < count; ++i) {
      if (n.m.acquire() != LockStatus::acquired) return 2;
      ++n.counter;
      n.m.unlock();
    }
    return 0;
  }
  if (verb == "hold") {
    no_core_dump();
    if (n.m.acquire() != LockStatus::acquired) return 2;
    ++n.counter;
    n.held.store(1, std::memory_order_release);
    sleep_until_killed();
  }
  return 64;
}

}  // namespace
}  // namespace shmkit

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "--helper") == 0) {
    try {
      return shmkit::helper_main(argc, argv);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "helper: %s\n", e.what());
      return 99;
    }
  }
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::UnitTest::GetInstance()->listeners().Append(new shmkit::Watchdog);
  return RUN_ALL_TESTS();
}
