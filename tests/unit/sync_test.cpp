// SPDX-License-Identifier: MIT
// The sync objects within one process, between threads: zero bytes as the initial state,
// exclusion, owner death through a thread's exit, the Lockable forms, timeouts, metering.
// Objects live in an anonymous segment, as they would between processes. Every test runs under
// a watchdog (alarm) so that a wait the library never ends fails the run instead of hanging it;
// timed waits assert only that they returned timed_out, and not before their deadline.
#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <type_traits>
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

// ---- Watchdog ----

// Ends the run (SIGALRM) if one test takes longer than this: a hang becomes a failure.
constexpr unsigned kWatchdogSeconds = 60;

class Watchdog : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo&) override { ::alarm(kWatchdogSeconds); }
  void OnTestEnd(const ::testing::TestInfo&) override { ::alarm(0); }
};

const bool watchdog_installed = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new Watchdog);
  return true;
}();

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

// Zeroed shared memory holding a T (never constructed: zero bytes are its initial state).
template <class T>
struct Zeroed {
  Segment seg = Segment::create_anonymous(sizeof(T) < 4096 ? 4096 : sizeof(T));
  T& get() const { return seg.as<T>(); }
};

// A thread that publishes its kernel id before it runs `body`, so that the test can see it
// sleep (blocked_on). Joined when destroyed.
class Worker {
 public:
  explicit Worker(std::function<void()> body)
      : thread_([this, body = std::move(body)] {
          tid_.store(my_tid(), std::memory_order_release);
          body();
        }) {
    (void)eventually([this] { return tid_.load(std::memory_order_acquire) != 0; });
  }
  ~Worker() { join(); }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void join() {
    if (thread_.joinable()) thread_.join();
  }
  std::int32_t tid() const { return tid_.load(std::memory_order_acquire); }
  /// True once the thread sleeps in a futex wait on a word inside `object`.
  template <class T>
  bool blocked_on(const T& object) const {
    return test::wait_until_blocked_on(tid(), object);
  }

 private:
  std::atomic<std::int32_t> tid_{0};
  std::thread thread_;
};

// A thread that runs `take`, then holds what it took until release() runs `give`. The
// constructor returns once `take` is done.
class Holder {
 public:
  Holder(std::function<void()> take, std::function<void()> give)
      : worker_([this, take = std::move(take), give = std::move(give)] {
          take();
          taken_.store(true, std::memory_order_release);
          (void)eventually([this] { return released_.load(std::memory_order_acquire); }, 60s);
          give();
        }) {
    (void)eventually([this] { return taken_.load(std::memory_order_acquire); });
  }
  ~Holder() { release(); }
  Holder(const Holder&) = delete;
  Holder& operator=(const Holder&) = delete;

  void release() {
    released_.store(true, std::memory_order_release);
    worker_.join();
  }
  std::int32_t tid() const { return worker_.tid(); }

 private:
  std::atomic<bool> taken_{false};
  std::atomic<bool> released_{false};
  Worker worker_;
};

// Runs `body` in a thread that has ended when this returns (it exits holding what it took).
void in_thread_that_exits(const std::function<void()>& body) { std::thread(body).join(); }

// ---- Layout ----

TEST(SyncLayout, SharedTypesHaveTheirDocumentedShape) {
  static_assert(sizeof(Mutex) == 64 && alignof(Mutex) == 8);
  static_assert(sizeof(SharedMutex) == 256 && alignof(SharedMutex) <= 8);
  static_assert(sizeof(Semaphore) == 64 && alignof(Semaphore) == 8);
  static_assert(sizeof(Condition) == 16 && alignof(Condition) <= 8);
  static_assert(sizeof(Event) == 16 && alignof(Event) <= 8);
  static_assert(sizeof(Barrier) == 512 && alignof(Barrier) <= 8);
  static_assert(std::is_standard_layout_v<Mutex> && std::is_standard_layout_v<SharedMutex> &&
                std::is_standard_layout_v<Semaphore> && std::is_standard_layout_v<Condition> &&
                std::is_standard_layout_v<Event> && std::is_standard_layout_v<Barrier>);
  // Default construction is the zero state, so a constexpr object needs no constructor run.
  static constinit Mutex m;
  static constinit Semaphore s;
  EXPECT_FALSE(m.is_locked());
  EXPECT_EQ(s.value(), 0u);
}

// ---- Mutex ----

TEST(Mutex, ZeroBytesAreAnUnlockedMutex) {
  Zeroed<Mutex> z;
  Mutex& m = z.get();
  EXPECT_FALSE(m.is_locked());
  EXPECT_EQ(m.owner(), 0);
  EXPECT_FALSE(m.inconsistent());
  EXPECT_FALSE(m.not_recoverable());
  EXPECT_FALSE(m.metering());
  ASSERT_EQ(m.acquire(), LockStatus::acquired);
  EXPECT_TRUE(m.is_locked());
  EXPECT_EQ(m.owner(), my_tid());
  m.unlock();
  EXPECT_FALSE(m.is_locked());
  EXPECT_EQ(m.owner(), 0);
  ASSERT_EQ(m.try_acquire(), LockStatus::acquired);
  m.unlock();
}

TEST(Mutex, BusyAndTimedOutWhileAnotherThreadHolds) {
  Zeroed<Mutex> z;
  Mutex& m = z.get();
  Holder h([&] { (void)m.acquire(); }, [&] { m.unlock(); });
  EXPECT_EQ(m.owner(), h.tid());
  EXPECT_EQ(m.try_acquire(), LockStatus::busy);
  EXPECT_FALSE(m.try_lock());
  auto deadline = Clock::now() + 30ms;
  EXPECT_EQ(m.acquire_until(deadline), LockStatus::timed_out);
  EXPECT_GE(Clock::now(), deadline);
  EXPECT_EQ(m.acquire_for(20ms), LockStatus::timed_out);
  EXPECT_FALSE(m.try_lock_for(20ms));
  const auto system_deadline = std::chrono::system_clock::now() + 20ms;
  EXPECT_FALSE(m.try_lock_until(system_deadline));
  EXPECT_GE(std::chrono::system_clock::now(), system_deadline);
  EXPECT_EQ(m.acquire_until(Clock::now() - 1s), LockStatus::timed_out);
  EXPECT_EQ(m.owner(), h.tid());  // timeouts left the holder alone
  h.release();
  // A deadline already past does not stop a free lock from being taken.
  ASSERT_EQ(m.acquire_until(Clock::now() - 1s), LockStatus::acquired);
  m.unlock();
  ASSERT_TRUE(m.try_lock_for(1s));
  m.unlock();
}

TEST(Mutex, SleeperGetsTheLockWhenTheHolderReleases) {
  Zeroed<Mutex> z;
  Mutex& m = z.get();
  ASSERT_EQ(m.acquire(), LockStatus::acquired);
  LockStatus got = LockStatus::busy;
  Worker w([&] {
    got = m.acquire_for(20s);
    if (got == LockStatus::acquired) m.unlock();
  });
  ASSERT_TRUE(w.blocked_on(m));
  m.unlock();
  w.join();
  EXPECT_EQ(got, LockStatus::acquired);
  EXPECT_FALSE(m.is_locked());
}

