// SPDX-License-Identifier: MIT
// Ring: order and no loss across real processes in each Wait mode, wrap-around, full and
// empty, zero-copy, sleeping consumers woken without a lost wake-up, timeouts, bad input;
// the peer table (one producer and one consumer, a dead one replaced, closed() when the
// producer goes), the open_or_create race, and a ring in an arena with block messages.
#include "shmkit/channel/ring.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "channel_test_util.hpp"
#include "shmkit/arena.hpp"
#include "shmkit/channel/queue.hpp"
#include "shmkit/segment.hpp"
#include "test_support.hpp"

namespace shmkit {
namespace {

using namespace std::chrono_literals;
using test::as_bytes;
using test::Children;
using test::exit_code;
using test::expect_errno;
using test::fill;
using test::first_word;
using test::matches;
using test::Remover;
using test::Shared;
using test::unique_name;

using Clock = std::chrono::steady_clock;

ChannelConfig shape(std::size_t slot_size, std::size_t capacity, std::uint32_t max_peers = 4) {
  return ChannelConfig{slot_size, capacity, max_peers, Overflow::block};
}

// CPU time (user + system, in clock ticks) used so far by process `pid`.
long cpu_ticks(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));  // from field 3 (state) on
  std::string skip;
  for (int i = 3; i < 14; ++i) fields >> skip;
  long utime = 0, stime = 0;
  fields >> utime >> stime;
  return utime + stime;
}

detail::ChannelHeader& header_of(const Ring& r) {
  return *static_cast<detail::ChannelHeader*>(r.data());
}

// Flags children and parent exchange (in anonymous shared memory).
struct Flags {
  std::atomic<int> step{0};
  std::atomic<int> value{0};
  std::atomic<std::int64_t> elapsed_ms{-1};
  std::atomic<std::uintptr_t> mapped_at{0};  // where a child mapped the channel
};

// ---- One process ----

TEST(Ring, CreateThenOpenSeesTheSameRing) {
  const std::string name = unique_name("/", "ring-open");
  Remover remover(name);
  Ring a = Ring::create(name, shape(100, 16), Role::producer);
  EXPECT_EQ(a.slot_size(), 100u);
  EXPECT_EQ(a.capacity(), 16u);
  EXPECT_EQ(a.max_peers(), 4u);
  EXPECT_EQ(a.role(), Role::producer);
  EXPECT_EQ(a.arena(), nullptr);
  EXPECT_EQ(a.wait_mode(), Wait::spin_then_block);
  EXPECT_EQ(a.data(), a.segment().data());
  EXPECT_EQ(a.bytes(), Ring::bytes_for(shape(100, 16)));
  Ring b = Ring::open(name, Role::consumer);
  EXPECT_EQ(b.slot_size(), 100u);
  EXPECT_EQ(b.capacity(), 16u);
  EXPECT_EQ(b.role(), Role::consumer);
  ASSERT_TRUE(a.try_send(as_bytes(42)));
  std::uint64_t got = 0;
  EXPECT_EQ(b.try_receive({reinterpret_cast<std::byte*>(&got), sizeof got}), sizeof got);
  EXPECT_EQ(got, 42u);
  EXPECT_EQ(a.check(), "");
  EXPECT_EQ(b.size(), 0u);
  const ChannelStats s = a.stats();
  EXPECT_EQ(s.published, 1u);
  EXPECT_EQ(s.producers, 1u);
  EXPECT_EQ(s.consumers, 1u);
  EXPECT_EQ(s.peer_deaths, 0u);
  const std::vector<ChannelPeer> peers = b.peers();
  ASSERT_EQ(peers.size(), 2u);
  for (const ChannelPeer& p : peers) {
    EXPECT_EQ(p.pid, ::getpid());
    EXPECT_TRUE(p.alive);
    EXPECT_EQ(p.self, p.role == Role::consumer);
  }
  EXPECT_FALSE(a.closed());
  EXPECT_FALSE(b.closed());
  b.leave();
  EXPECT_EQ(a.stats().consumers, 0u);
  EXPECT_TRUE(a.closed());  // the producer's only consumer left
}

