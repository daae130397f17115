// SPDX-License-Identifier: MIT
// How one figure of `shmkit bench ipc` is measured: a round trip, a one-way stream, or memcpy.
//
// Every measurement forks fresh processes pinned to two CPUs, a (pings, produces) and b
// (echoes, consumes), which inherit the Transport made just before; they meet at a Barrier in
// memory they share and leave their figures there. The benchmark process only waits, and
// kills both as soon as either fails.
#include "ipc_measure.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace shmkit::bench {
namespace {

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMaxSamples = 200'000;
constexpr double kSampleNs = 2000;  // a latency sample lasts at least this (clock cost ~1 %)

// ---- What the two processes share ----

struct Shared {
  Barrier barrier{2};
  Latency latency;                           // round trip: written by a
  std::int64_t start_ns[kStreams + 1] = {};  // stream w began (a); 0 is the warm-up
  std::uint64_t sent[kStreams + 1] = {};     // messages of stream w, end marker included (a)
  std::int64_t end_ns[kStreams + 1] = {};    // b had read all of stream w (b)
};

// ---- Round trip: a pings, b echoes ----

Latency summarize_latency(std::vector<double>& samples, int batch) {
  std::sort(samples.begin(), samples.end());
  const std::size_t n = samples.size();
  Latency l;
  l.median_ns = n % 2 == 1 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
  l.p99_ns = samples[std::min(n - 1, static_cast<std::size_t>(std::ceil(0.99 * n)) - 1)];
  l.min_ns = samples.front();
  l.max_ns = samples.back();
  l.samples = static_cast<std::int64_t>(n);
  l.batch = batch;
  return l;
}

int ping(Transport& t, Shared& shared, const Budget& budget) {
  t.open(End::a);
  shared.barrier.arrive_and_wait();
  std::uint64_t seq = 0;
  auto round_trip = [&] {
    t.send(++seq);
    if (t.receive() != seq) throw std::runtime_error("round trip: the echo is another message");
  };
  // The warm-up also sizes the batches of the fast transports (reading the clock must stay
  // ~1 % of a sample) from its fastest run of 16 round trips: a preemption must not make a
  // fast transport look slow.
  double per = INFINITY;
  for (const std::int64_t warm_end = now_ns() + budget.warmup_ns;
       per == INFINITY || now_ns() < warm_end;) {
    const std::int64_t start = now_ns();
    for (int i = 0; i < 16; ++i) round_trip();
    per = std::min(per, static_cast<double>(now_ns() - start) / 16);
  }
  const auto wanted = static_cast<std::uint64_t>(std::ceil(kSampleNs / std::max(per, 1.0)));
  const int batch = static_cast<int>(std::bit_ceil(std::clamp<std::uint64_t>(wanted, 1, 64)));
  std::vector<double> samples;
  samples.reserve(kMaxSamples);
  for (const std::int64_t end = now_ns() + budget.measure_ns; samples.size() < kMaxSamples;) {
    const std::int64_t start = now_ns();
    for (int i = 0; i < batch; ++i) round_trip();
    const std::int64_t stop = now_ns();
    samples.push_back(static_cast<double>(stop - start) / batch);
    if (stop >= end) break;
  }
  t.send(0);  // tells the echo to stop
  shared.latency = summarize_latency(samples, batch);
  t.close();
  return 0;
}

int echo(Transport& t, Shared& shared) {
  t.open(End::b);
  shared.barrier.arrive_and_wait();
  for (std::uint64_t seq; (seq = t.receive()) != 0;) t.send(seq);
  t.close();
  return 0;
}

// ---- One-way streams: a produces, b consumes ----

// Messages between two looks at the clock: a look costs ~20 ns, a 64 B message less.
std::uint64_t clock_period(std::size_t size) {
  return std::max<std::uint64_t>(1, 64 * kKiB / size);
}

std::int64_t window_ns(const Budget& budget, int w) {
  return w == 0 ? budget.warmup_ns : budget.measure_ns / kStreams;
}

int produce(Transport& t, Shared& shared, const Budget& budget, std::size_t size) {
  t.open(End::a);
  const std::uint64_t period = clock_period(size);
  std::uint64_t seq = 0;
  for (int w = 0; w <= kStreams; ++w) {
    shared.barrier.arrive_and_wait();
    const std::int64_t start = now_ns(), length = window_ns(budget, w);
    std::uint64_t sent = 0;
    do {
      for (std::uint64_t i = 0; i < period; ++i) t.send(++seq);
      sent += period;
    } while (now_ns() - start < length);
    t.send(0);  // the end of this stream
    shared.start_ns[w] = start;
    shared.sent[w] = sent + 1;
  }
  t.close();
  return 0;
}

int consume(Transport& t, Shared& shared) {
  t.open(End::b);
  std::uint64_t expected = 1;
  for (int w = 0; w <= kStreams; ++w) {
    shared.barrier.arrive_and_wait();
    for (std::uint64_t seq; (seq = t.receive()) != 0; ++expected) {
      if (seq != expected) throw std::runtime_error("stream: a message was lost or reordered");
    }
    shared.end_ns[w] = now_ns();
  }
  t.close();
  return 0;
}

// The reference: one process copying messages of `size` bytes, timed as the streams are.
int copy_memory(Shared& shared, const Budget& budget, std::size_t size) {
  std::vector<std::byte> from(size, std::byte{1}), to(size);
  const std::uint64_t period = clock_period(size);
  for (int w = 0; w <= kStreams; ++w) {
    const std::int64_t start = now_ns(), length = window_ns(budget, w);
    std::uint64_t copies = 0;
    do {
      for (std::uint64_t i = 0; i < period; ++i) {
        std::memcpy(to.data(), from.data(), size);
        asm volatile("" : : "r"(to.data()) : "memory");  // the copy must happen
      }
      copies += period;
    } while (now_ns() - start < length);
    shared.start_ns[w] = start;
    shared.end_ns[w] = now_ns();
    shared.sent[w] = copies;
  }
  return 0;
}

// ---- Running the children ----

// Waits for every child; when one fails (or another child of ours, RouDi, exits) the
// exception unwinds through the Child objects, which kill the others.
void wait_for(std::vector<Child*> children, std::int64_t deadline) {
  while (!children.empty()) {
    siginfo_t info{};
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "waitid");
    }
    throw_if_stop_requested();
    if (info.si_pid == 0) {
      if (now_ns() > deadline) throw std::runtime_error("timed out (a process hangs)");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    auto it = std::find_if(children.begin(), children.end(),
                           [&](Child* c) { return c->pid() == info.si_pid; });
    if (it == children.end()) {
      throw std::runtime_error("process " + std::to_string(info.si_pid) + " (iox-roudi) exited");
    }
    if (const int code = (*it)->join(); code != 0) {
      throw std::runtime_error("a measuring process exited with status " + std::to_string(code));
    }
    children.erase(it);
  }
}

