// SPDX-License-Identifier: MIT
// Broadcast: every subscriber process receives every message in order (4 subscribers, and
// 256), the producer waits for the slowest (Overflow::block) or overwrites and tells a
// lapped subscriber how many it lost (Overflow::overwrite; what it does get is intact); a
// dead subscriber is dropped, a dead or leaving producer closes the channel; roles.
#include "shmkit/channel/broadcast.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "channel_test_util.hpp"
#include "shmkit/arena.hpp"
#include "test_support.hpp"

namespace shmkit {
namespace {

using namespace std::chrono_literals;
using test::as_bytes;
using test::Children;
using test::exit_code;
using test::expect_errno;
using test::first_word;
using test::Remover;
using test::Shared;
using test::SharedArray;
using test::unique_name;

using Clock = std::chrono::steady_clock;

ChannelConfig shape(std::size_t slot_size, std::size_t capacity, std::uint32_t max_peers = 16,
                    Overflow overflow = Overflow::block) {
  return ChannelConfig{slot_size, capacity, max_peers, overflow};
}

// ---- Self-checking messages ----

// A message: its sequence number, then 40 bytes that depend on it (so that two laps of one
// slot never look alike, and a torn message never passes).
constexpr std::size_t kMsg = 48;

std::byte pattern(std::uint64_t seq, std::size_t i) {
  return static_cast<std::byte>(((seq * 0x9e3779b97f4a7c15ull) >> (i % 56)) + i * 31);
}

void write_msg(std::span<std::byte> out, std::uint64_t seq) {
  std::memcpy(out.data(), &seq, sizeof seq);
  for (std::size_t i = sizeof seq; i < kMsg; ++i) out[i] = pattern(seq, i);
}

bool intact(std::span<const std::byte> msg) {
  if (msg.size() != kMsg) return false;
  const std::uint64_t seq = first_word(msg);
  for (std::size_t i = sizeof seq; i < kMsg; ++i) {
    if (msg[i] != pattern(seq, i)) return false;
  }
  return true;
}

bool send_msg(Broadcast& b, std::uint64_t seq, std::chrono::nanoseconds timeout) {
  std::array<std::byte, kMsg> buf{};
  write_msg(buf, seq);
  return b.send(buf, timeout);
}

// What subscribers report; in anonymous shared memory.
struct Report {
  std::atomic<int> joined{0};
  std::atomic<int> go{0};
  std::atomic<int> errors{0};
  std::atomic<int> done{0};
  std::atomic<std::int64_t> elapsed_ms{-1};
  char first_error[256];