TEST(Ring, FullAndEmpty) {
  Ring r = Ring::create_anonymous(8, 8);
  std::array<std::byte, 8> buf{};
  EXPECT_FALSE(r.try_receive());
  EXPECT_FALSE(r.try_receive(buf));
  for (std::uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(r.try_send(as_bytes(i))) << i;
  EXPECT_EQ(r.size(), 8u);
  EXPECT_FALSE(r.try_send(as_bytes(8)));
  EXPECT_TRUE(r.try_loan().empty());
  for (std::uint64_t i = 0; i < 8; ++i) {
    ASSERT_EQ(r.try_receive(buf), 8u);
    std::uint64_t got = 0;
    std::memcpy(&got, buf.data(), 8);
    EXPECT_EQ(got, i);
  }
  EXPECT_FALSE(r.try_receive());
  EXPECT_EQ(r.check(), "");
}

TEST(Ring, WrapsAroundASmallRingManyTimes) {
  Ring r = Ring::create_anonymous(32, 8);
  std::uint64_t sent = 0, received = 0;
  for (int round = 0; round < 2000; ++round) {
    const int batch = 1 + round % 8;  // 1..8 messages, so the wrap point moves
    for (int i = 0; i < batch; ++i) {
      const std::span<std::byte> s = r.try_loan();
      ASSERT_FALSE(s.empty());
      r.publish(fill(s, sent++));
    }
    for (int i = 0; i < batch; ++i) {
      const Ring::View v = r.try_receive();
      ASSERT_TRUE(v);
      ASSERT_TRUE(matches(v.bytes(), received)) << received;
      ++received;
      r.release();
    }
  }
  EXPECT_FALSE(r.try_receive());
  EXPECT_EQ(header_of(r).head.load(std::memory_order_relaxed), sent);
  EXPECT_EQ(r.stats().published, sent);
  EXPECT_EQ(r.check(), "");
}

TEST(Ring, ViewStaysTheSameMessageUntilReleased) {
  Ring r = Ring::create_anonymous(16, 4);
  ASSERT_TRUE(r.try_send(as_bytes(7)));
  ASSERT_TRUE(r.try_send(as_bytes(8)));
  const Ring::View a = r.try_receive();
  const Ring::View b = r.try_receive();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a.data, b.data);
  r.release();
  const Ring::View c = r.try_receive();
  ASSERT_TRUE(c);
  EXPECT_EQ(first_word(c.bytes()), 8u);
}

TEST(Ring, EmptyMessagesAreMessages) {
  Ring r = Ring::create_anonymous(16, 4);
  ASSERT_TRUE(r.try_send({}));
  const Ring::View v = r.try_receive();
  ASSERT_TRUE(v);
  EXPECT_EQ(v.size, 0u);
  r.release();
  EXPECT_FALSE(r.try_receive());
}

TEST(Ring, MessagesLargerThanASlotAreRefused) {
  Ring r = Ring::create_anonymous(16, 4);
  std::array<std::byte, 17> big{};
  expect_errno(EMSGSIZE, [&] { (void)r.try_send(big); });
  expect_errno(
      EMSGSIZE, [&] { r.send(big, 1ms); }, "slots of 16");
  expect_errno(
      EINVAL, [&] { (void)r.loan_block(100); }, "not in an arena");
  ASSERT_FALSE(r.try_loan().empty());
  expect_errno(EMSGSIZE, [&] { r.publish(17); });
  r.publish(16);  // the slot stayed loaned
  std::array<std::byte, 8> small{};
  expect_errno(EMSGSIZE, [&] { (void)r.try_receive(small); });
  EXPECT_EQ(r.size(), 1u);  // still queued
  std::array<std::byte, 16> fits{};
  EXPECT_EQ(r.try_receive(fits), 16u);
}

TEST(Ring, BadShapesAndNamesAreEinval) {
  const std::string name = unique_name("/", "ring-bad");
  Remover remover(name);
  expect_errno(
      EINVAL, [&] { Ring::create(name, shape(0, 8), Role::producer); }, "slot size");
  expect_errno(
      EINVAL, [&] { Ring::create(name, shape(8, 0), Role::producer); }, "power of two");
  expect_errno(
      EINVAL, [&] { Ring::create(name, shape(8, 3), Role::producer); }, "power of two");
  expect_errno(EINVAL, [&] { Ring::create(name, shape(8, 1000), Role::producer); });
  expect_errno(
      EINVAL, [&] { Ring::create(name, shape(8, 8, 0), Role::producer); }, "max_peers");
  expect_errno(EINVAL, [&] { Ring::create(name, shape(8, 8, 65537), Role::producer); });
  expect_errno(EINVAL, [&] { Ring::create_anonymous(8, 6); });
  expect_errno(EINVAL, [&] { Ring::create_anonymous(std::size_t{1} << 33, 2); });
  expect_errno(EINVAL, [&] { (void)Ring::bytes_for(shape(8, std::size_t{1} << 33)); });
  expect_errno(EINVAL, [&] { Ring::create("no-slash/../x", shape(8, 8), Role::producer); });
  expect_errno(EINVAL, [&] { Ring::open("", Role::consumer); });
  expect_errno(ENOENT, [&] { Ring::open(name, Role::consumer); });  // nothing was created
  expect_errno(EINVAL, [&] { Ring::create(name, shape(8, 8), static_cast<Role>(7)); });
  expect_errno(ENOENT, [&] { Ring::open(name, Role::consumer); });  // and no half-made ring
  Ring one = Ring::create(name, shape(1, 1, 1), Role::both);        // the smallest ring
  EXPECT_TRUE(one.try_send(std::array<std::byte, 1>{}));
  EXPECT_FALSE(one.try_send(std::array<std::byte, 1>{}));
  expect_errno(EBUSY, [&] { Ring::open(name, Role::none).join(Role::consumer); });
}