struct Counted {
  Mutex m;
  std::uint64_t counter;      // under m
  std::atomic<int> inside;    // threads inside the critical section
  std::atomic<int> overlaps;  // times two were inside at once
};

TEST(Mutex, FourThreadsIncrementExactly) {
  constexpr int kThreads = 4;
  constexpr int kIncrements = 100'000;
  Zeroed<Counted> z;
  Counted& c = z.get();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        if (c.m.acquire() != LockStatus::acquired) {
          failures.fetch_add(1);
          return;
        }
        if (c.inside.fetch_add(1, std::memory_order_relaxed) != 0) c.overlaps.fetch_add(1);
        ++c.counter;
        c.inside.fetch_sub(1, std::memory_order_relaxed);
        c.m.unlock();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(c.counter, std::uint64_t{kThreads} * kIncrements);
  EXPECT_EQ(c.overlaps.load(), 0);
}

TEST(Mutex, WorksWithTheStandardLockWrappers) {
  struct Two {
    Mutex a;
    Mutex b;
    std::uint64_t n;
  };
  Zeroed<Two> z;
  Two& two = z.get();
  {
    std::lock_guard<Mutex> g(two.a);
    EXPECT_EQ(two.a.owner(), my_tid());
  }
  EXPECT_FALSE(two.a.is_locked());
  {
    std::unique_lock<Mutex> u(two.a, std::defer_lock);
    EXPECT_FALSE(u.owns_lock());
    u.lock();
    EXPECT_TRUE(two.a.is_locked());
    u.unlock();
    EXPECT_TRUE(u.try_lock());
    u.unlock();
    EXPECT_TRUE(u.try_lock_for(10ms));
  }
  EXPECT_FALSE(two.a.is_locked());
  {
    Holder h([&] { (void)two.a.acquire(); }, [&] { two.a.unlock(); });
    std::unique_lock<Mutex> tried(two.a, std::try_to_lock);
    EXPECT_FALSE(tried.owns_lock());
    std::unique_lock<Mutex> timed(two.a, 20ms);
    EXPECT_FALSE(timed.owns_lock());
  }
  // std::scoped_lock takes both without deadlock from threads that name them in either order.
  std::thread forward([&] {
    for (int i = 0; i < 20'000; ++i) {
      std::scoped_lock both(two.a, two.b);
      ++two.n;
    }
  });
  std::thread backward([&] {
    for (int i = 0; i < 20'000; ++i) {
      std::scoped_lock both(two.b, two.a);
      ++two.n;
    }
  });
  forward.join();
  backward.join();
  EXPECT_EQ(two.n, 40'000u);
  EXPECT_FALSE(two.a.is_locked());
  EXPECT_FALSE(two.b.is_locked());
}

TEST(Mutex, ThreadExitingWhileHoldingIsReportedAsOwnerDied) {
  Zeroed<Mutex> z;
  Mutex& m = z.get();
  in_thread_that_exits([&] { (void)m.acquire(); });
  EXPECT_FALSE(m.is_locked());  // the kernel released it, marked
  EXPECT_EQ(m.owner(), 0);
  ASSERT_EQ(m.acquire_for(5s), LockStatus::owner_died);
  EXPECT_EQ(m.owner(), my_tid());
  EXPECT_TRUE(m.inconsistent());
  m.mark_consistent();
  EXPECT_FALSE(m.inconsistent());
  m.unlock();
  EXPECT_FALSE(m.not_recoverable());
  ASSERT_EQ(m.acquire_for(5s), LockStatus::acquired);  // told once, not again
  m.unlock();
}

TEST(Mutex, TryAcquireReportsADeadOwnerToo) {
  Zeroed<Mutex> z;
  Mutex& m = z.get();
  in_thread_that_exits([&] { (void)m.acquire(); });
  ASSERT_EQ(m.try_acquire(), LockStatus::owner_died);
  m.mark_consistent();
  m.unlock();
}

// Three threads sleep while the owner thread exits: each proceeds, exactly one is told.
TEST(Mutex, OwnerThreadExitingWakesTheSleepersOneToldOwnerDied) {
  Zeroed<Counted> z;
  Counted& c = z.get();
  std::atomic<bool> exit_now{false};
  Worker owner([&] {
    (void)c.m.acquire();
    c.counter = 1;  // "half-written"
    (void)eventually([&] { return exit_now.load(); });
  });
  ASSERT_TRUE(eventually([&] { return c.m.is_locked(); }));
  std::array<LockStatus, 3> got{LockStatus::busy, LockStatus::busy, LockStatus::busy};
  std::array<bool, 3> saw_repaired{false, false, false};
  std::vector<std::unique_ptr<Worker>> sleepers;
  for (std::size_t i = 0; i < got.size(); ++i) {
    sleepers.push_back(std::make_unique<Worker>([&, i] {
      got[i] = c.m.acquire_for(20s);
      if (got[i] == LockStatus::owner_died) {
        c.counter = 0;
        c.m.mark_consistent();
      }
      saw_repaired[i] = c.counter == 0;
      if (got[i] == LockStatus::owner_died || got[i] == LockStatus::acquired) c.m.unlock();
    }));
  }
  for (auto& s : sleepers) ASSERT_TRUE(s->blocked_on(c.m));
  exit_now.store(true);
  owner.join();
  for (auto& s : sleepers) s->join();
  int died = 0, acquired = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    died += got[i] == LockStatus::owner_died ? 1 : 0;
    acquired += got[i] == LockStatus::acquired ? 1 : 0;
    EXPECT_TRUE(saw_repaired[i]);
  }
  EXPECT_EQ(died, 1);
  EXPECT_EQ(acquired, 2);
}

TEST(Mutex, LockThrowsOwnerDiedAndLeavesTheLockHeld) {
  Zeroed<Mutex> z;
  Mutex& m = z.get();
  in_thread_that_exits([&] { (void)m.acquire(); });
  try {
    m.lock();
    ADD_FAILURE() << "lock() did not report the dead owner";
  } catch (const OwnerDied& e) {
    EXPECT_EQ(e.errnum(), EOWNERDEAD);
    EXPECT_NE(std::string(e.what()).find("mark_consistent"), std::string::npos) << e.what();
  }
  EXPECT_EQ(m.owner(), my_tid());
  m.mark_consistent();
  m.unlock();
  EXPECT_TRUE(m.try_lock());
  m.unlock();
}

