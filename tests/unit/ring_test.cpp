// SPDX-License-Identifier: MIT
// Ring: order and no loss across real processes in each Wait mode, wrap-around, full and
// empty, zero-copy, sleeping consumers woken without a lost wake-up, timeouts, bad input.
#include <gtest/gtest.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "shmkit/ring.hpp"
#include "shmkit/segment.hpp"
#include "test_support.hpp"

namespace shmkit {
namespace {

using namespace std::chrono_literals;
using test::Children;
using test::exit_code;
using test::Remover;
using test::unique_name;

// A message: a sequence number, then (seq % 9) filler bytes equal to the low byte of seq.
std::size_t fill(std::span<std::byte> out, std::uint64_t seq) {
  std::memcpy(out.data(), &seq, sizeof seq);
  const std::size_t extra = seq % 9;
  std::memset(out.data() + sizeof seq, static_cast<int>(seq & 0xff), extra);
  return sizeof seq + extra;
}

// True if `msg` is message `seq` as fill() wrote it.
bool matches(std::span<const std::byte> msg, std::uint64_t seq) {
  if (msg.size() != sizeof seq + seq % 9) return false;
  std::uint64_t got = 0;
  std::memcpy(&got, msg.data(), sizeof got);
  if (got != seq) return false;
  for (std::size_t i = sizeof seq; i < msg.size(); ++i) {
    if (msg[i] != static_cast<std::byte>(seq & 0xff)) return false;
  }
  return true;
}

std::span<const std::byte> as_bytes(const std::uint64_t& v) {
  return {reinterpret_cast<const std::byte*>(&v), sizeof v};
}

template <class F>
void expect_errno(int errnum, F f) {
  try {
    f();
    ADD_FAILURE() << "no Error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), errnum) << e.what();
  }
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

detail::RingHeader& header_of(const Ring& r) {
  return *static_cast<detail::RingHeader*>(r.segment().data());
}

// ---- One process ----

TEST(Ring, CreateThenOpenSeesTheSameRing) {
  const std::string name = unique_name("/", "ring-open");
  Remover remover(name);
  Ring a = Ring::create(name, 100, 16);
  EXPECT_EQ(a.slot_size(), 100u);
  EXPECT_EQ(a.capacity(), 16u);
  EXPECT_EQ(a.wait_mode(), Wait::spin_then_block);
  Ring b = Ring::open(name);
  EXPECT_EQ(b.slot_size(), 100u);
  EXPECT_EQ(b.capacity(), 16u);
  ASSERT_TRUE(a.try_send(as_bytes(42)));
  std::uint64_t got = 0;
  EXPECT_EQ(b.try_receive({reinterpret_cast<std::byte*>(&got), sizeof got}), sizeof got);
  EXPECT_EQ(got, 42u);
  EXPECT_EQ(a.check(), "");
  EXPECT_EQ(b.size(), 0u);
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
  std::uint64_t got = 0;
  std::memcpy(&got, c.data, sizeof got);
  EXPECT_EQ(got, 8u);
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
  expect_errno(EMSGSIZE, [&] { r.send(big, 1ms); });
  ASSERT_FALSE(r.try_loan().empty());
  expect_errno(EMSGSIZE, [&] { r.publish(17); });
  r.publish(16);  // the slot stayed loaned
  std::array<std::byte, 8> small{};
  expect_errno(EMSGSIZE, [&] { (void)r.try_receive(small); });
  EXPECT_EQ(r.size(), 1u);  // still queued
  std::array<std::byte, 16> fits{};
  EXPECT_EQ(r.try_receive(fits), 16u);
}

TEST(Ring, BadSizesAndNamesAreEinval) {
  const std::string name = unique_name("/", "ring-bad");
  Remover remover(name);
  expect_errno(EINVAL, [&] { Ring::create(name, 0, 8); });
  expect_errno(EINVAL, [&] { Ring::create(name, 8, 0); });
  expect_errno(EINVAL, [&] { Ring::create(name, 8, 3); });
  expect_errno(EINVAL, [&] { Ring::create(name, 8, 1000); });
  expect_errno(EINVAL, [&] { Ring::create_anonymous(8, 6); });
  expect_errno(EINVAL, [&] { Ring::create_anonymous(std::size_t{1} << 33, 2); });
  expect_errno(EINVAL, [&] { Ring::create("no-slash/../x", 8, 8); });
  expect_errno(ENOENT, [&] { Ring::open(name); });  // nothing was created
  Ring one = Ring::create(name, 1, 1);  // the smallest ring
  EXPECT_TRUE(one.try_send(std::array<std::byte, 1>{}));
  EXPECT_FALSE(one.try_send(std::array<std::byte, 1>{}));
}

TEST(Ring, ForeignSegmentsAreEinval) {
  const std::string zeros = unique_name("/", "ring-zeros");
  Remover r1(zeros);
  Segment z = Segment::create(zeros, 4096);
  expect_errno(EINVAL, [&] { Ring::open(zeros); });  // all zero: no magic
  std::memset(z.data(), 0xff, z.size());
  expect_errno(EINVAL, [&] { Ring::open(zeros); });

  const std::string tiny = unique_name("/", "ring-tiny");
  Remover r2(tiny);
  Segment t = Segment::create(tiny, 64);
  expect_errno(EINVAL, [&] { Ring::open(tiny); });

  const std::string name = unique_name("/", "ring-tampered");
  Remover r3(name);
  Ring ring = Ring::create(name, 64, 16);
  detail::RingHeader& h = header_of(ring);
  EXPECT_EQ(ring.check(), "");
  auto tamper = [&](auto& field, auto bad) {
    const auto good = field;
    field = bad;
    expect_errno(EINVAL, [&] { Ring::open(name); });
    EXPECT_NE(ring.check(), "");
    field = good;
  };
  tamper(h.version, 2u);
  tamper(h.fingerprint, 0u);
  tamper(h.capacity, std::uint64_t{12});
  tamper(h.capacity, std::uint64_t{1024});  // larger than the segment
  tamper(h.slot_size, std::uint64_t{0});
  tamper(h.stride, std::uint64_t{65});
  EXPECT_NO_THROW(Ring::open(name));
  h.head.store(100, std::memory_order_relaxed);  // INV-RING-1 broken
  EXPECT_NE(ring.check(), "");
  h.head.store(0, std::memory_order_relaxed);
  EXPECT_EQ(ring.check(), "");
}

TEST(Ring, TimeoutsReturnEmptyInEveryMode) {
  for (Wait mode : {Wait::busy_poll, Wait::block, Wait::spin_then_block}) {
    Ring r = Ring::create_anonymous(8, 2);
    r.set_wait(mode);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_FALSE(r.receive(20ms));
    std::array<std::byte, 8> buf{};
    EXPECT_FALSE(r.receive(buf, 5ms));
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 25ms);
    ASSERT_TRUE(r.send(as_bytes(1), 0ms));
    ASSERT_TRUE(r.send(as_bytes(2), 0ms));
    t0 = std::chrono::steady_clock::now();
    EXPECT_FALSE(r.send(as_bytes(3), 20ms));
    EXPECT_TRUE(r.loan(5ms).empty());
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 25ms);
    EXPECT_EQ(r.receive(buf, 0ms), 8u);  // a message ready now: no wait at all
    EXPECT_FALSE(r.loan(1s).empty());
  }
}

// ---- Real processes ----

TEST(Ring, ZeroCopyTheConsumerReadsTheProducersSlot) {
  const std::string name = unique_name("/", "ring-zero-copy");
  Remover remover(name);
  Ring producer = Ring::create(name, 64, 8);
  const auto* base = static_cast<const std::byte*>(producer.segment().data());
  for (int i = 0; i < 20; ++i) {  // goes round the ring more than twice
    const std::span<std::byte> s = producer.try_loan();
    ASSERT_FALSE(s.empty());
    const std::uint64_t offset = static_cast<std::uint64_t>(s.data() - base);
    std::memcpy(s.data(), &offset, sizeof offset);
    producer.publish(sizeof offset);
    // The consumer maps the ring anew (at another address): the message is where the
    // producer wrote it, at the same offset from the base, and was not copied.
    Children kids;
    const int pid = kids.start([&] {
      Ring consumer = Ring::open(name);
      const auto* mine = static_cast<const std::byte*>(consumer.segment().data());
      const Ring::View v = consumer.receive(5s);
      if (!v || v.size != sizeof offset) return 1;
      std::uint64_t written = 0;
      std::memcpy(&written, v.data, sizeof written);
      if (static_cast<std::uint64_t>(v.data - mine) != written) return 2;
      consumer.release();
      return 0;
    });
    ASSERT_EQ(exit_code(kids.wait(pid)), 0) << "message " << i;
  }
  // In one process the view is the loaned slot itself.
  const std::span<std::byte> s = producer.try_loan();
  producer.publish(1);
  EXPECT_EQ(producer.try_receive().data, s.data());
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
                             case Wait::busy_poll: return std::string("busy_poll");
                             case Wait::block: return std::string("block");
                             case Wait::spin_then_block: break;
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
    ASSERT_TRUE(test::wait_until_blocked(pid, &header_of(r), sizeof(detail::RingHeader)));
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
  ASSERT_TRUE(test::wait_until_blocked(pid, &header_of(r), sizeof(detail::RingHeader)));
  EXPECT_TRUE(r.try_receive());
  r.release();
  EXPECT_EQ(exit_code(kids.wait(pid, 10)), 0);
  std::array<std::byte, 8> buf{};
  std::uint64_t got = 0;
  for (std::uint64_t want : {2u, 3u}) {
    ASSERT_EQ(r.receive(buf, 1s), 8u);
    std::memcpy(&got, buf.data(), 8);
    EXPECT_EQ(got, want);
  }
}

}  // namespace
}  // namespace shmkit