TEST(Ring, RolesAreChecked) {
  const std::string name = unique_name("/", "ring-roles");
  Remover remover(name);
  Ring producer = Ring::create(name, shape(16, 4), Role::producer);
  Ring consumer = Ring::open(name, Role::consumer);
  Ring watcher = Ring::open(name, Role::none);
  expect_errno(EPERM, [&] { (void)consumer.try_loan(); });
  expect_errno(EPERM, [&] { (void)consumer.try_send(as_bytes(1)); });
  expect_errno(EPERM, [&] { (void)producer.try_receive(); });
  expect_errno(EPERM, [&] { (void)watcher.try_loan(); });
  expect_errno(EPERM, [&] { (void)watcher.receive(1ms); });
  // One live producer and one live consumer: this process is alive, so a second is refused.
  expect_errno(
      EBUSY, [&] { Ring::open(name, Role::producer); }, "already has a live producer");
  expect_errno(
      EBUSY, [&] { Ring::open(name, Role::consumer); }, "already has a live consumer");
  expect_errno(EBUSY, [&] { Ring::open(name, Role::both); });
  expect_errno(EBUSY, [&] { watcher.join(Role::producer); });
  EXPECT_EQ(watcher.role(), Role::none);
  EXPECT_EQ(watcher.stats().producers, 1u);
  producer.leave();
  watcher.join(Role::producer);  // the place is free again
  EXPECT_EQ(watcher.role(), Role::producer);
  ASSERT_TRUE(watcher.try_send(as_bytes(5)));
  EXPECT_EQ(first_word(consumer.try_receive().bytes()), 5u);
  consumer.release();
  EXPECT_EQ(watcher.check(), "");
}

TEST(Ring, ForeignSegmentsAreEinval) {
  const std::string zeros = unique_name("/", "ring-zeros");
  Remover r1(zeros);
  Segment z = Segment::create(zeros, 4096);
  expect_errno(
      EINVAL, [&] { Ring::open(zeros, Role::consumer); }, "not a channel");  // all zero
  std::memset(z.data(), 0xff, z.size());
  expect_errno(
      EINVAL, [&] { Ring::open(zeros, Role::consumer); }, "not a channel");

  const std::string tiny = unique_name("/", "ring-tiny");
  Remover r2(tiny);
  Segment t = Segment::create(tiny, 64);
  expect_errno(EINVAL, [&] { Ring::open(tiny, Role::consumer); });

  const std::string name = unique_name("/", "ring-tampered");
  Remover r3(name);
  Ring ring = Ring::create(name, shape(64, 16), Role::none);
  detail::ChannelHeader& h = header_of(ring);
  EXPECT_EQ(ring.check(), "");
  auto tamper = [&](auto& field, auto bad, const char* says = "") {
    const auto good = field;
    field = bad;
    expect_errno(
        EINVAL, [&] { Ring::open(name, Role::consumer); }, says);
    EXPECT_NE(ring.check(), "");
    field = good;
  };
  tamper(h.version, 2u, "version");
  tamper(h.fingerprint, 0u, "fingerprint");
  tamper(h.kind, 9u, "unknown kind");
  tamper(h.kind, static_cast<std::uint32_t>(detail::ChannelKind::queue), "a queue");
  tamper(h.overflow, 5u);
  tamper(h.capacity, std::uint64_t{12});
  tamper(h.capacity, std::uint64_t{1024});  // larger than the segment
  tamper(h.slot_size, std::uint64_t{0});
  tamper(h.stride, std::uint64_t{65});
  tamper(h.max_peers, 0u);
  tamper(h.max_peers, 400u);  // larger than the segment
  tamper(h.bytes, std::uint64_t{1} << 40);
  EXPECT_NO_THROW(Ring::open(name, Role::consumer));
  h.head.store(100, std::memory_order_relaxed);  // INV-RING-1 broken
  EXPECT_NE(ring.check(), "");
  h.head.store(0, std::memory_order_relaxed);
  EXPECT_EQ(ring.check(), "");
}

TEST(Ring, AnotherKindOfChannelIsEinvalAndSaysWhich) {
  const std::string name = unique_name("/", "ring-queue");
  Remover remover(name);
  Queue q = Queue::create(name, shape(16, 8), Role::producer);
  expect_errno(
      EINVAL, [&] { Ring::open(name, Role::consumer); }, "a queue, not a ring");
  expect_errno(
      EINVAL, [&] { Ring::open_or_create(name, shape(16, 8), Role::consumer); }, "a queue");
  EXPECT_EQ(q.stats().consumers, 0u);  // nothing joined on the way
}

TEST(Ring, TimeoutsReturnEmptyInEveryMode) {
  for (Wait mode : {Wait::busy_poll, Wait::block, Wait::spin_then_block}) {
    Ring r = Ring::create_anonymous(8, 2);
    r.set_wait(mode);
    auto t0 = Clock::now();
    EXPECT_FALSE(r.receive(20ms));
    std::array<std::byte, 8> buf{};
    EXPECT_FALSE(r.receive(buf, 5ms));
    EXPECT_GE(Clock::now() - t0, 25ms);
    ASSERT_TRUE(r.send(as_bytes(1), 0ms));
    ASSERT_TRUE(r.send(as_bytes(2), 0ms));
    t0 = Clock::now();
    EXPECT_FALSE(r.send(as_bytes(3), 20ms));
    EXPECT_TRUE(r.loan(5ms).empty());
    EXPECT_GE(Clock::now() - t0, 25ms);
    EXPECT_EQ(r.receive(buf, 0ms), 8u);  // a message ready now: no wait at all
    EXPECT_FALSE(r.loan(1s).empty());
  }
}