TEST(Mutex, UnlockWithoutRepairMakesItNotRecoverable) {
  Zeroed<Mutex> z;
  Mutex& m = z.get();
  in_thread_that_exits([&] { (void)m.acquire(); });
  ASSERT_EQ(m.acquire_for(5s), LockStatus::owner_died);
  // A thread that sleeps meanwhile learns it too.
  LockStatus sleeper = LockStatus::busy;
  Worker w([&] { sleeper = m.acquire_for(20s); });
  ASSERT_TRUE(w.blocked_on(m));
  m.unlock();  // no mark_consistent()
  w.join();
  EXPECT_EQ(sleeper, LockStatus::not_recoverable);
  EXPECT_TRUE(m.not_recoverable());
  EXPECT_FALSE(m.is_locked());
  EXPECT_EQ(m.acquire(), LockStatus::not_recoverable);
  EXPECT_EQ(m.try_acquire(), LockStatus::not_recoverable);
  EXPECT_EQ(m.acquire_for(10ms), LockStatus::not_recoverable);
  for (int form = 0; form < 3; ++form) {
    try {
      if (form == 0) m.lock();
      if (form == 1) (void)m.try_lock();
      if (form == 2) (void)m.try_lock_for(10ms);
      ADD_FAILURE() << "form " << form << " did not throw";
    } catch (const OwnerDied&) {
      ADD_FAILURE() << "form " << form << " threw OwnerDied";
    } catch (const Error& e) {
      EXPECT_EQ(e.errnum(), ENOTRECOVERABLE) << e.what();
    }
  }
  EXPECT_FALSE(m.is_locked());
  m.reset();
  EXPECT_FALSE(m.not_recoverable());
  ASSERT_EQ(m.acquire(), LockStatus::acquired);
  m.unlock();
}

TEST(Mutex, MeteringCountsAcquisitionsWaitsAndDeaths) {
  Zeroed<Mutex> z;
  Mutex& m = z.get();
  m.set_metering(true);
  EXPECT_TRUE(m.metering());
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(m.acquire(), LockStatus::acquired);
    m.unlock();
  }
  LockMeter meter = m.meter();
  EXPECT_EQ(meter.acquisitions, 3u);
  EXPECT_EQ(meter.contended, 0u);
  EXPECT_EQ(meter.wait_ns, 0u);
  EXPECT_EQ(meter.owner_deaths, 0u);

  ASSERT_EQ(m.acquire(), LockStatus::acquired);
  Worker w([&] {
    if (m.acquire_for(20s) == LockStatus::acquired) m.unlock();
  });
  ASSERT_TRUE(w.blocked_on(m));
  m.unlock();
  w.join();
  meter = m.meter();
  EXPECT_EQ(meter.acquisitions, 5u);
  EXPECT_EQ(meter.contended, 1u);
  EXPECT_GT(meter.wait_ns, 0u);
  EXPECT_GT(meter.longest_wait_ns, 0u);

  in_thread_that_exits([&] { (void)m.acquire(); });
  ASSERT_EQ(m.acquire(), LockStatus::owner_died);
  m.mark_consistent();
  m.unlock();
  meter = m.meter();
  EXPECT_EQ(meter.acquisitions, 7u);
  EXPECT_EQ(meter.owner_deaths, 1u);

  m.reset_meter();
  meter = m.meter();
  EXPECT_EQ(meter.acquisitions, 0u);
  EXPECT_EQ(meter.owner_deaths, 0u);

  m.set_metering(false);
  EXPECT_FALSE(m.metering());
  ASSERT_EQ(m.acquire(), LockStatus::acquired);
  m.unlock();
  meter = m.meter();
  EXPECT_EQ(meter.acquisitions, 0u);
  EXPECT_EQ(meter.contended, 0u);
  EXPECT_EQ(meter.wait_ns, 0u);
  EXPECT_EQ(meter.longest_wait_ns, 0u);
  EXPECT_EQ(meter.owner_deaths, 0u);
  m.set_metering(true);  // counts start from zero again
  EXPECT_EQ(m.meter().acquisitions, 0u);
}

// mutex.hpp: "Reads the counters (zeros when metering is off)", owner_deaths included.
TEST(Mutex, MeterReadsZerosWhileMeteringIsOff) {
  Zeroed<Mutex> z;
  Mutex& m = z.get();
  ASSERT_EQ(m.acquire(), LockStatus::acquired);
  m.unlock();
  in_thread_that_exits([&] { (void)m.acquire(); });
  ASSERT_EQ(m.acquire(), LockStatus::owner_died);
  m.mark_consistent();
  m.unlock();
  const LockMeter meter = m.meter();
  EXPECT_EQ(meter.acquisitions, 0u);
  EXPECT_EQ(meter.contended, 0u);
  EXPECT_EQ(meter.wait_ns, 0u);
  EXPECT_EQ(meter.owner_deaths, 0u) << "owner deaths are counted while metering is off";
}

// shmkit links its words into the robust list glibc registered for its own robust mutexes.
// Locks of both kinds, taken and released in any order, keep the list intact: when the
// thread then exits holding both kinds, each reports its dead owner.
TEST(Mutex, SharesTheRobustListWithGlibcRobustMutexes) {
  struct Mixed {
    Mutex a;
    pthread_mutex_t p;
    Mutex b;
    pthread_mutex_t q;
  };
  Zeroed<Mixed> z;
  Mixed& x = z.get();
  pthread_mutexattr_t attr;
  ASSERT_EQ(pthread_mutexattr_init(&attr), 0);
  ASSERT_EQ(pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST), 0);
  ASSERT_EQ(pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED), 0);
  ASSERT_EQ(pthread_mutex_init(&x.p, &attr), 0);
  ASSERT_EQ(pthread_mutex_init(&x.q, &attr), 0);
  pthread_mutexattr_destroy(&attr);

  // Interleaved, releases out of order (each unlink from the middle, head and tail).
  for (int round = 0; round < 100; ++round) {
    ASSERT_EQ(x.a.acquire(), LockStatus::acquired);
    ASSERT_EQ(pthread_mutex_lock(&x.p), 0);
    ASSERT_EQ(x.b.acquire(), LockStatus::acquired);
    ASSERT_EQ(pthread_mutex_lock(&x.q), 0);
    if (round % 2 == 0) {
      x.b.unlock();
      ASSERT_EQ(pthread_mutex_unlock(&x.p), 0);
      x.a.unlock();
      ASSERT_EQ(pthread_mutex_unlock(&x.q), 0);
    } else {
      ASSERT_EQ(pthread_mutex_unlock(&x.p), 0);
      x.a.unlock();
      ASSERT_EQ(pthread_mutex_unlock(&x.q), 0);
      x.b.unlock();
    }
  }
  in_thread_that_exits([&] {
    (void)x.a.acquire();
    (void)pthread_mutex_lock(&x.p);
    (void)x.b.acquire();
    (void)pthread_mutex_lock(&x.q);
    x.b.unlock();  // one released from the middle before the thread ends
  });
  EXPECT_EQ(x.a.try_acquire(), LockStatus::owner_died);
  EXPECT_EQ(pthread_mutex_trylock(&x.p), EOWNERDEAD);
  EXPECT_EQ(x.b.try_acquire(), LockStatus::acquired);
  EXPECT_EQ(pthread_mutex_trylock(&x.q), EOWNERDEAD);
  x.a.mark_consistent();
  EXPECT_EQ(pthread_mutex_consistent(&x.p), 0);
  EXPECT_EQ(pthread_mutex_consistent(&x.q), 0);
  x.a.unlock();
  x.b.unlock();
  EXPECT_EQ(pthread_mutex_unlock(&x.p), 0);
  EXPECT_EQ(pthread_mutex_unlock(&x.q), 0);
  pthread_mutex_destroy(&x.p);
  pthread_mutex_destroy(&x.q);
}