  void fail(const std::string& what) {
    if (errors.fetch_add(1) == 0)
      std::snprintf(first_error, sizeof first_error, "%s", what.c_str());
  }
};

// Joins `name` as a subscriber and receives until the channel is closed: messages
// 0 .. count-1 exactly, in order, none lost. Alternates views and copies.
int subscribe_all(const std::string& name, Report& report, std::uint64_t count, Wait mode) {
  Broadcast b = Broadcast::open(name, Role::consumer);
  b.set_wait(mode);
  report.joined.fetch_add(1);
  std::array<std::byte, kMsg> buf{};
  for (std::uint64_t seq = 0;; ++seq) {
    std::uint64_t got = 0;
    if (seq & 1) {
      const Broadcast::View v = b.receive(20s);
      if (!v) {
        if (seq != count || !b.closed()) report.fail("view " + std::to_string(seq) + ": nothing");
        break;
      }
      if (v.lost != 0) report.fail("lost " + std::to_string(v.lost) + " in block mode");
      if (!intact(v.bytes())) report.fail("torn message " + std::to_string(seq));
      got = first_word(v.bytes());
      if (!b.release()) report.fail("overwritten in block mode");
    } else {
      const std::optional<std::size_t> n = b.receive(buf, 20s);
      if (!n) {
        if (seq != count || !b.closed()) report.fail("copy " + std::to_string(seq) + ": nothing");
        break;
      }
      if (!intact(std::span(buf).first(*n))) report.fail("torn copy " + std::to_string(seq));
      got = first_word(buf);
    }
    if (got != seq) {
      report.fail("expected " + std::to_string(seq) + ", got " + std::to_string(got));
      break;
    }
  }
  if (b.lost() != 0) report.fail("lost() = " + std::to_string(b.lost()));
  report.done.fetch_add(1);
  return report.errors.load() == 0 ? 0 : 1;
}

// ---- One process ----

TEST(Broadcast, CreateOpenAndRoles) {
  const std::string name = unique_name("/", "bcast-roles");
  Remover remover(name);
  expect_errno(
      EINVAL, [&] { Broadcast::create(name, shape(16, 8), Role::both); }, "role");
  expect_errno(ENOENT, [&] { Broadcast::open(name, Role::consumer); });  // nothing left behind
  Broadcast producer = Broadcast::create(name, shape(16, 8), Role::producer);
  EXPECT_EQ(producer.overflow(), Overflow::block);
  expect_errno(
      EBUSY, [&] { Broadcast::open(name, Role::producer); }, "already has a live producer");
  expect_errno(
      EINVAL, [&] { Broadcast::open(name, Role::both); }, "role");
  Broadcast watcher = Broadcast::open(name, Role::none);
  expect_errno(EINVAL, [&] { watcher.join(Role::both); });
  expect_errno(EBUSY, [&] { watcher.join(Role::producer); });
  expect_errno(EPERM, [&] { (void)watcher.try_receive(); });
  Broadcast a = Broadcast::open(name, Role::consumer);
  Broadcast b = Broadcast::open(name, Role::consumer);
  expect_errno(EPERM, [&] { (void)a.try_loan(); });
  expect_errno(EPERM, [&] { (void)producer.try_receive(); });
  // Another process may not produce either while this one lives.
  Children kids;
  const int pid = kids.start([&] {
    try {
      Broadcast p = Broadcast::open(name, Role::producer);
    } catch (const Error& e) {
      return e.errnum() == EBUSY ? 0 : 1;
    }
    return 2;
  });
  EXPECT_EQ(exit_code(kids.wait(pid, 10)), 0);

  ASSERT_TRUE(producer.try_send(as_bytes(1)));
  Broadcast late = Broadcast::open(name, Role::consumer);  // sees what comes after it joined
  ASSERT_TRUE(producer.try_send(as_bytes(2)));
  for (Broadcast* s : {&a, &b}) {
    EXPECT_EQ(first_word(s->try_receive().bytes()), 1u);
    EXPECT_TRUE(s->release());
    EXPECT_EQ(first_word(s->try_receive().bytes()), 2u);
    EXPECT_TRUE(s->release());
    EXPECT_FALSE(s->try_receive());
  }
  EXPECT_EQ(first_word(late.try_receive().bytes()), 2u);
  EXPECT_TRUE(late.release());
  const ChannelStats s = producer.stats();
  EXPECT_EQ(s.published, 2u);
  EXPECT_EQ(s.producers, 1u);
  EXPECT_EQ(s.consumers, 3u);
  EXPECT_EQ(producer.check(), "");
  producer.leave();
  EXPECT_TRUE(a.closed());
  EXPECT_NO_THROW(watcher.join(Role::producer));  // the place is free again
}

TEST(Broadcast, BlockModeWaitsForTheSlowestSubscriber) {
  const std::string name = unique_name("/", "bcast-full");
  Remover remover(name);
  Broadcast producer = Broadcast::create(name, shape(16, 4), Role::producer);
  // Without subscribers nothing is kept: never full.
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(producer.try_send(as_bytes(i)));
  Broadcast fast = Broadcast::open(name, Role::consumer);
  Broadcast slow = Broadcast::open(name, Role::consumer);
  for (std::uint64_t i = 10; i < 14; ++i) ASSERT_TRUE(producer.try_send(as_bytes(i)));
  EXPECT_FALSE(producer.try_send(as_bytes(14)));
  EXPECT_TRUE(producer.try_loan().empty());
  EXPECT_FALSE(producer.send(as_bytes(14), 5ms));
  EXPECT_EQ(producer.size(), 4u);
  for (std::uint64_t i = 10; i < 14; ++i) {
    ASSERT_EQ(first_word(fast.try_receive().bytes()), i);
    ASSERT_TRUE(fast.release());
  }
  EXPECT_FALSE(producer.try_send(as_bytes(14)));  // `slow` has read nothing
  ASSERT_EQ(first_word(slow.try_receive().bytes()), 10u);
  EXPECT_FALSE(producer.try_send(as_bytes(14)));  // ... and holds 10 still
  ASSERT_TRUE(slow.release());
  EXPECT_TRUE(producer.try_send(as_bytes(14)));
  EXPECT_FALSE(producer.try_send(as_bytes(15)));
  slow.leave();  // a subscriber that leaves is not waited for
  EXPECT_TRUE(producer.try_send(as_bytes(15)));
  EXPECT_EQ(fast.lost(), 0u);
  EXPECT_EQ(producer.check(), "");
}

TEST(Broadcast, OverwriteNeverWaitsAndSaysWhatWasLost) {
  constexpr std::uint64_t kCount = 1000, kCapacity = 16;
  const std::string name = unique_name("/", "bcast-lapped");
  Remover remover(name);
  Broadcast producer =
      Broadcast::create(name, shape(kMsg, kCapacity, 4, Overflow::overwrite), Role::producer);
  EXPECT_EQ(producer.overflow(), Overflow::overwrite);
  Broadcast slow = Broadcast::open(name, Role::consumer);
  for (std::uint64_t seq = 0; seq < kCount; ++seq) {
    std::array<std::byte, kMsg> buf{};
    write_msg(buf, seq);
    ASSERT_TRUE(producer.try_send(buf)) << "the producer waited at " << seq;
  }
  // The slow subscriber finds the newest kCapacity messages, told how many went before.
  for (std::uint64_t seq = kCount - kCapacity; seq < kCount; ++seq) {
    const Broadcast::View v = slow.try_receive();
    ASSERT_TRUE(v);
    EXPECT_EQ(v.lost, seq == kCount - kCapacity ? kCount - kCapacity : 0u);
    EXPECT_TRUE(intact(v.bytes()));
    EXPECT_EQ(first_word(v.bytes()), seq);
    EXPECT_TRUE(slow.release());
  }
  EXPECT_FALSE(slow.try_receive());
  EXPECT_EQ(slow.lost(), kCount - kCapacity);
  // A view the producer overwrites while it is held: release() says so, and it counts.
  ASSERT_TRUE(producer.try_send(as_bytes(0)));
  ASSERT_TRUE(slow.try_receive());
  for (std::uint64_t i = 0; i < kCapacity; ++i) ASSERT_TRUE(producer.try_send(as_bytes(i)));
  EXPECT_FALSE(slow.release());
  EXPECT_EQ(slow.lost(), kCount - kCapacity + 1);
  const std::vector<ChannelPeer> peers = producer.peers();
  ASSERT_EQ(peers.size(), 2u);
  for (const ChannelPeer& p : peers) {
    if (p.role == Role::consumer) {
      EXPECT_EQ(p.lost, kCount - kCapacity + 1);
    }
  }
}

TEST(Broadcast, LargeMessagesAreRefusedEvenInAnArena) {
  const std::string arena_name = unique_name("/", "bcast-arena");
  Remover remover(arena_name);
  Arena arena = Arena::create(arena_name, ArenaConfig{});
  Broadcast producer = Broadcast::create(arena, "news", shape(16, 4), Role::producer);
  Broadcast sub = Broadcast::open(arena, "news", Role::consumer);
  std::array<std::byte, 17> big{};
  expect_errno(EMSGSIZE, [&] { producer.send(big, 1ms); });
  ASSERT_TRUE(producer.send(as_bytes(3), 1ms));
  EXPECT_EQ(first_word(sub.try_receive().bytes()), 3u);
  EXPECT_TRUE(sub.release());
  expect_errno(EBUSY, [&] { Broadcast::remove(arena, "news"); });
  producer.leave();
  sub.leave();
  Broadcast::remove(arena, "news");
  EXPECT_EQ(arena.check(), "");
}

// ---- Many processes ----

TEST(Broadcast, EverySubscriberReceivesEveryMessageInOrder) {
  constexpr std::uint64_t kCount = 100'000;
  constexpr int kSubscribers = 4;
  const std::string name = unique_name("/", "bcast-all");
  Remover remover(name);
  Broadcast producer = Broadcast::create(name, shape(kMsg, 256), Role::producer);
  Shared<Report> report;
  Children kids;
  for (int i = 0; i < kSubscribers; ++i) {
    kids.start([&] { return subscribe_all(name, *report, kCount, Wait::spin_then_block); }, 120);
  }
  ASSERT_TRUE(test::wait_for_value(report->joined, kSubscribers, 20));
  for (std::uint64_t seq = 0; seq < kCount; ++seq) {
    if (seq % 3 == 0) {
      const std::span<std::byte> s = producer.loan(10s);
      ASSERT_FALSE(s.empty()) << seq;
      write_msg(s, seq);
      producer.publish(kMsg);
    } else {
      ASSERT_TRUE(send_msg(producer, seq, 10s)) << seq;
    }
  }
  producer.leave();  // the subscribers see closed() once they have read everything
  for (int status : kids.wait_all(120)) EXPECT_EQ(exit_code(status), 0);
  EXPECT_EQ(report->errors.load(), 0) << report->first_error;
  EXPECT_EQ(report->done.load(), kSubscribers);
  EXPECT_EQ(producer.stats().peer_deaths, 0u);
  EXPECT_EQ(producer.check(), "");
}

// 256 subscriber processes on a small machine: they sleep while they wait (Wait::block), so
// the producer gets a CPU; each receives every message, in order.
TEST(Broadcast, TwoHundredFiftySixSubscriberProcesses) {
  constexpr std::uint64_t kCount = 2000;
  constexpr int kSubscribers = 256;
  const std::string name = unique_name("/", "bcast-256");
  Remover remover(name);
  Broadcast producer = Broadcast::create(name, shape(kMsg, 64, kSubscribers + 1), Role::producer);
  producer.set_wait(Wait::block);
  Shared<Report> report;
  Children kids;
  for (int i = 0; i < kSubscribers; ++i) {
    ASSERT_GT(kids.start([&] { return subscribe_all(name, *report, kCount, Wait::block); }, 240),
              0);
  }
  ASSERT_TRUE(test::wait_for_value(report->joined, kSubscribers, 120));
  EXPECT_EQ(producer.stats().consumers, static_cast<std::uint32_t>(kSubscribers));
  for (std::uint64_t seq = 0; seq < kCount; ++seq) ASSERT_TRUE(send_msg(producer, seq, 30s)) << seq;
  producer.leave();
  int failed = 0;
  for (int status : kids.wait_all(120)) failed += exit_code(status) != 0;
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(report->errors.load(), 0) << report->first_error;
  EXPECT_EQ(report->done.load(), kSubscribers);
  EXPECT_EQ(producer.stats().peer_deaths, 0u);
}

// Overwrite mode with a fast and a slow subscriber: the producer never waits; what each
// subscriber gets is intact and increasing; what it does not get is counted, exactly.
TEST(Broadcast, OverwriteLapsASlowSubscriberWhoIsToldWhatItLost) {
  constexpr std::uint64_t kCount = 200'000;
  const std::string name = unique_name("/", "bcast-overwrite");
  Remover remover(name);
  Broadcast producer =
      Broadcast::create(name, shape(kMsg, 64, 8, Overflow::overwrite), Role::producer);
  Shared<Report> report;
  SharedArray<std::uint64_t> seen(6);  // per subscriber: intact, lost(), torn
  Children kids;
  for (int sub = 0; sub < 2; ++sub) {
    kids.start(
        [&, sub] {
          Broadcast b = Broadcast::open(name, Role::consumer);
          report->joined.fetch_add(1);
          std::mt19937 rng(static_cast<unsigned>(sub));
          std::array<std::byte, kMsg> copy{};
          std::int64_t last = -1;
          std::uint64_t got = 0, torn = 0, told = 0;
          for (;;) {
            const Broadcast::View v = b.receive(20s);
            if (!v) break;
            told += v.lost;
            const std::size_t n = std::min(v.size, copy.size());
            std::memcpy(copy.data(), v.data, n);
            if (sub == 1 && rng() % 64 == 0) {  // the slow one: held while the producer laps it
              std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
            }
            if (!b.release()) {
              ++torn;
              continue;
            }
            if (n != kMsg || !intact(copy)) report->fail("a torn message passed release()");
            const std::uint64_t seq = first_word(copy);
            if (static_cast<std::int64_t>(seq) <= last) report->fail("out of order");
            last = static_cast<std::int64_t>(seq);
            ++got;
          }
          if (!b.closed()) report->fail("receive() timed out");
          if (told + torn != b.lost()) {
            report->fail("View::lost " + std::to_string(told) + " + torn " + std::to_string(torn) +
                         " != lost() " + std::to_string(b.lost()));
          }
          seen[sub * 3 + 0].store(got);
          seen[sub * 3 + 1].store(b.lost());
          seen[sub * 3 + 2].store(torn);
          return 0;
        },
        120);
  }
  // A third subscriber that never reads must not hold the producer up either.
  Broadcast stalled = Broadcast::open(name, Role::consumer);
  ASSERT_TRUE(test::wait_for_value(report->joined, 2, 20));
  for (std::uint64_t seq = 0; seq < kCount; ++seq) {
    std::array<std::byte, kMsg> buf{};
    write_msg(buf, seq);
    ASSERT_TRUE(producer.try_send(buf)) << "the producer waited at " << seq;
  }
  producer.leave();
  for (int status : kids.wait_all(120)) EXPECT_EQ(exit_code(status), 0);
  EXPECT_EQ(report->errors.load(), 0) << report->first_error;
  for (int sub = 0; sub < 2; ++sub) {
    // Every message published after it joined was either received intact or counted lost.
    EXPECT_EQ(seen[sub * 3 + 0].load() + seen[sub * 3 + 1].load(), kCount) << "subscriber " << sub;
  }
  EXPECT_GT(seen[1 * 3 + 1].load(), 0u) << "the slow subscriber was never lapped";
  const Broadcast::View v = stalled.try_receive();
  ASSERT_TRUE(v);
  EXPECT_EQ(v.lost, kCount - 64);
  EXPECT_EQ(first_word(v.bytes()), kCount - 64);
}

// A subscriber SIGKILLed while it holds a message (block mode): the producer is held up only
// until a reaper drops it; the other subscriber gets everything.
TEST(Broadcast, ADeadSubscriberDoesNotBlockTheProducer) {
  constexpr std::uint64_t kCount = 5000;
  const std::string name = unique_name("/", "bcast-dead-sub");
  Remover remover(name);
  Broadcast producer = Broadcast::create(name, shape(kMsg, 16), Role::producer);
  Shared<Report> report;
  Children kids;
  const int victim = kids.start([&] {
    Broadcast b = Broadcast::open(name, Role::consumer);
    report->joined.fetch_add(1);
    for (int i = 0; i < 100; ++i) {
      if (!b.receive(10s)) return 1;
      b.release();
    }
    if (!b.receive(10s)) return 2;
    ::raise(SIGKILL);  // holding message 100
    return 3;
  });
  const int survivor =
      kids.start([&] { return subscribe_all(name, *report, kCount, Wait::spin_then_block); });
  ASSERT_TRUE(test::wait_for_value(report->joined, 2, 20));
  for (std::uint64_t seq = 0; seq < kCount; ++seq) {
    ASSERT_TRUE(send_msg(producer, seq, 10s)) << "held up at " << seq;
  }
  EXPECT_EQ(exit_code(kids.wait(victim, 10)), 128 + SIGKILL);
  producer.leave();
  EXPECT_EQ(exit_code(kids.wait(survivor, 30)), 0);
  EXPECT_EQ(report->errors.load(), 0) << report->first_error;
  EXPECT_EQ(producer.stats().peer_deaths, 1u);
  EXPECT_EQ(producer.stats().consumers, 0u);
}

// Subscribers asleep in receive() wake with an empty View and see closed() once the producer
// has gone: killed (found by the reaper) or leaving.
class BroadcastClosed : public ::testing::TestWithParam<bool> {};

TEST_P(BroadcastClosed, SubscribersSeeTheProducerGo) {
  const bool killed = GetParam();
  const std::string name = unique_name("/", "bcast-closed");
  Remover remover(name);
  Broadcast b = Broadcast::create(name, shape(16, 8), Role::none);
  Shared<Report> report;
  Children kids;
  std::vector<int> subs;
  for (int i = 0; i < 3; ++i) {
    subs.push_back(kids.start([&, i] {
      Broadcast s = Broadcast::open(name, Role::consumer);
      s.set_wait(i == 0 ? Wait::busy_poll : Wait::block);
      report->joined.fetch_add(1);
      for (std::uint64_t seq = 0; seq < 3; ++seq) {
        const Broadcast::View v = s.receive(10s);
        if (!v || first_word(v.bytes()) != seq) return 1;
        s.release();
      }
      const auto t0 = Clock::now();
      const Broadcast::View v = s.receive(20s);
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
      std::int64_t longest = report->elapsed_ms.load();
      while (ms.count() > longest &&
             !report->elapsed_ms.compare_exchange_weak(longest, ms.count())) {
      }
      if (v) return 2;
      return s.closed() ? 0 : 3;
    }));
  }
  ASSERT_TRUE(test::wait_for_value(report->joined, 3, 20));
  const int producer = kids.start([&] {
    Broadcast p = Broadcast::open(name, Role::producer);
    for (std::uint64_t seq = 0; seq < 3; ++seq) {
      if (!p.send(as_bytes(seq), 5s)) return 1;
    }
    std::this_thread::sleep_for(300ms);  // the subscribers fall asleep
    if (killed) ::raise(SIGKILL);
    return 0;
  });
  EXPECT_EQ(exit_code(kids.wait(producer, 10)), killed ? 128 + SIGKILL : 0);
  for (int pid : subs) EXPECT_EQ(exit_code(kids.wait(pid, 15)), 0);
  EXPECT_LT(report->elapsed_ms.load(), 10'000) << "woke only on its timeout";
  EXPECT_EQ(b.stats().peer_deaths, killed ? 1u : 0u);
  EXPECT_EQ(b.check(), "");
}

INSTANTIATE_TEST_SUITE_P(Producer, BroadcastClosed, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return std::string(p.param ? "killed" : "leaving");
                         });

// A producer that dies mid-write (a slot loaned) is replaced by the next to join; the
// subscribers go on with the next message and lose nothing that was published.
TEST(Broadcast, ADeadProducerIsReplacedByTheNextToJoin) {
  const std::string name = unique_name("/", "bcast-replace");
  Remover remover(name);
  Broadcast sub = Broadcast::create(name, shape(kMsg, 4), Role::consumer);
  Children kids;
  const int first = kids.start([&] {
    Broadcast p = Broadcast::open(name, Role::producer);
    for (std::uint64_t seq = 0; seq < 3; ++seq) {
      if (!send_msg(p, seq, 5s)) return 1;
    }
    const std::span<std::byte> s = p.loan(5s);
    if (s.empty()) return 2;
    std::memset(s.data(), 0xee, s.size());
    ::raise(SIGKILL);
    return 3;
  });
  EXPECT_EQ(exit_code(kids.wait(first, 10)), 128 + SIGKILL);
  const int second = kids.start([&] {
    Broadcast p = Broadcast::open(name, Role::producer);
    for (std::uint64_t seq = 3; seq < 20; ++seq) {
      if (!send_msg(p, seq, 5s)) return 1;
    }
    return 0;
  });
  for (std::uint64_t seq = 0; seq < 20; ++seq) {
    const Broadcast::View v = sub.receive(10s);
    ASSERT_TRUE(v) << seq;
    EXPECT_EQ(v.lost, 0u);
    ASSERT_TRUE(intact(v.bytes())) << seq;
    ASSERT_EQ(first_word(v.bytes()), seq);
    ASSERT_TRUE(sub.release());
  }
  EXPECT_EQ(exit_code(kids.wait(second, 10)), 0);
  EXPECT_EQ(sub.stats().peer_deaths, 1u);
  EXPECT_EQ(sub.lost(), 0u);
}

// Subscribers joining and leaving a busy producer in block mode: from the first message it
// receives on, a subscriber sees the stream without a gap and never a loss.
TEST(Broadcast, SubscribersJoiningABusyProducerLoseNothing) {
  constexpr int kJoins = 1500;
  const std::string name = unique_name("/", "bcast-join");
  Remover remover(name);
  Broadcast producer = Broadcast::create(name, shape(kMsg, 2, 4), Role::producer);
  Shared<Report> report;
  Children kids;
  const int pid = kids.start(
      [&] {
        for (int i = 0; i < kJoins; ++i) {
          Broadcast b = Broadcast::open(name, Role::consumer);
          std::int64_t last = -1;
          for (int k = 0; k < 4; ++k) {
            const Broadcast::View v = b.receive(10s);
            if (!v) {
              report->fail("join " + std::to_string(i) + ": nothing");
              report->done.store(1);
              return 1;
            }
            const std::uint64_t seq = first_word(v.bytes());
            if (v.lost != 0)
              report->fail("join " + std::to_string(i) + ": lost " + std::to_string(v.lost));
            if (last >= 0 && seq != static_cast<std::uint64_t>(last) + 1) report->fail("a gap");
            last = static_cast<std::int64_t>(seq);
            if (!b.release()) report->fail("overwritten in block mode");
          }
        }
        report->done.store(1);
        return 0;
      },
      120);
  std::uint64_t seq = 0;
  const auto t0 = Clock::now();
  while (report->done.load() == 0 && Clock::now() - t0 < 60s) {
    if (send_msg(producer, seq, 0ms)) ++seq;
  }
  EXPECT_EQ(exit_code(kids.wait(pid, 60)), 0);
  EXPECT_EQ(report->errors.load(), 0) << report->first_error;
}

}  // namespace
}  // namespace shmkit