// ---- Real processes ----

TEST(Ring, ZeroCopyTheConsumerReadsTheProducersSlot) {
  const std::string name = unique_name("/", "ring-zero-copy");
  Remover remover(name);
  Ring producer = Ring::create(name, shape(64, 8), Role::producer);
  const auto* base = static_cast<const std::byte*>(producer.data());
  for (int i = 0; i < 20; ++i) {  // goes round the ring more than twice
    const std::span<std::byte> s = producer.try_loan();
    ASSERT_FALSE(s.empty());
    const std::uint64_t offset = static_cast<std::uint64_t>(s.data() - base);
    std::memcpy(s.data(), &offset, sizeof offset);
    producer.publish(sizeof offset);
    // Each consumer maps the ring anew (at another address): the message is where the
    // producer wrote it, at the same offset from the base, and was not copied. Each leaves
    // on return, so the next one may join.
    Children kids;
    const int pid = kids.start([&] {
      Ring consumer = Ring::open(name, Role::consumer);
      const auto* mine = static_cast<const std::byte*>(consumer.data());
      const Ring::View v = consumer.receive(5s);
      if (!v || v.size != sizeof offset) return 1;
      if (v.data < mine || v.data + v.size > mine + consumer.bytes()) return 2;
      if (static_cast<std::uint64_t>(v.data - mine) != first_word(v.bytes())) return 3;
      consumer.release();
      return 0;
    });
    ASSERT_EQ(exit_code(kids.wait(pid)), 0) << "message " << i;
  }
  EXPECT_EQ(producer.stats().consumers, 0u);
  // In one process too (a second mapping): the view is the loaned slot, at its offset.
  Ring consumer = Ring::open(name, Role::consumer);
  const std::span<std::byte> s = producer.try_loan();
  producer.publish(1);
  const auto* mine = static_cast<const std::byte*>(consumer.data());
  EXPECT_EQ(consumer.try_receive().data - mine, s.data() - base);
}

class RingMode : public ::testing::TestWithParam<Wait> {};

// The producer alternates loan/publish with send, the consumer view/release with copying.
TEST_P(RingMode, AMillionMessagesArriveInOrder) {
  constexpr std::uint64_t kCount = 1'000'000;
  Ring r = Ring::create_anonymous(32, 1024);
  r.set_wait(GetParam());
  Children kids;
  const int pid = kids.start(
      [&] {
        std::array<std::byte, 32> buf{};
        for (std::uint64_t seq = 0; seq < kCount; ++seq) {
          if (seq & 1) {
            const std::span<std::byte> s = r.loan(10s);
            if (s.empty()) return 1;
            r.publish(fill(s, seq));
          } else if (!r.send(std::span(buf).first(fill(buf, seq)), 10s)) {
            return 2;
          }
        }
        return 0;
      },
      60);
  std::array<std::byte, 32> buf{};
  for (std::uint64_t seq = 0; seq < kCount; ++seq) {
    if (seq & 1) {
      const Ring::View v = r.receive(10s);
      ASSERT_TRUE(v) << "timed out at " << seq;
      ASSERT_TRUE(matches(v.bytes(), seq)) << "message " << seq;
      r.release();
    } else {
      const std::optional<std::size_t> n = r.receive(buf, 10s);
      ASSERT_TRUE(n) << "timed out at " << seq;
      ASSERT_TRUE(matches(std::span(buf).first(*n), seq)) << "message " << seq;
    }
  }
  EXPECT_EQ(exit_code(kids.wait(pid)), 0);
  EXPECT_FALSE(r.try_receive());
  EXPECT_EQ(r.stats().published, kCount);
  EXPECT_EQ(r.check(), "");
}

// Ping-pong through two rings: every message is sent while the other side is asleep or about
// to sleep, so a lost wake-up would stall the exchange (and fail on the timeout).
TEST_P(RingMode, SporadicMessagesWakeASleepingPeerEveryTime) {
  constexpr std::uint64_t kRounds = 100'000;
  Ring ping = Ring::create_anonymous(8, 4);
  Ring pong = Ring::create_anonymous(8, 4);
  ping.set_wait(GetParam());
  pong.set_wait(GetParam());
  Children kids;
  const int pid = kids.start(
      [&] {
        std::uint64_t v = 0;
        std::span<std::byte> buf{reinterpret_cast<std::byte*>(&v), sizeof v};
        for (std::uint64_t i = 0; i < kRounds; ++i) {
          if (!ping.receive(buf, 10s) || v != i) return 1;
          if (!pong.send(as_bytes(v), 10s)) return 2;
        }
        return 0;
      },
      60);
  std::uint64_t v = 0;
  std::span<std::byte> buf{reinterpret_cast<std::byte*>(&v), sizeof v};
  for (std::uint64_t i = 0; i < kRounds; ++i) {
    ASSERT_TRUE(ping.send(as_bytes(i), 10s));
    ASSERT_TRUE(pong.receive(buf, 10s)) << "no answer to message " << i;
    ASSERT_EQ(v, i);
  }
  EXPECT_EQ(exit_code(kids.wait(pid)), 0);
}