TEST(Mutex, StatusNames) {
  EXPECT_STREQ(to_string(LockStatus::acquired), "acquired");
  EXPECT_STREQ(to_string(LockStatus::owner_died), "owner_died");
  EXPECT_STREQ(to_string(LockStatus::busy), "busy");
  EXPECT_STREQ(to_string(LockStatus::timed_out), "timed_out");
  EXPECT_STREQ(to_string(LockStatus::not_recoverable), "not_recoverable");
}

// ---- SharedMutex ----

TEST(SharedMutex, ZeroBytesAreAnUnlockedSharedMutex) {
  Zeroed<SharedMutex> z;
  SharedMutex& rw = z.get();
  EXPECT_EQ(rw.readers(), 0u);
  EXPECT_EQ(rw.writer(), 0);
  EXPECT_FALSE(rw.not_recoverable());
  ASSERT_EQ(rw.acquire_shared(), LockStatus::acquired);
  EXPECT_EQ(rw.readers(), 1u);
  rw.unlock_shared();
  EXPECT_EQ(rw.readers(), 0u);
  ASSERT_EQ(rw.acquire(), LockStatus::acquired);
  EXPECT_EQ(rw.writer(), my_tid());
  rw.unlock();
  EXPECT_EQ(rw.writer(), 0);
}

TEST(SharedMutex, ReadersShareAndWritersExclude) {
  Zeroed<SharedMutex> z;
  SharedMutex& rw = z.get();
  {
    std::vector<std::unique_ptr<Holder>> readers;
    for (int i = 0; i < 3; ++i) {
      readers.push_back(std::make_unique<Holder>([&] { (void)rw.acquire_shared(); },
                                                 [&] { rw.unlock_shared(); }));
    }
    EXPECT_EQ(rw.readers(), 3u);
    ASSERT_EQ(rw.try_acquire_shared(), LockStatus::acquired);
    EXPECT_EQ(rw.readers(), 4u);
    rw.unlock_shared();
    EXPECT_EQ(rw.try_acquire(), LockStatus::busy);
    const auto deadline = Clock::now() + 30ms;
    EXPECT_EQ(rw.acquire_until(deadline), LockStatus::timed_out);
    EXPECT_GE(Clock::now(), deadline);
    EXPECT_EQ(rw.writer(), 0);  // the timed-out writer let go
    // …and readers come in again.
    ASSERT_EQ(rw.try_acquire_shared(), LockStatus::acquired);
    rw.unlock_shared();
  }
  EXPECT_EQ(rw.readers(), 0u);
  Holder writer([&] { (void)rw.acquire(); }, [&] { rw.unlock(); });
  EXPECT_EQ(rw.writer(), writer.tid());
  EXPECT_EQ(rw.try_acquire_shared(), LockStatus::busy);
  EXPECT_EQ(rw.try_acquire(), LockStatus::busy);
  const auto deadline = Clock::now() + 30ms;
  EXPECT_EQ(rw.acquire_shared_until(deadline), LockStatus::timed_out);
  EXPECT_GE(Clock::now(), deadline);
  EXPECT_EQ(rw.acquire_until(Clock::now() + 20ms), LockStatus::timed_out);
  EXPECT_EQ(rw.readers(), 0u);
  writer.release();
  ASSERT_EQ(rw.try_acquire_shared(), LockStatus::acquired);
  rw.unlock_shared();
}

// A writer that waits for readers keeps new readers out (writers do not starve).
TEST(SharedMutex, WaitingWriterKeepsNewReadersOut) {
  Zeroed<SharedMutex> z;
  SharedMutex& rw = z.get();
  Holder reader([&] { (void)rw.acquire_shared(); }, [&] { rw.unlock_shared(); });
  LockStatus got = LockStatus::busy;
  Worker writer([&] {
    got = rw.acquire_until(Clock::now() + 20s);
    if (got == LockStatus::acquired) rw.unlock();
  });
  ASSERT_TRUE(writer.blocked_on(rw));
  EXPECT_EQ(rw.try_acquire_shared(), LockStatus::busy);
  EXPECT_EQ(rw.acquire_shared_until(Clock::now() + 20ms), LockStatus::timed_out);
  reader.release();
  writer.join();
  EXPECT_EQ(got, LockStatus::acquired);
  EXPECT_EQ(rw.readers(), 0u);
}

TEST(SharedMutex, MoreReadersThanTrackedSlots) {
  const std::uint32_t kReaders = SharedMutex::kReaderSlots + 5;
  Zeroed<SharedMutex> z;
  SharedMutex& rw = z.get();
  {
    std::vector<std::unique_ptr<Holder>> readers;
    for (std::uint32_t i = 0; i < kReaders; ++i) {
      readers.push_back(std::make_unique<Holder>([&] { (void)rw.acquire_shared(); },
                                                 [&] { rw.unlock_shared(); }));
    }
    EXPECT_EQ(rw.readers(), kReaders);
    EXPECT_EQ(rw.try_acquire(), LockStatus::busy);
  }
  EXPECT_EQ(rw.readers(), 0u);
  ASSERT_EQ(rw.acquire_until(Clock::now() + 5s), LockStatus::acquired);
  rw.unlock();
}

struct Table {
  SharedMutex rw;
  std::uint64_t counter;               // under rw (exclusive)
  std::array<std::uint64_t, 8> words;  // all equal to counter, written under rw
  std::atomic<int> inside_writers;
  std::atomic<int> overlaps;
  std::atomic<std::uint64_t> torn;
  std::atomic<int> writers_done;
};