// Forks a measuring process that never outlives the benchmark, even a SIGKILLed one.
Child start(int cpu, const std::function<int()>& body) {
  const pid_t parent = ::getpid();
  return Child::start(cpu, [&] {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    return ::getppid() == parent ? body() : 1;
  });
}

std::int64_t deadline_for(const Budget& budget) {
  return now_ns() + 10 * (budget.warmup_ns + budget.measure_ns) + 20'000'000'000;
}

// Messages per second in each measured window (not the warm-up).
std::vector<double> rates(const Shared& shared) {
  std::vector<double> r;
  for (int w = 1; w <= kStreams; ++w) {
    const double ns = static_cast<double>(shared.end_ns[w] - shared.start_ns[w]);
    r.push_back(static_cast<double>(shared.sent[w]) / ns * 1e9);
  }
  return r;
}

}  // namespace

Latency measure_round_trip(Transport& t, const Budget& budget) {
  SharedObject<Shared> shared;
  Child a = start(budget.cpu_a, [&] { return ping(t, *shared, budget); });
  Child b = start(budget.cpu_b, [&] { return echo(t, *shared); });
  wait_for({&a, &b}, deadline_for(budget));
  return shared->latency;
}

Stats measure_stream(Transport& t, const Budget& budget, std::size_t size) {
  SharedObject<Shared> shared;
  Child a = start(budget.cpu_a, [&] { return produce(t, *shared, budget, size); });
  Child b = start(budget.cpu_b, [&] { return consume(t, *shared); });
  wait_for({&a, &b}, deadline_for(budget));
  return summarize(rates(*shared));
}

Stats measure_memcpy(const Budget& budget, std::size_t size) {
  SharedObject<Shared> shared;
  Child a = start(budget.cpu_a, [&] { return copy_memory(*shared, budget, size); });
  wait_for({&a}, deadline_for(budget));
  return summarize(rates(*shared));
}

}  // namespace shmkit::bench