INSTANTIATE_TEST_SUITE_P(Wait, RingMode,
                         ::testing::Values(Wait::busy_poll, Wait::block, Wait::spin_then_block),
                         [](const ::testing::TestParamInfo<Wait>& p) {
                           switch (p.param) {
                             case Wait::busy_poll:
                               return std::string("busy_poll");
                             case Wait::block:
                               return std::string("block");
                             case Wait::spin_then_block:
                               break;
                           }
                           return std::string("spin_then_block");
                         });

TEST(Ring, AnIdleConsumerSleepsAndOneMessageWakesIt) {
  for (Wait mode : {Wait::block, Wait::spin_then_block}) {
    Ring r = Ring::create_anonymous(8, 16);
    r.set_wait(mode);
    Children kids;
    const int pid = kids.start([&] {
      std::uint64_t v = 0;
      const std::optional<std::size_t> n =
          r.receive({reinterpret_cast<std::byte*>(&v), sizeof v}, 20s);
      return n && *n == sizeof v && v == 77 ? 0 : 1;
    });
    // Asleep in the kernel on a futex of this ring (the not_empty Event): no CPU used.
    ASSERT_TRUE(test::wait_until_blocked(pid, &header_of(r), sizeof(detail::ChannelHeader)));
    const long before = cpu_ticks(pid);
    std::this_thread::sleep_for(200ms);
    EXPECT_LE(cpu_ticks(pid) - before, 2) << "an idle consumer burns CPU";
    ASSERT_TRUE(r.send(as_bytes(77), 1s));
    EXPECT_EQ(exit_code(kids.wait(pid, 10)), 0);
  }
}

TEST(Ring, ASleepingProducerIsWokenWhenTheConsumerMakesRoom) {
  Ring r = Ring::create_anonymous(8, 2);
  r.set_wait(Wait::block);
  ASSERT_TRUE(r.try_send(as_bytes(1)));
  ASSERT_TRUE(r.try_send(as_bytes(2)));
  Children kids;
  const int pid = kids.start([&] { return r.send(as_bytes(3), 20s) ? 0 : 1; });
  ASSERT_TRUE(test::wait_until_blocked(pid, &header_of(r), sizeof(detail::ChannelHeader)));
  EXPECT_TRUE(r.try_receive());
  r.release();
  EXPECT_EQ(exit_code(kids.wait(pid, 10)), 0);
  std::array<std::byte, 8> buf{};
  for (std::uint64_t want : {2u, 3u}) {
    ASSERT_EQ(r.receive(buf, 1s), 8u);
    EXPECT_EQ(first_word(buf), want);
  }
}

// A second live producer is refused; once the first is SIGKILLed (with a slot loaned and
// half-written), the next one to join replaces it and the stream goes on in order.
TEST(Ring, ADeadProducerIsReplacedByTheNextToJoin) {
  const std::string name = unique_name("/", "ring-replace");
  Remover remover(name);
  Ring consumer = Ring::create(name, shape(32, 8), Role::consumer);
  Shared<Flags> flags;
  Children kids;
  const int first = kids.start([&] {
    Ring p = Ring::open(name, Role::producer);
    std::array<std::byte, 32> buf{};
    for (std::uint64_t seq = 0; seq < 5; ++seq) {
      if (!p.send(std::span(buf).first(fill(buf, seq)), 5s)) return 1;
    }
    const std::span<std::byte> s = p.loan(5s);  // loaned, written, never published
    if (s.empty()) return 2;
    std::memset(s.data(), 0xee, s.size());
    flags->step.store(1, std::memory_order_release);
    std::this_thread::sleep_for(60s);
    return 3;
  });
  ASSERT_TRUE(test::wait_for_value(flags->step, 1, 10));
  // Another process may not produce while the first lives, here or in a child.
  expect_errno(
      EBUSY, [&] { Ring::open(name, Role::producer); }, "already has a live producer");
  const int refused = kids.start([&] {
    try {
      Ring p = Ring::open(name, Role::producer);
    } catch (const Error& e) {
      return e.errnum() == EBUSY ? 0 : 1;
    }
    return 2;
  });
  EXPECT_EQ(exit_code(kids.wait(refused, 10)), 0);
  EXPECT_EQ(consumer.stats().producers, 1u);

  kids.kill(first);
  EXPECT_EQ(exit_code(kids.wait(first, 10)), 128 + SIGKILL);
  const int second = kids.start([&] {
    Ring p = Ring::open(name, Role::producer);  // drops the dead one
    std::array<std::byte, 32> buf{};
    for (std::uint64_t seq = 5; seq < 100; ++seq) {
      if (!p.send(std::span(buf).first(fill(buf, seq)), 5s)) return 1;
    }
    return 0;
  });
  for (std::uint64_t seq = 0; seq < 100; ++seq) {
    const Ring::View v = consumer.receive(10s);
    ASSERT_TRUE(v) << "message " << seq;
    ASSERT_TRUE(matches(v.bytes(), seq)) << "message " << seq;
    consumer.release();
  }
  EXPECT_EQ(exit_code(kids.wait(second, 10)), 0);
  const ChannelStats s = consumer.stats();
  EXPECT_EQ(s.peer_deaths, 1u);
  EXPECT_EQ(s.published, 100u);
  EXPECT_EQ(s.producers, 0u);  // the second left when it returned
  EXPECT_FALSE(consumer.try_receive());
  EXPECT_TRUE(consumer.closed());
  EXPECT_EQ(consumer.check(), "");
}