TEST(SharedMutex, FourWriterThreadsAndTwoReadersSeeNoTornValue) {
  constexpr int kWriters = 4;
  constexpr int kIncrements = 100'000;
  Zeroed<Table> z;
  Table& t = z.get();
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        if (t.rw.acquire() != LockStatus::acquired) break;
        if (t.inside_writers.fetch_add(1, std::memory_order_relaxed) != 0) t.overlaps.fetch_add(1);
        const std::uint64_t next = ++t.counter;
        for (auto& word : t.words) word = next;
        t.inside_writers.fetch_sub(1, std::memory_order_relaxed);
        t.rw.unlock();
      }
      t.writers_done.fetch_add(1);
    });
  }
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&] {
      bool last = false;
      while (!last) {
        last = t.writers_done.load() == kWriters;
        if (t.rw.acquire_shared() != LockStatus::acquired) break;
        if (t.inside_writers.load(std::memory_order_relaxed) != 0) t.overlaps.fetch_add(1);
        const std::uint64_t first = t.words[0];
        bool equal = first == t.counter;
        for (const auto& word : t.words) equal = equal && word == first;
        if (!equal) t.torn.fetch_add(1);
        t.rw.unlock_shared();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(t.counter, std::uint64_t{kWriters} * kIncrements);
  EXPECT_EQ(t.overlaps.load(), 0);
  EXPECT_EQ(t.torn.load(), 0u);
}

TEST(SharedMutex, WorksWithTheStandardLockWrappers) {
  Zeroed<SharedMutex> z;
  SharedMutex& rw = z.get();
  {
    std::shared_lock<SharedMutex> a(rw);
    std::shared_lock<SharedMutex> b(rw, std::try_to_lock);
    EXPECT_TRUE(b.owns_lock());
    EXPECT_EQ(rw.readers(), 2u);
    std::unique_lock<SharedMutex> w(rw, std::try_to_lock);
    EXPECT_FALSE(w.owns_lock());
  }
  EXPECT_EQ(rw.readers(), 0u);
  {
    std::lock_guard<SharedMutex> g(rw);
    EXPECT_EQ(rw.writer(), my_tid());
  }
  {
    std::unique_lock<SharedMutex> w(rw);
    EXPECT_TRUE(w.owns_lock());
    std::thread other([&] {
      std::shared_lock<SharedMutex> r(rw, std::try_to_lock);
      EXPECT_FALSE(r.owns_lock());
    });
    other.join();
  }
  EXPECT_EQ(rw.writer(), 0);
}

TEST(SharedMutex, ReaderFindingTheWriterThreadDeadHoldsItExclusively) {
  Zeroed<SharedMutex> z;
  SharedMutex& rw = z.get();
  in_thread_that_exits([&] { (void)rw.acquire(); });
  ASSERT_EQ(rw.acquire_shared(), LockStatus::owner_died);
  EXPECT_EQ(rw.writer(), my_tid());
  EXPECT_EQ(rw.readers(), 0u);
  std::thread other([&] {
    EXPECT_EQ(rw.try_acquire_shared(), LockStatus::busy);
    EXPECT_EQ(rw.try_acquire(), LockStatus::busy);
  });
  other.join();
  rw.mark_consistent();
  rw.unlock();
  ASSERT_EQ(rw.acquire_shared(), LockStatus::acquired);
  rw.unlock_shared();
  ASSERT_EQ(rw.acquire(), LockStatus::acquired);
  rw.unlock();
}

TEST(SharedMutex, WriterFindingTheWriterThreadDeadIsTold) {
  Zeroed<SharedMutex> z;
  SharedMutex& rw = z.get();
  in_thread_that_exits([&] { (void)rw.acquire(); });
  try {
    rw.lock();
    ADD_FAILURE() << "lock() did not report the dead writer";
  } catch (const OwnerDied& e) {
    EXPECT_EQ(e.errnum(), EOWNERDEAD);
  }
  EXPECT_EQ(rw.writer(), my_tid());
  rw.mark_consistent();
  rw.unlock();
  in_thread_that_exits([&] { (void)rw.acquire(); });
  EXPECT_THROW(rw.lock_shared(), OwnerDied);
  EXPECT_EQ(rw.writer(), my_tid());
  rw.mark_consistent();
  rw.unlock();
  ASSERT_EQ(rw.try_acquire(), LockStatus::acquired);
  rw.unlock();
}

// Readers and a writer sleep while the writer thread exits: one of them is told (and holds
// the lock exclusively), the others acquire after it.
TEST(SharedMutex, SleepersAreWokenWhenTheWriterThreadExits) {
  Zeroed<SharedMutex> z;
  SharedMutex& rw = z.get();
  std::atomic<bool> exit_now{false};
  Worker owner([&] {
    (void)rw.acquire();
    (void)eventually([&] { return exit_now.load(); });
  });
  ASSERT_TRUE(eventually([&] { return rw.writer() == owner.tid(); }));
  std::array<LockStatus, 3> got{LockStatus::busy, LockStatus::busy, LockStatus::busy};
  std::array<bool, 3> exclusive{false, false, false};
  std::vector<std::unique_ptr<Worker>> sleepers;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const bool reader = i != 0;
    sleepers.push_back(std::make_unique<Worker>([&, i, reader] {
      got[i] = reader ? rw.acquire_shared_until(Clock::now() + 20s)
                      : rw.acquire_until(Clock::now() + 20s);
      if (got[i] == LockStatus::owner_died) {
        exclusive[i] = rw.writer() == my_tid() && rw.readers() == 0;
        rw.mark_consistent();
        rw.unlock();
      } else if (got[i] == LockStatus::acquired) {
        if (reader) {
          rw.unlock_shared();
        } else {
          rw.unlock();
        }
      }
    }));
  }
  for (auto& s : sleepers) ASSERT_TRUE(s->blocked_on(rw));
  exit_now.store(true);
  owner.join();
  for (auto& s : sleepers) s->join();
  int died = 0, acquired = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i] == LockStatus::owner_died) {
      ++died;
      EXPECT_TRUE(exclusive[i]) << "sleeper " << i << " was told owner_died without the lock";
    }
    acquired += got[i] == LockStatus::acquired ? 1 : 0;
  }
  EXPECT_EQ(died, 1);
  EXPECT_EQ(acquired, 2);
}

TEST(SharedMutex, UnlockWithoutRepairMakesItNotRecoverable) {
  Zeroed<SharedMutex> z;
  SharedMutex& rw = z.get();
  in_thread_that_exits([&] { (void)rw.acquire(); });
  ASSERT_EQ(rw.acquire_shared(), LockStatus::owner_died);
  rw.unlock();  // no mark_consistent()
  EXPECT_TRUE(rw.not_recoverable());
  EXPECT_EQ(rw.acquire_shared(), LockStatus::not_recoverable);
  EXPECT_EQ(rw.try_acquire_shared(), LockStatus::not_recoverable);
  EXPECT_EQ(rw.acquire(), LockStatus::not_recoverable);
  EXPECT_EQ(rw.try_acquire(), LockStatus::not_recoverable);
  for (int form = 0; form < 2; ++form) {
    try {
      if (form == 0) rw.lock();
      if (form == 1) rw.lock_shared();
      ADD_FAILURE() << "form " << form << " did not throw";
    } catch (const OwnerDied&) {
      ADD_FAILURE() << "form " << form << " threw OwnerDied";
    } catch (const Error& e) {
      EXPECT_EQ(e.errnum(), ENOTRECOVERABLE) << e.what();
    }
  }
  EXPECT_EQ(rw.readers(), 0u);
  EXPECT_EQ(rw.writer(), 0);
}

// ---- Semaphore ----

TEST(Semaphore, ZeroBytesAreASemaphoreOfValueZero) {
  Zeroed<Semaphore> z;
  Semaphore& s = z.get();
  EXPECT_EQ(s.value(), 0u);
  EXPECT_EQ(s.waiting(), 0u);
  EXPECT_FALSE(s.metering());
  EXPECT_FALSE(s.try_wait());
  s.post();
  EXPECT_EQ(s.value(), 1u);
  EXPECT_TRUE(s.try_wait());
  EXPECT_EQ(s.value(), 0u);
}

TEST(Semaphore, CountsUnits) {
  Semaphore s(3);
  EXPECT_EQ(s.value(), 3u);
  s.post(5);
  EXPECT_EQ(s.value(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(s.try_wait()) << i;
  EXPECT_FALSE(s.try_wait());
  s.post();
  s.wait();
  EXPECT_TRUE(s.wait_for(0s) == false);
  s.post(2);
  EXPECT_TRUE(s.wait_for(1s));
  EXPECT_TRUE(s.wait_until(Clock::now() - 1s));  // a unit is there: no timeout
  EXPECT_EQ(s.value(), 0u);
  s.reset(4);
  EXPECT_EQ(s.value(), 4u);
}

TEST(Semaphore, WaitTimesOut) {
  Zeroed<Semaphore> z;
  Semaphore& s = z.get();
  EXPECT_FALSE(s.wait_for(20ms));
  const auto deadline = Clock::now() + 30ms;
  EXPECT_FALSE(s.wait_until(deadline));
  EXPECT_GE(Clock::now(), deadline);
  EXPECT_EQ(s.waiting(), 0u);
  EXPECT_EQ(s.value(), 0u);
}

TEST(Semaphore, PostOfNWakesNSleepers) {
  Zeroed<Semaphore> z;
  Semaphore& s = z.get();
  std::atomic<int> woke{0};
  std::vector<std::unique_ptr<Worker>> sleepers;
  for (int i = 0; i < 3; ++i) {
    sleepers.push_back(std::make_unique<Worker>([&] {
      if (s.wait_for(20s)) woke.fetch_add(1);
    }));
  }
  ASSERT_TRUE(eventually([&] { return s.waiting() == 3; }));
  s.post(2);
  ASSERT_TRUE(eventually([&] { return woke.load() == 2; }));
  EXPECT_EQ(s.value(), 0u);
  s.post();
  for (auto& w : sleepers) w->join();
  EXPECT_EQ(woke.load(), 3);
  EXPECT_EQ(s.value(), 0u);
  EXPECT_EQ(s.waiting(), 0u);
}

TEST(Semaphore, ProducerAndConsumerThreads) {
  constexpr int kUnits = 100'000;
  Zeroed<Semaphore> z;
  Semaphore& s = z.get();
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < kUnits; ++k) s.post();
    });
    threads.emplace_back([&] {
      for (int k = 0; k < kUnits; ++k) {
        if (!s.wait_for(20s)) return;
        taken.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(taken.load(), 2 * kUnits);
  EXPECT_EQ(s.value(), 0u);
}

TEST(Semaphore, MeteringCountsPostsWaitsAndSleeps) {
  Zeroed<Semaphore> z;
  Semaphore& s = z.get();
  s.set_metering(true);
  EXPECT_TRUE(s.metering());
  s.post();  // nobody waits
  EXPECT_TRUE(s.try_wait());
  SemaphoreMeter m = s.meter();
  EXPECT_EQ(m.posts, 1u);
  EXPECT_EQ(m.posts_no_waiter, 1u);
  EXPECT_EQ(m.waits, 1u);
  EXPECT_EQ(m.immediate, 1u);
  EXPECT_EQ(m.blocked, 0u);

  bool got = false;
  Worker w([&] { got = s.wait_for(20s); });
  ASSERT_TRUE(eventually([&] { return s.waiting() == 1; }));
  ASSERT_TRUE(w.blocked_on(s));
  s.post();
  w.join();
  EXPECT_TRUE(got);
  m = s.meter();
  EXPECT_EQ(m.posts, 2u);
  EXPECT_EQ(m.posts_no_waiter, 1u);
  EXPECT_EQ(m.waits, 2u);
  EXPECT_EQ(m.immediate, 1u);
  EXPECT_EQ(m.blocked, 1u);
  EXPECT_EQ(m.most_waiters, 1u);

  s.set_metering(false);
  s.post();
  EXPECT_TRUE(s.try_wait());
  m = s.meter();
  EXPECT_EQ(m.posts, 0u);
  EXPECT_EQ(m.waits, 0u);
  EXPECT_EQ(m.immediate, 0u);
  EXPECT_EQ(m.blocked, 0u);
  EXPECT_EQ(m.posts_no_waiter, 0u);
  EXPECT_EQ(m.most_waiters, 0u);
}

// ---- Condition ----

struct Guarded {
  Mutex m;
  Condition cv;
  Condition cv2;
  bool flag;            // under m
  std::uint64_t value;  // under m
};

TEST(Condition, TimedWaitReturnsWithTheMutexHeldAgain) {
  Zeroed<Guarded> z;
  Guarded& g = z.get();
  ASSERT_EQ(g.m.acquire(), LockStatus::acquired);
  const CondWait a = g.cv.wait_for(g.m, 20ms);
  EXPECT_TRUE(a.timed_out);
  EXPECT_EQ(a.lock, LockStatus::acquired);
  EXPECT_EQ(g.m.owner(), my_tid());
  const auto deadline = Clock::now() + 30ms;
  const CondWait b = g.cv.wait_until(g.m, deadline);
  EXPECT_TRUE(b.timed_out);
  EXPECT_GE(Clock::now(), deadline);
  EXPECT_EQ(g.m.owner(), my_tid());
  g.m.unlock();
}

TEST(Condition, NotifyOneWakesAWaiter) {
  Zeroed<Guarded> z;
  Guarded& g = z.get();
  CondWait got{LockStatus::busy, true};
  Worker w([&] {
    if (g.m.acquire() != LockStatus::acquired) return;
    got = g.cv.wait(g.m, [&] { return g.flag; });
    g.m.unlock();
  });
  ASSERT_TRUE(w.blocked_on(g.cv));
  ASSERT_EQ(g.m.acquire_for(5s), LockStatus::acquired);
  g.flag = true;
  g.cv.notify_one();
  g.m.unlock();
  w.join();
  EXPECT_EQ(got.lock, LockStatus::acquired);
  EXPECT_FALSE(got.timed_out);
}

TEST(Condition, NotifyAllWakesEveryWaiter) {
  Zeroed<Guarded> z;
  Guarded& g = z.get();
  std::atomic<int> woke{0};
  std::vector<std::unique_ptr<Worker>> waiters;
  for (int i = 0; i < 4; ++i) {
    waiters.push_back(std::make_unique<Worker>([&] {
      if (g.m.acquire() != LockStatus::acquired) return;
      while (!g.flag) {
        const CondWait w = g.cv.wait_for(g.m, 20s);
        if (w.lock != LockStatus::acquired || w.timed_out) break;
      }
      if (g.flag) woke.fetch_add(1);
      g.m.unlock();
    }));
  }
  for (auto& w : waiters) ASSERT_TRUE(w->blocked_on(g.cv));
  ASSERT_EQ(g.m.acquire_for(5s), LockStatus::acquired);
  g.flag = true;
  g.cv.notify_all();
  g.m.unlock();
  for (auto& w : waiters) w->join();
  EXPECT_EQ(woke.load(), 4);
}

TEST(Condition, ProducerAndConsumerThreadsHandOffEveryValue) {
  constexpr std::uint64_t kValues = 20'000;
  Zeroed<Guarded> z;
  Guarded& g = z.get();
  std::uint64_t sum = 0, out_of_order = 0;
  std::thread consumer([&] {
    for (std::uint64_t i = 1; i <= kValues; ++i) {
      if (g.m.acquire() != LockStatus::acquired) return;
      (void)g.cv.wait(g.m, [&] { return g.flag; });
      if (g.value != i) ++out_of_order;
      sum += g.value;
      g.flag = false;
      g.cv2.notify_one();
      g.m.unlock();
    }
  });
  for (std::uint64_t i = 1; i <= kValues; ++i) {
    ASSERT_EQ(g.m.acquire(), LockStatus::acquired);
    (void)g.cv2.wait(g.m, [&] { return !g.flag; });
    g.value = i;
    g.flag = true;
    g.cv.notify_one();
    g.m.unlock();
  }
  consumer.join();
  EXPECT_EQ(sum, kValues * (kValues + 1) / 2);
  EXPECT_EQ(out_of_order, 0u);
}

// The mutex's owner dies while a thread waits on the condition: re-acquiring reports it.
TEST(Condition, ReacquiringAMutexWhoseOwnerDiedReportsIt) {
  Zeroed<Guarded> z;
  Guarded& g = z.get();
  CondWait got{LockStatus::busy, true};
  Worker w([&] {
    if (g.m.acquire() != LockStatus::acquired) return;
    got = g.cv.wait_for(g.m, 20s);
    if (got.lock == LockStatus::owner_died) g.m.mark_consistent();
    if (got.lock == LockStatus::owner_died || got.lock == LockStatus::acquired) g.m.unlock();
  });
  ASSERT_TRUE(w.blocked_on(g.cv));
  in_thread_that_exits([&] {
    if (g.m.acquire_for(5s) != LockStatus::acquired) return;
    g.cv.notify_one();  // and exits holding the mutex
  });
  w.join();
  EXPECT_EQ(got.lock, LockStatus::owner_died);
  EXPECT_FALSE(got.timed_out);
  ASSERT_EQ(g.m.try_acquire(), LockStatus::acquired);
  g.m.unlock();
}

// ---- Event ----

TEST(Event, ZeroBytesAreAnEventWithoutWaiters) {
  Zeroed<Event> z;
  Event& ev = z.get();
  EXPECT_EQ(ev.waiting(), 0u);
  const std::uint32_t key = ev.prepare_wait();
  EXPECT_EQ(ev.waiting(), 1u);
  ev.cancel_wait();
  EXPECT_EQ(ev.waiting(), 0u);
  EXPECT_EQ(ev.prepare_wait(), key);
  ev.cancel_wait();
}

// With nobody registered, notify is a load and a branch: the epoch, which only the waking
// path moves, stays where it was.
TEST(Event, NotifyWithoutWaitersStaysInUserSpace) {
  Zeroed<Event> z;
  Event& ev = z.get();
  const std::uint32_t before = ev.prepare_wait();
  ev.cancel_wait();
  for (int i = 0; i < 10'000; ++i) {
    ev.notify_one();
    ev.notify_all();
  }
  EXPECT_EQ(ev.waiting(), 0u);
  const std::uint32_t after = ev.prepare_wait();
  ev.cancel_wait();
  EXPECT_EQ(after, before);
  // A registered waiter makes notify move it (the contrast that makes the check mean something).
  const std::uint32_t key = ev.prepare_wait();
  ev.notify_one();
  EXPECT_TRUE(ev.wait_until(key, Clock::now() + 5s));
  const std::uint32_t moved = ev.prepare_wait();
  ev.cancel_wait();
  EXPECT_NE(moved, before);
}

TEST(Event, WaitTimesOut) {
  Zeroed<Event> z;
  Event& ev = z.get();
  const std::uint32_t key = ev.prepare_wait();
  const auto deadline = Clock::now() + 30ms;
  EXPECT_FALSE(ev.wait_until(key, deadline));
  EXPECT_GE(Clock::now(), deadline);
  EXPECT_EQ(ev.waiting(), 0u);
  const auto later = Clock::now() + 30ms;
  EXPECT_FALSE(ev.wait_for_condition([] { return false; }, later));
  EXPECT_GE(Clock::now(), later);
  EXPECT_EQ(ev.waiting(), 0u);
  EXPECT_TRUE(ev.wait_for_condition([] { return true; }, Clock::now() - 1s));
}

TEST(Event, NotifyBetweenPrepareAndWaitIsNotLost) {
  Zeroed<Event> z;
  Event& ev = z.get();
  const std::uint32_t key = ev.prepare_wait();
  std::thread([&] { ev.notify_one(); }).join();
  EXPECT_TRUE(ev.wait_until(key, Clock::now() + 20s));
  EXPECT_EQ(ev.waiting(), 0u);
}

TEST(Event, NotifyAllWakesEverySleeper) {
  Zeroed<Event> z;
  Event& ev = z.get();
  std::atomic<bool> ready{false};
  std::atomic<int> woke{0};
  std::vector<std::unique_ptr<Worker>> sleepers;
  for (int i = 0; i < 3; ++i) {
    sleepers.push_back(std::make_unique<Worker>([&] {
      if (ev.wait_for_condition([&] { return ready.load(std::memory_order_acquire); },
                                Clock::now() + 20s)) {
        woke.fetch_add(1);
      }
    }));
  }
  ASSERT_TRUE(eventually([&] { return ev.waiting() == 3; }));
  for (auto& s : sleepers) ASSERT_TRUE(s->blocked_on(ev));
  ready.store(true, std::memory_order_release);
  ev.notify_all();
  for (auto& s : sleepers) s->join();
  EXPECT_EQ(woke.load(), 3);
  EXPECT_EQ(ev.waiting(), 0u);
}

TEST(Event, PingPongBetweenThreads) {
  constexpr std::uint64_t kRounds = 100'000;
  struct Pair {
    Event ping;
    Event pong;
    std::atomic<std::uint64_t> pinged;
    std::atomic<std::uint64_t> ponged;
  };
  Zeroed<Pair> z;
  Pair& p = z.get();
  std::atomic<bool> failed{false};
  std::thread ponger([&] {
    for (std::uint64_t i = 1; i <= kRounds; ++i) {
      if (!p.ping.wait_for_condition([&] { return p.pinged.load() >= i; }, Clock::now() + 20s)) {
        failed.store(true);
        return;
      }
      p.ponged.store(i);
      p.pong.notify_one();
    }
  });
  for (std::uint64_t i = 1; i <= kRounds && !failed.load(); ++i) {
    p.pinged.store(i);
    p.ping.notify_one();
    if (!p.pong.wait_for_condition([&] { return p.ponged.load() >= i; }, Clock::now() + 20s)) {
      failed.store(true);
    }
  }
  ponger.join();
  EXPECT_FALSE(failed.load());
  EXPECT_EQ(p.ponged.load(), kRounds);
}

// ---- Barrier ----

TEST(Barrier, ZeroBytesAreABarrierNotSetUp) {
  Zeroed<Barrier> z;
  Barrier& b = z.get();
  EXPECT_EQ(b.parties(), 0u);
  EXPECT_FALSE(b.broken());
  b.init(3);
  EXPECT_EQ(b.parties(), 3u);
  EXPECT_EQ(b.arrived(), 0u);
  EXPECT_EQ(b.generation(), 0u);
  EXPECT_FALSE(b.broken());
}

TEST(Barrier, InitClampsThePartyCount) {
  Zeroed<Barrier> z;
  Barrier& b = z.get();
  b.init(0);
  EXPECT_EQ(b.parties(), 1u);
  b.init(Barrier::kMaxParties + 10);
  EXPECT_EQ(b.parties(), Barrier::kMaxParties);
  Barrier one(1);
  for (std::uint32_t g = 0; g < 3; ++g) {
    EXPECT_EQ(one.arrive_and_wait(), BarrierStatus::released_last);
    EXPECT_EQ(one.generation(), g + 1);
  }
}

TEST(Barrier, GenerationWrapsAround) {
  Zeroed<Barrier> z;
  Barrier& b = z.get();
  b.init(1);
  for (std::uint32_t g = 0; g < 65536 + 3; ++g) {
    ASSERT_EQ(b.arrive_and_wait(), BarrierStatus::released_last) << g;
  }
  EXPECT_EQ(b.generation(), 3u);
  EXPECT_FALSE(b.broken());
}

TEST(Barrier, ThreadsReuseItReleasedLastOncePerGeneration) {
  constexpr int kThreads = 4;
  constexpr int kGenerations = 10'000;
  struct Run {
    Barrier b;
    std::array<std::atomic<std::uint32_t>, kGenerations> arrivals;
    std::array<std::atomic<std::uint32_t>, kGenerations> last;
    std::atomic<int> early;
    std::atomic<int> failed;
  };
  Zeroed<Run> z;
  Run& r = z.get();
  r.b.init(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int g = 0; g < kGenerations; ++g) {
        r.arrivals[g].fetch_add(1, std::memory_order_relaxed);
        const BarrierStatus st = r.b.arrive_and_wait();
        if (st == BarrierStatus::released_last) {
          r.last[g].fetch_add(1, std::memory_order_relaxed);
        } else if (st != BarrierStatus::released) {
          r.failed.fetch_add(1);
          return;
        }
        if (r.arrivals[g].load(std::memory_order_relaxed) != kThreads) r.early.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(r.failed.load(), 0);
  EXPECT_EQ(r.early.load(), 0);
  int wrong = 0;
  for (auto& l : r.last) wrong += l.load() == 1 ? 0 : 1;
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(r.b.generation(), static_cast<std::uint32_t>(kGenerations % 65536));
}

TEST(Barrier, TimedOutArrivalIsWithdrawn) {
  Zeroed<Barrier> z;
  Barrier& b = z.get();
  b.init(2);
  const auto deadline = Clock::now() + 30ms;
  EXPECT_EQ(b.arrive_and_wait_until(deadline), BarrierStatus::timed_out);
  EXPECT_GE(Clock::now(), deadline);
  EXPECT_EQ(b.arrived(), 0u);
  EXPECT_EQ(b.generation(), 0u);
  EXPECT_FALSE(b.broken());
  BarrierStatus theirs = BarrierStatus::broken;
  Worker w([&] { theirs = b.arrive_and_wait_until(Clock::now() + 20s); });
  ASSERT_TRUE(eventually([&] { return b.arrived() == 1; }));
  const BarrierStatus mine = b.arrive_and_wait_until(Clock::now() + 20s);
  w.join();
  EXPECT_TRUE((mine == BarrierStatus::released_last && theirs == BarrierStatus::released) ||
              (mine == BarrierStatus::released && theirs == BarrierStatus::released_last));
  EXPECT_EQ(b.generation(), 1u);
}

TEST(Barrier, ResetReleasesEveryWaiterAsBroken) {
  Zeroed<Barrier> z;
  Barrier& b = z.get();
  b.init(3);
  std::array<BarrierStatus, 2> got{BarrierStatus::released, BarrierStatus::released};
  std::vector<std::unique_ptr<Worker>> waiters;
  for (std::size_t i = 0; i < got.size(); ++i) {
    waiters.push_back(
        std::make_unique<Worker>([&, i] { got[i] = b.arrive_and_wait_until(Clock::now() + 20s); }));
  }
  ASSERT_TRUE(eventually([&] { return b.arrived() == 2; }));
  b.reset();
  for (auto& w : waiters) w->join();
  EXPECT_EQ(got[0], BarrierStatus::broken);
  EXPECT_EQ(got[1], BarrierStatus::broken);
  EXPECT_TRUE(b.broken());
  EXPECT_EQ(b.arrive_and_wait(), BarrierStatus::broken);
  b.init(1);
  EXPECT_FALSE(b.broken());
  EXPECT_EQ(b.arrive_and_wait(), BarrierStatus::released_last);
}

TEST(Barrier, JoinedThreadThatExitsBreaksIt) {
  Zeroed<Barrier> z;
  Barrier& b = z.get();
  b.init(2);
  in_thread_that_exits([&] { b.join(); });
  EXPECT_EQ(b.arrive_and_wait_until(Clock::now() + 10s), BarrierStatus::broken);
  EXPECT_TRUE(b.broken());
}

TEST(Barrier, ThreadThatLeftDoesNotBreakIt) {
  Zeroed<Barrier> z;
  Barrier& b = z.get();
  b.init(2);
  in_thread_that_exits([&] {
    b.join();
    b.leave();
  });
  // Longer than the liveness check (100 ms): it looked, and found nobody dead.
  EXPECT_EQ(b.arrive_and_wait_until(Clock::now() + 300ms), BarrierStatus::timed_out);
  EXPECT_FALSE(b.broken());
  EXPECT_EQ(b.arrived(), 0u);
}

}  // namespace
}  // namespace shmkit