// A consumer that dies holding a message leaves it queued: the next consumer gets it again.
TEST(Ring, ADeadConsumersMessageGoesToTheNextConsumer) {
  const std::string name = unique_name("/", "ring-dead-consumer");
  Remover remover(name);
  Ring producer = Ring::create(name, shape(16, 4), Role::producer);
  for (std::uint64_t seq = 0; seq < 3; ++seq) ASSERT_TRUE(producer.try_send(as_bytes(seq)));
  Children kids;
  const int first = kids.start([&] {
    Ring c = Ring::open(name, Role::consumer);
    const Ring::View v = c.receive(5s);
    if (!v || first_word(v.bytes()) != 0) return 1;
    c.release();
    if (first_word(c.receive(5s).bytes()) != 1) return 2;
    ::raise(SIGKILL);  // holding message 1
    return 3;
  });
  EXPECT_EQ(exit_code(kids.wait(first, 10)), 128 + SIGKILL);
  EXPECT_EQ(producer.peers().size(), 2u);
  EXPECT_FALSE(producer.closed());  // not reaped yet: the dead consumer still counts
  const int second = kids.start([&] {
    Ring c = Ring::open(name, Role::consumer);  // drops the dead one
    for (std::uint64_t seq = 1; seq < 3; ++seq) {
      const Ring::View v = c.receive(5s);
      if (!v || first_word(v.bytes()) != seq) return static_cast<int>(seq);
      c.release();
    }
    return 0;
  });
  EXPECT_EQ(exit_code(kids.wait(second, 10)), 0);
  EXPECT_EQ(producer.stats().peer_deaths, 1u);
  EXPECT_EQ(producer.size(), 0u);
  EXPECT_EQ(producer.check(), "");
}

// A consumer asleep in receive() wakes with an empty View and sees closed() once its only
// producer has gone: killed (found by the reaper) or leaving (telling it at once).
class RingClosed : public ::testing::TestWithParam<bool> {};

TEST_P(RingClosed, AConsumerBlockedInReceiveSeesTheProducerGo) {
  const bool killed = GetParam();
  const std::string name = unique_name("/", "ring-closed");
  Remover remover(name);
  Ring ring = Ring::create(name, shape(16, 8), Role::none);
  Shared<Flags> flags;
  Children kids;
  const int producer = kids.start([&] {
    Ring p = Ring::open(name, Role::producer);
    for (std::uint64_t seq = 0; seq < 3; ++seq) {
      if (!p.send(as_bytes(seq), 5s)) return 1;
    }
    flags->step.store(1, std::memory_order_release);
    if (!test::wait_for_value(flags->step, 2, 20)) return 2;
    if (killed) ::raise(SIGKILL);
    return 0;  // leaves
  });
  ASSERT_TRUE(test::wait_for_value(flags->step, 1, 10));
  const int consumer = kids.start([&] {
    Ring c = Ring::open(name, Role::consumer);
    c.set_wait(Wait::block);
    flags->mapped_at.store(reinterpret_cast<std::uintptr_t>(c.data()));
    for (std::uint64_t seq = 0; seq < 3; ++seq) {
      const Ring::View v = c.receive(5s);
      if (!v || first_word(v.bytes()) != seq) return 1;
      c.release();
    }
    if (c.closed()) return 2;  // the producer still lives
    const auto t0 = Clock::now();
    const Ring::View v = c.receive(20s);
    flags->elapsed_ms.store(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
    if (v) return 3;
    return c.closed() ? 0 : 4;
  });
  // The consumer has taken the three messages and sleeps in the kernel for the fourth, on a
  // futex of the ring as it maps it.
  while (flags->mapped_at.load() == 0) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(test::wait_until_blocked(
      consumer, reinterpret_cast<const void*>(flags->mapped_at.load()), ring.bytes()));
  flags->step.store(2, std::memory_order_release);
  EXPECT_EQ(exit_code(kids.wait(producer, 10)), killed ? 128 + SIGKILL : 0);
  EXPECT_EQ(exit_code(kids.wait(consumer, 15)), 0);
  EXPECT_GE(flags->elapsed_ms.load(), 0);
  EXPECT_LT(flags->elapsed_ms.load(), 10'000) << "woke only on its timeout";
  EXPECT_EQ(ring.stats().peer_deaths, killed ? 1u : 0u);
  EXPECT_EQ(ring.stats().producers, 0u);
  EXPECT_EQ(ring.check(), "");
}

INSTANTIATE_TEST_SUITE_P(Producer, RingClosed, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return std::string(p.param ? "killed" : "leaving");
                         });

// Processes racing to open_or_create one name with different shapes: exactly one creates it
// and every process sees that one's shape (a loser never sees a half-made ring).
TEST(Ring, OpenOrCreateHasExactlyOneCreator) {
  constexpr int kProcs = 6;
  constexpr int kRounds = 25;
  struct Race {
    std::atomic<int> ready{0};
    std::atomic<int> go{0};
    std::atomic<std::uint64_t> seen[kProcs];
    std::atomic<int> failures{0};
  };
  for (int round = 0; round < kRounds; ++round) {
    const std::string name = unique_name("/", "ring-race");
    Remover remover(name);
    Shared<Race> race;
    Children kids;
    for (int i = 0; i < kProcs; ++i) {
      kids.start([&, i] {
        race->ready.fetch_add(1);
        while (race->go.load(std::memory_order_acquire) == 0) {
        }
        try {
          // Large enough that creating it takes a while: the others find it half-made.
          Ring r = Ring::open_or_create(name, shape(64 * (i + 1), 4096), Role::none);
          race->seen[i].store(r.slot_size());
          if (r.check() != "") race->failures.fetch_add(1);
        } catch (const Error& e) {
          std::fprintf(stderr, "process %d: %s\n", i, e.what());
          race->failures.fetch_add(1);
        }
        return 0;
      });
    }
    ASSERT_TRUE(test::wait_for_value(race->ready, kProcs, 20));
    race->go.store(1, std::memory_order_release);
    for (int status : kids.wait_all(20)) EXPECT_EQ(exit_code(status), 0);
    ASSERT_EQ(race->failures.load(), 0) << "round " << round;
    const std::uint64_t winner = race->seen[0].load();
    EXPECT_TRUE(winner % 64 == 0 && winner >= 64 && winner <= 64 * kProcs) << winner;
    for (int i = 1; i < kProcs; ++i) EXPECT_EQ(race->seen[i].load(), winner) << "round " << round;
  }
}

// ---- In an arena ----

class RingArena : public ::testing::Test {
 protected:
  std::string arena_name_ = unique_name("/", "ring-arena");
  Remover remover_{arena_name_};
  Arena arena_ = Arena::create(arena_name_, ArenaConfig{});
};

TEST_F(RingArena, AnotherProcessOpensTheRingByName) {
  // The arena's directory is made with its first name and stays: make it before counting.
  arena_.construct<int>("warm-up", 0);
  ASSERT_TRUE(arena_.destroy<int>("warm-up"));
  const std::uint64_t base_use = arena_.stats().in_use;
  {
    Ring r = Ring::create(arena_, "jobs", shape(32, 16), Role::consumer);
    EXPECT_EQ(r.arena(), &arena_);
    EXPECT_EQ(&r.segment(), &arena_.segment());
    const auto* data = static_cast<const std::byte*>(r.data());
    const auto* base = static_cast<const std::byte*>(arena_.base());
    EXPECT_TRUE(data > base && data + r.bytes() <= base + arena_.size());
    expect_errno(EEXIST, [&] { Ring::create(arena_, "jobs", shape(32, 16), Role::none); });
    expect_errno(ENOENT, [&] { Ring::open(arena_, "missing", Role::none); });
    Children kids;
    const int pid = kids.start([&] {
      Arena a = Arena::open(arena_name_);
      Ring p = Ring::open(a, "jobs", Role::producer);
      if (p.slot_size() != 32 || p.capacity() != 16) return 1;
      std::array<std::byte, 32> buf{};
      for (std::uint64_t seq = 0; seq < 1000; ++seq) {
        if (!p.send(std::span(buf).first(fill(buf, seq)), 5s)) return 2;
      }
      return 0;
    });
    for (std::uint64_t seq = 0; seq < 1000; ++seq) {
      const Ring::View v = r.receive(10s);
      ASSERT_TRUE(v) << seq;
      ASSERT_TRUE(matches(v.bytes(), seq)) << seq;
      r.release();
    }
    EXPECT_EQ(exit_code(kids.wait(pid, 20)), 0);
    // Another kind under the same name is refused, and says what it is.
    expect_errno(
        EINVAL, [&] { Queue::open(arena_, "jobs", Role::none); }, "a ring, not a queue");
    Ring again = Ring::open_or_create(arena_, "jobs", shape(8, 2), Role::none);
    EXPECT_EQ(again.slot_size(), 32u);  // the existing ring's shape wins
  }
  Ring::remove(arena_, "jobs");
  expect_errno(ENOENT, [&] { Ring::open(arena_, "jobs", Role::none); });
  EXPECT_EQ(arena_.stats().in_use, base_use);
  EXPECT_EQ(arena_.check(), "");
}

TEST_F(RingArena, RemoveIsEbusyWhilePeersAreJoined) {
  Ring r = Ring::create(arena_, "busy", shape(16, 4), Role::consumer);
  expect_errno(
      EBUSY, [&] { Ring::remove(arena_, "busy"); }, "peers are still joined");
  Children kids;
  const int pid = kids.start([&] {
    Arena a = Arena::open(arena_name_);
    Ring p = Ring::open(a, "busy", Role::producer);
    ::raise(SIGKILL);  // joined, never leaves
    return 1;
  });
  EXPECT_EQ(exit_code(kids.wait(pid, 10)), 128 + SIGKILL);
  r.leave();
  // The dead producer still counts until someone reaps it.
  expect_errno(EBUSY, [&] { Ring::remove(arena_, "busy"); });
  EXPECT_EQ(r.reap(), 1u);
  EXPECT_NO_THROW(Ring::remove(arena_, "busy"));
  expect_errno(ENOENT, [&] { Ring::remove(arena_, "busy"); });
  EXPECT_EQ(arena_.check(), "");
}

// A message larger than a slot travels as an arena block: the consumer's View points into the
// block (no copy), and release() frees it.
TEST_F(RingArena, LargeMessagesTravelAsArenaBlocks) {
  Ring r = Ring::create(arena_, "large", shape(32, 4), Role::consumer);
  const std::uint64_t base_use = arena_.stats().in_use;
  constexpr int kMessages = 50;
  // From 33 bytes (just too large for a slot) to 40 KiB, small ones in slots between, and
  // last one of 3 MiB that makes the producer grow the arena under the consumer.
  auto size_of = [](int i) -> std::size_t {
    if (i == kMessages - 1) return std::size_t{3} << 20;
    return i % 5 == 4 ? 20 : 33 + static_cast<std::size_t>(i) * 800;
  };
  Children kids;
  const int pid = kids.start([&] {
    Arena a = Arena::open(arena_name_);
    Ring p = Ring::open(a, "large", Role::producer);
    for (int i = 0; i < kMessages; ++i) {
      const std::size_t size = size_of(i);
      std::vector<std::byte> msg(size);
      for (std::size_t k = 0; k < size; ++k) msg[k] = static_cast<std::byte>((k * 7 + i) & 0xff);
      if (!p.send(msg, 5s)) return 1;
    }
    return 0;
  });
  const auto* base = static_cast<const std::byte*>(arena_.base());
  const auto* slots = static_cast<const std::byte*>(r.data());
  for (int i = 0; i < kMessages; ++i) {
    const Ring::View v = r.receive(10s);
    ASSERT_TRUE(v) << i;
    const std::size_t size = size_of(i);
    ASSERT_EQ(v.size, size) << i;
    for (std::size_t k = 0; k < size; ++k) {
      ASSERT_EQ(v.data[k], static_cast<std::byte>((k * 7 + i) & 0xff)) << i << " byte " << k;
    }
    const bool in_ring = v.data >= slots && v.data + v.size <= slots + r.bytes();
    EXPECT_EQ(in_ring, size <= 32) << i;
    EXPECT_TRUE(v.data > base && v.data + v.size <= base + arena_.size()) << i;
    r.release();
  }
  EXPECT_EQ(exit_code(kids.wait(pid, 20)), 0);
  EXPECT_FALSE(r.try_receive());
  EXPECT_EQ(arena_.stats().in_use, base_use) << "a block was not freed";
  EXPECT_EQ(arena_.check(), "");
  EXPECT_EQ(r.check(), "");
}

TEST_F(RingArena, LoanBlockAndPublishBlockCopyNothing) {
  Ring r = Ring::create(arena_, "blocks", shape(16, 4), Role::consumer);
  const std::uint64_t base_use = arena_.stats().in_use;
  Children kids;
  const int pid = kids.start([&] {
    Arena a = Arena::open(arena_name_);
    Ring p = Ring::open(a, "blocks", Role::producer);
    for (std::uint64_t i = 0; i < 20; ++i) {
      const std::span<std::byte> block = p.loan_block(4096 + i);
      if (block.size() != 4096 + i) return 1;
      // The block says where it is; the consumer finds it there.
      const std::uint64_t offset = a.offset_of(block.data());
      std::memcpy(block.data(), &offset, sizeof offset);
      std::memset(block.data() + sizeof offset, static_cast<int>(i), block.size() - sizeof offset);
      if (!p.publish_block(block, 5s)) return 2;
    }
    // A block that cannot be sent stays the caller's.
    const std::span<std::byte> kept = p.loan_block(100);
    for (int i = 0; i < 4; ++i) {
      if (!p.send(as_bytes(0), 5s)) return 3;
    }
    if (p.publish_block(kept, 10ms)) return 4;  // full
    a.deallocate(kept.data());
    return 0;
  });
  for (std::uint64_t i = 0; i < 20; ++i) {
    const Ring::View v = r.receive(10s);
    ASSERT_TRUE(v) << i;
    ASSERT_EQ(v.size, 4096 + i);
    EXPECT_EQ(arena_.offset_of(v.data), first_word(v.bytes())) << "a copy, not the block";
    for (std::size_t k = 8; k < v.size; ++k) ASSERT_EQ(v.data[k], static_cast<std::byte>(i));
    r.release();
  }
  EXPECT_EQ(exit_code(kids.wait(pid, 20)), 0);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(r.receive(1s));
    r.release();
  }
  EXPECT_EQ(arena_.stats().in_use, base_use);
  EXPECT_EQ(arena_.check(), "");
}

}  // namespace
}  // namespace shmkit
