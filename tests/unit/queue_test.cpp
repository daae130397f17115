// SPDX-License-Identifier: MIT
// Queue: every message exactly once and in each producer's order with 1 to 4 producer and
// consumer processes, wrap-around, full and empty, zero-copy, sleeping consumers woken under
// bursts; a producer or consumer SIGKILLed mid-stream (the reaper repairs what it held and
// the others go on); bad shapes, names, foreign bytes, a full peer table, missing roles.
#include "shmkit/channel/queue.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "channel_test_util.hpp"
#include "shmkit/arena.hpp"
#include "shmkit/channel/ring.hpp"
#include "shmkit/segment.hpp"
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

ChannelConfig shape(std::size_t slot_size, std::size_t capacity, std::uint32_t max_peers = 16) {
  return ChannelConfig{slot_size, capacity, max_peers, Overflow::block};
}

// ---- Messages that say who sent them ----

// A message: its producer, its sequence number in that producer's stream, and a check word;
// a padding of (seq % 16) bytes makes the sizes vary.
struct Msg {
  std::uint32_t producer;
  std::uint32_t check;
  std::uint64_t seq;
};
static_assert(sizeof(Msg) == 16);
constexpr std::size_t kSlot = sizeof(Msg) + 16;

std::uint32_t check_of(std::uint32_t producer, std::uint64_t seq) {
  return static_cast<std::uint32_t>((seq * 0x9e3779b97f4a7c15ull) >> 32) ^ (producer * 0x85ebca6bu);
}

std::size_t write_msg(std::span<std::byte> out, std::uint32_t producer, std::uint64_t seq) {
  const Msg m{producer, check_of(producer, seq), seq};
  std::memcpy(out.data(), &m, sizeof m);
  const std::size_t pad = seq % 16;
  std::memset(out.data() + sizeof m, static_cast<int>(seq & 0xff), pad);
  return sizeof m + pad;
}

// The message in `bytes`, or nullopt when it is not one write_msg() wrote.
std::optional<Msg> read_msg(std::span<const std::byte> bytes) {
  Msg m{};
  if (bytes.size() < sizeof m) return std::nullopt;
  std::memcpy(&m, bytes.data(), sizeof m);
  if (m.check != check_of(m.producer, m.seq) || bytes.size() != sizeof m + m.seq % 16) {
    return std::nullopt;
  }
  for (std::size_t i = sizeof m; i < bytes.size(); ++i) {
    if (bytes[i] != static_cast<std::byte>(m.seq & 0xff)) return std::nullopt;
  }
  return m;
}

// ---- Many processes: what they report ----

// What the children of one run report; lives in anonymous shared memory.
struct Tally {
  std::atomic<int> producers_joined{0};
  std::atomic<int> go{0};
  std::atomic<int> errors{0};
  std::atomic<std::uint64_t> received{0};
  std::atomic<std::int64_t> held{-1};  // the message a consumer died holding
  std::atomic<std::uint64_t> sent[8];  // per producer, as far as it got
  char first_error[256];

  void fail(const std::string& what) {
    if (errors.fetch_add(1) == 0)
      std::snprintf(first_error, sizeof first_error, "%s", what.c_str());
  }
};

// The messages of producers 0..P-1, `per` each, counted as they arrive (index p * per + seq).
class Ledger {
 public:
  Ledger(std::uint32_t producers, std::uint64_t per)
      : producers_(producers), per_(per), counts_(producers * per) {}
  std::atomic<std::uint8_t>& at(std::uint32_t producer, std::uint64_t seq) const {
    return counts_[producer * per_ + seq];
  }
  std::uint32_t producers() const { return producers_; }
  std::uint64_t per() const { return per_; }

 private:
  std::uint32_t producers_;
  std::uint64_t per_;
  SharedArray<std::uint8_t> counts_;
};

// Joins `name` as a producer, waits until all `producers` have joined (so that none leaves
// before the last joins: the consumers would see the queue closed), then sends `count`
// messages, alternating loan/publish and send.
int produce(const std::string& name, Tally& tally, std::uint32_t id, std::uint32_t producers,
            std::uint64_t count, Wait mode) {
  Queue q = Queue::open(name, Role::producer);
  q.set_wait(mode);
  tally.producers_joined.fetch_add(1);
  if (!test::wait_for_value(tally.producers_joined, static_cast<int>(producers), 20)) return 10;
  std::array<std::byte, kSlot> buf{};
  for (std::uint64_t seq = 0; seq < count; ++seq) {
    if (seq & 1) {
      const std::span<std::byte> s = q.loan(10s);
      if (s.empty()) return 11;
      q.publish(write_msg(s, id, seq));
    } else if (!q.send(std::span(buf).first(write_msg(buf, id, seq)), 10s)) {
      return 12;
    }
    tally.sent[id].store(seq + 1, std::memory_order_relaxed);
  }
  return 0;
}

// Joins `name` as a consumer and takes messages until the queue is closed, checking each,
// counting it in `ledger`, and checking that each producer's messages come in order.
// Alternates zero-copy views and copies. With `die_after`, it takes that many, then takes one
// more, notes it in tally.held, and dies holding it.
int consume(const std::string& name, Tally& tally, const Ledger& ledger, Wait mode,
            std::int64_t die_after = -1) {
  Queue q = Queue::open(name, Role::consumer);
  q.set_wait(mode);
  std::vector<std::int64_t> last(ledger.producers(), -1);
  std::array<std::byte, kSlot> buf{};
  for (std::int64_t n = 0;; ++n) {
    std::optional<Msg> m;
    if (n == die_after) {
      const Queue::View v = q.receive(10s);
      m = read_msg(v.bytes());
      if (!m) return 20;
      tally.held.store(static_cast<std::int64_t>(m->producer * ledger.per() + m->seq));
      ::raise(SIGKILL);
    }
    if (n & 1) {
      const Queue::View v = q.receive(10s);
      if (!v) return q.closed() ? 0 : 21;
      const auto* begin = static_cast<const std::byte*>(q.data());
      if (v.data < begin || v.data + v.size > begin + q.bytes()) tally.fail("a copy, not a slot");
      m = read_msg(v.bytes());
      q.release();
    } else {
      const std::optional<std::size_t> size = q.receive(buf, 10s);
      if (!size) return q.closed() ? 0 : 22;
      m = read_msg(std::span(buf).first(*size));
    }
    if (!m || m->producer >= ledger.producers() || m->seq >= ledger.per()) {
      tally.fail("a message that was never sent");
      continue;
    }
    if (static_cast<std::int64_t>(m->seq) <= last[m->producer]) {
      tally.fail("producer " + std::to_string(m->producer) + ": " + std::to_string(m->seq) +
                 " after " + std::to_string(last[m->producer]));
    }
    last[m->producer] = static_cast<std::int64_t>(m->seq);
    ledger.at(m->producer, m->seq).fetch_add(1, std::memory_order_relaxed);
    tally.received.fetch_add(1, std::memory_order_relaxed);
  }
}

// Messages of `producer` below `limit` must have arrived once, and none at or above it.
void expect_exactly_once(const Ledger& ledger, std::uint32_t producer, std::uint64_t limit,
                         std::int64_t except = -1) {
  std::uint64_t missing = 0, doubled = 0, extra = 0;
  for (std::uint64_t seq = 0; seq < ledger.per(); ++seq) {
    if (static_cast<std::int64_t>(producer * ledger.per() + seq) == except) {
      EXPECT_EQ(ledger.at(producer, seq).load(), 0u) << "the message lost with its consumer";
      continue;
    }
    const unsigned n = ledger.at(producer, seq).load();
    if (seq < limit) {
      missing += n == 0;
      doubled += n > 1;
    } else {
      extra += n != 0;
    }
  }
  EXPECT_EQ(missing, 0u) << "producer " << producer;
  EXPECT_EQ(doubled, 0u) << "producer " << producer;
  EXPECT_EQ(extra, 0u) << "producer " << producer;
}

// ---- One process ----

TEST(Queue, CreateThenOpenSeesTheSameQueue) {
  const std::string name = unique_name("/", "queue-open");
  Remover remover(name);
  Queue a = Queue::create(name, shape(24, 32, 5), Role::producer);
  Queue b = Queue::open(name, Role::consumer);
  Queue c = Queue::open(name, Role::consumer);
  Queue d = Queue::open(name, Role::producer);  // a Queue has room for many of each
  EXPECT_EQ(b.slot_size(), 24u);
  EXPECT_EQ(b.capacity(), 32u);
  EXPECT_EQ(b.max_peers(), 5u);
  ASSERT_TRUE(a.try_send(as_bytes(1)));
  ASSERT_TRUE(d.try_send(as_bytes(2)));
  EXPECT_EQ(first_word(b.try_receive().bytes()), 1u);
  EXPECT_EQ(first_word(c.try_receive().bytes()), 2u);  // b still holds 1
  b.release();
  c.release();
  const ChannelStats s = a.stats();
  EXPECT_EQ(s.published, 2u);
  EXPECT_EQ(s.producers, 2u);
  EXPECT_EQ(s.consumers, 2u);
  EXPECT_EQ(a.peers().size(), 4u);
  EXPECT_EQ(a.check(), "");
}

TEST(Queue, FullAndEmpty) {
  Queue q = Queue::create_anonymous(shape(8, 8));
  std::array<std::byte, 8> buf{};
  EXPECT_FALSE(q.try_receive());
  EXPECT_FALSE(q.try_receive(buf));
  EXPECT_FALSE(q.receive(buf, 1ms));
  for (std::uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(q.try_send(as_bytes(i))) << i;
  EXPECT_EQ(q.size(), 8u);
  EXPECT_FALSE(q.try_send(as_bytes(8)));
  EXPECT_TRUE(q.try_loan().empty());
  EXPECT_TRUE(q.loan(1ms).empty());
  EXPECT_FALSE(q.send(as_bytes(8), 1ms));
  for (std::uint64_t i = 0; i < 8; ++i) {
    ASSERT_EQ(q.try_receive(buf), 8u);
    EXPECT_EQ(first_word(buf), i);
  }
  EXPECT_FALSE(q.try_receive());
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.check(), "");
}

TEST(Queue, WrapsAroundASmallQueueManyTimes) {
  Queue q = Queue::create_anonymous(shape(kSlot, 8));
  std::uint64_t sent = 0, received = 0;
  for (int round = 0; round < 3000; ++round) {
    const int batch = 1 + round % 8;  // 1..8 messages, so the wrap point moves
    for (int i = 0; i < batch; ++i) {
      const std::span<std::byte> s = q.try_loan();
      ASSERT_FALSE(s.empty());
      q.publish(write_msg(s, 3, sent++));
    }
    for (int i = 0; i < batch; ++i) {
      const Queue::View v = q.try_receive();
      ASSERT_TRUE(v);
      const std::optional<Msg> m = read_msg(v.bytes());
      ASSERT_TRUE(m && m->seq == received) << received;
      ++received;
      q.release();
    }
  }
  EXPECT_FALSE(q.try_receive());
  EXPECT_EQ(q.stats().published, sent);
  EXPECT_EQ(q.check(), "");
}

TEST(Queue, AHandleHoldsOneLoanAndOneMessage) {
  Queue q = Queue::create_anonymous(shape(16, 4));
  const std::span<std::byte> a = q.try_loan();
  const std::span<std::byte> b = q.try_loan();
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a.data(), b.data());  // the same slot, not a second one
  std::memcpy(a.data(), &"one", 4);
  q.publish(4);
  ASSERT_TRUE(q.try_send(as_bytes(2)));
  const Queue::View v = q.try_receive();
  const Queue::View w = q.try_receive();
  ASSERT_TRUE(v && w);
  EXPECT_EQ(v.data, w.data);
  EXPECT_EQ(v.text(), std::string_view("one", 4));
  q.release();
  EXPECT_EQ(first_word(q.try_receive().bytes()), 2u);
  q.release();
  EXPECT_EQ(q.size(), 0u);
}

TEST(Queue, MessagesLargerThanASlotAreRefused) {
  Queue q = Queue::create_anonymous(shape(16, 4));
  std::array<std::byte, 17> big{};
  expect_errno(EMSGSIZE, [&] { (void)q.try_send(big); });
  expect_errno(EMSGSIZE, [&] { q.send(big, 1ms); });
  ASSERT_FALSE(q.try_loan().empty());
  expect_errno(EMSGSIZE, [&] { q.publish(17); });
  q.publish(16);  // the slot stayed loaned
  std::array<std::byte, 8> small{};
  expect_errno(EMSGSIZE, [&] { (void)q.try_receive(small); });
  std::array<std::byte, 16> fits{};
  EXPECT_EQ(q.try_receive(fits), 16u);  // still queued, and still this handle's
}

// A handle that leaves with a slot loaned voids it (consumers skip it); one that leaves with
// a message received frees it (lost, counted).
TEST(Queue, LeavingGivesBackWhatAHandleHeld) {
  const std::string name = unique_name("/", "queue-leave");
  Remover remover(name);
  Queue consumer = Queue::create(name, shape(16, 4), Role::consumer);
  {
    Queue p1 = Queue::open(name, Role::producer);
    Queue p2 = Queue::open(name, Role::producer);
    ASSERT_FALSE(p1.try_loan().empty());  // position 0, never published
    ASSERT_TRUE(p2.try_send(as_bytes(7)));
  }
  EXPECT_EQ(first_word(consumer.try_receive().bytes()), 7u);  // position 0 skipped
  consumer.release();
  EXPECT_FALSE(consumer.try_receive());
  EXPECT_TRUE(consumer.closed());
  {
    Queue p = Queue::open(name, Role::producer);
    Queue c = Queue::open(name, Role::consumer);
    ASSERT_TRUE(p.try_send(as_bytes(8)));
    ASSERT_TRUE(p.try_send(as_bytes(9)));
    EXPECT_EQ(first_word(c.try_receive().bytes()), 8u);
  }  // c leaves holding 8
  EXPECT_EQ(first_word(consumer.try_receive().bytes()), 9u);
  consumer.release();
  const ChannelStats s = consumer.stats();
  EXPECT_EQ(s.lost, 1u);
  EXPECT_EQ(s.peer_deaths, 0u);
  EXPECT_EQ(consumer.check(), "");
  // Every slot is usable again: a full lap goes through.
  Queue p = Queue::open(name, Role::producer);
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(p.try_send(as_bytes(i)));
  for (std::uint64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(first_word(consumer.try_receive().bytes()), i);
    consumer.release();
  }
}

// White-box: the peer table of a queue, to stand in for a peer caught mid-operation.
detail::PeerSlot* peer_slots(const Queue& q) {
  return reinterpret_cast<detail::PeerSlot*>(static_cast<std::byte*>(q.data()) +
                                             detail::kPeersOffset);
}

// A live peer whose compare-and-swap for a position just lost to another still shows that
// position as its claim, for a moment. A handle leaving in that moment must still give back
// what it holds: a loaned slot voided, a received message freed. Otherwise consumers (or,
// a lap later, producers) wait at that position forever.
TEST(Queue, LeavingRepairsEvenWhileALivePeerClaimsTheSamePosition) {
  const std::string name = unique_name("/", "queue-claims");
  Remover remover(name);
  Queue consumer = Queue::create(name, shape(16, 4, 8), Role::consumer);
  Queue p2 = Queue::open(name, Role::producer);
  Queue c2 = Queue::open(name, Role::consumer);
  detail::PeerSlot* peers = peer_slots(consumer);
  auto slot_of = [&](Role role, std::uint64_t produce, std::uint64_t consume) {
    for (std::uint32_t i = 0; i < consumer.max_peers(); ++i) {
      detail::PeerSlot& p = peers[i];
      if (p.owner.load() != 0 && p.role == static_cast<std::uint32_t>(role) &&
          p.produce.load() == produce && p.consume.load() == consume) {
        return &p;
      }
    }
    return static_cast<detail::PeerSlot*>(nullptr);
  };
  {
    Queue p1 = Queue::open(name, Role::producer);
    ASSERT_FALSE(p1.try_loan().empty());  // position 0
    ASSERT_NE(slot_of(Role::producer, 1, 0), nullptr);
    detail::PeerSlot* other = slot_of(Role::producer, 0, 0);  // p2's
    ASSERT_NE(other, nullptr);
    other->produce.store(1);  // p2 lost the race for position 0 just now
  }                           // p1 leaves holding position 0
  for (std::uint32_t i = 0; i < consumer.max_peers(); ++i) peers[i].produce.store(0);
  ASSERT_TRUE(p2.try_send(as_bytes(5)));  // position 1
  const Queue::View v = consumer.receive(1s);
  ASSERT_TRUE(v) << "position 0 was never voided";
  EXPECT_EQ(first_word(v.bytes()), 5u);
  consumer.release();

  ASSERT_TRUE(p2.try_send(as_bytes(6)));  // position 2
  {
    Queue c1 = Queue::open(name, Role::consumer);
    ASSERT_EQ(first_word(c1.try_receive().bytes()), 6u);
    detail::PeerSlot* other = slot_of(Role::consumer, 0, 0);
    ASSERT_NE(other, nullptr);
    other->consume.store(3);  // a consumer that lost the race for position 2 just now
  }                           // c1 leaves holding position 2
  for (std::uint32_t i = 0; i < consumer.max_peers(); ++i) peers[i].consume.store(0);
  EXPECT_EQ(consumer.stats().lost, 1u);
  // The next lap must find position 2's slot free: 4 more messages fit.
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(p2.send(as_bytes(10 + i), 1s)) << i;
  for (std::uint64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(first_word(consumer.receive(1s).bytes()), 10 + i);
    consumer.release();
  }
  EXPECT_EQ(consumer.check(), "");
}

// White-box: a process that dies holding the peer table's lock in the middle of changing the
// counts. The next to take the lock recounts them from the table.
TEST(Queue, ADeadHolderOfThePeerLockIsSurvived) {
  const std::string name = unique_name("/", "queue-peers-lock");
  Remover remover(name);
  Queue q = Queue::create(name, shape(16, 4), Role::producer);
  Children kids;
  const int pid = kids.start([&] {
    Queue c = Queue::open(name, Role::consumer);
    auto* h = static_cast<detail::ChannelHeader*>(c.data());
    if (h->peers_lock.acquire() != LockStatus::acquired) return 1;
    h->consumers.fetch_add(5);  // half-way through something
    h->producers.fetch_sub(1);
    ::raise(SIGKILL);
    return 2;
  });
  EXPECT_EQ(exit_code(kids.wait(pid, 10)), 128 + SIGKILL);
  EXPECT_NE(q.check(), "");  // the counts disagree with the table now
  EXPECT_EQ(q.reap(), 1u);   // takes the lock (owner died), recounts, drops the dead consumer
  ChannelStats s = q.stats();
  EXPECT_EQ(s.producers, 1u);
  EXPECT_EQ(s.consumers, 0u);
  Queue c = Queue::open(name, Role::consumer);
  s = q.stats();
  EXPECT_EQ(s.consumers, 1u);
  EXPECT_EQ(q.check(), "");
  ASSERT_TRUE(q.try_send(as_bytes(1)));
  EXPECT_EQ(first_word(c.try_receive().bytes()), 1u);
}

TEST(Queue, BadShapesNamesAndBytesAreRefused) {
  const std::string name = unique_name("/", "queue-bad");
  Remover remover(name);
  expect_errno(
      EINVAL, [&] { Queue::create(name, shape(0, 8), Role::producer); }, "slot size");
  expect_errno(
      EINVAL, [&] { Queue::create(name, shape(8, 0), Role::producer); }, "power of two");
  expect_errno(
      EINVAL, [&] { Queue::create(name, shape(8, 6), Role::producer); }, "power of two");
  expect_errno(
      EINVAL, [&] { Queue::create(name, shape(8, 8, 0), Role::producer); }, "max_peers");
  expect_errno(EINVAL, [&] { Queue::create_anonymous(shape(8, 3)); });
  expect_errno(EINVAL, [&] { Queue::create("no-slash", shape(8, 8), Role::producer); });
  expect_errno(EINVAL, [&] { Queue::create("/a/b", shape(8, 8), Role::producer); });
  expect_errno(EINVAL, [&] { Queue::create(std::string("/nul\0x", 6), shape(8, 8), Role::none); });
  expect_errno(EINVAL, [&] { Queue::open("", Role::consumer); });
  expect_errno(
      ENOENT, [&] { Queue::open(name, Role::consumer); }, name);

  // A segment of random bytes, one of zeros, another kind of channel: foreign, EINVAL.
  const std::string noise = unique_name("/", "queue-noise");
  Remover r2(noise);
  Segment seg = Segment::create(noise, 1 << 16);
  std::mt19937_64 rng(42);
  for (std::size_t i = 0; i < seg.size() / 8; ++i)
    static_cast<std::uint64_t*>(seg.data())[i] = rng();
  expect_errno(
      EINVAL, [&] { Queue::open(noise, Role::consumer); }, "not a channel");
  // Random bytes behind a valid magic: still refused, whatever the fields say.
  for (int i = 0; i < 200; ++i) {
    for (std::size_t k = 0; k < 64; ++k) static_cast<std::uint64_t*>(seg.data())[k] = rng();
    static_cast<std::atomic<std::uint64_t>*>(seg.data())->store(detail::kChannelMagic);
    expect_errno(EINVAL, [&] { Queue::open(noise, Role::consumer); });
  }
  const std::string ring = unique_name("/", "queue-ring");
  Remover r3(ring);
  Ring r = Ring::create(ring, shape(8, 8), Role::none);
  expect_errno(
      EINVAL, [&] { Queue::open(ring, Role::consumer); }, "a ring, not a queue");
}

TEST(Queue, AFullPeerTableIsEbusyUntilAPeerGoes) {
  const std::string name = unique_name("/", "queue-peers");
  Remover remover(name);
  Queue a = Queue::create(name, shape(8, 8, 3), Role::producer);
  Queue b = Queue::open(name, Role::consumer);
  Children kids;
  const int pid = kids.start([&] {
    Queue c = Queue::open(name, Role::consumer);
    ::raise(SIGKILL);  // joined, never leaves
    return 1;
  });
  EXPECT_EQ(exit_code(kids.wait(pid, 10)), 128 + SIGKILL);
  EXPECT_EQ(a.peers().size(), 3u);
  Queue d = Queue::open(name, Role::none);  // no peer slot needed
  // The dead child's slot is reaped on the way: the fourth joins.
  EXPECT_NO_THROW(d.join(Role::producer));
  EXPECT_EQ(a.stats().peer_deaths, 1u);
  expect_errno(
      EBUSY, [&] { Queue::open(name, Role::consumer); }, "all 3 peer slots");
  Queue e = Queue::open(name, Role::none);
  expect_errno(EBUSY, [&] { e.join(Role::producer); });
  b.leave();
  EXPECT_NO_THROW(e.join(Role::consumer));
  EXPECT_EQ(a.stats().consumers, 1u);
  EXPECT_EQ(a.check(), "");
}

TEST(Queue, AHandleWithoutTheRoleIsEperm) {
  const std::string name = unique_name("/", "queue-roles");
  Remover remover(name);
  Queue consumer = Queue::create(name, shape(16, 4), Role::consumer);
  Queue producer = Queue::open(name, Role::producer);
  Queue watcher = Queue::open(name, Role::none);
  expect_errno(
      EPERM, [&] { (void)consumer.try_loan(); }, "did not join");
  expect_errno(EPERM, [&] { (void)consumer.loan(1ms); });
  expect_errno(EPERM, [&] { (void)consumer.try_send(as_bytes(1)); });
  expect_errno(EPERM, [&] { (void)producer.try_receive(); });
  expect_errno(EPERM, [&] { (void)watcher.try_loan(); });
  expect_errno(EPERM, [&] { (void)watcher.receive(1ms); });
  expect_errno(
      EPERM, [&] { (void)Queue().try_loan(); }, "no channel");
  expect_errno(EINVAL, [&] { watcher.join(static_cast<Role>(4)); });
  EXPECT_EQ(producer.stats().published, 0u);
}

// ---- Many processes ----

struct Mix {
  std::uint32_t producers;
  std::uint32_t consumers;
};

class QueueMix : public ::testing::TestWithParam<Mix> {};

// A million messages in all from P producers to C consumers: each arrives exactly once, and
// each consumer sees each producer's messages in the order they were sent.
TEST_P(QueueMix, EveryMessageArrivesExactlyOnceInProducerOrder) {
  const auto [producers, consumers] = GetParam();
  const std::uint64_t total = 1'000'000;
  const std::uint64_t per = total / producers;
  const std::string name = unique_name("/", "queue-mix");
  Remover remover(name);
  Queue q = Queue::create(name, shape(kSlot, 1024), Role::none);
  Shared<Tally> tally;
  Ledger ledger(producers, per);
  Children kids;
  std::vector<int> pids;
  for (std::uint32_t c = 0; c < consumers; ++c) {
    pids.push_back(
        kids.start([&] { return consume(name, *tally, ledger, Wait::spin_then_block); }, 120));
  }
  for (std::uint32_t p = 0; p < producers; ++p) {
    pids.push_back(kids.start(
        [&, p] { return produce(name, *tally, p, producers, per, Wait::spin_then_block); }, 120));
  }
  for (int pid : pids) EXPECT_EQ(exit_code(kids.wait(pid, 120)), 0) << "child " << pid;
  EXPECT_EQ(tally->errors.load(), 0) << tally->first_error;
  EXPECT_EQ(tally->received.load(), per * producers);
  for (std::uint32_t p = 0; p < producers; ++p) expect_exactly_once(ledger, p, per);
  const ChannelStats s = q.stats();
  EXPECT_EQ(s.published, per * producers);
  EXPECT_EQ(s.lost, 0u);
  EXPECT_EQ(s.peer_deaths, 0u);
  EXPECT_EQ(s.producers + s.consumers, 0u);
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.check(), "");
}

INSTANTIATE_TEST_SUITE_P(Processes, QueueMix,
                         ::testing::Values(Mix{1, 1}, Mix{2, 2}, Mix{4, 4}, Mix{1, 4}, Mix{4, 1}),
                         [](const ::testing::TestParamInfo<Mix>& p) {
                           return std::to_string(p.param.producers) + "x" +
                                  std::to_string(p.param.consumers);
                         });

TEST(Queue, ZeroCopyTheConsumerReadsTheProducersSlot) {
  const std::string name = unique_name("/", "queue-zero-copy");
  Remover remover(name);
  Queue producer = Queue::create(name, shape(64, 8), Role::producer);
  const auto* base = static_cast<const std::byte*>(producer.data());
  Children kids;
  const int pid = kids.start([&] {
    Queue consumer = Queue::open(name, Role::consumer);  // mapped at another address
    const auto* mine = static_cast<const std::byte*>(consumer.data());
    for (int i = 0; i < 20; ++i) {
      const Queue::View v = consumer.receive(5s);
      if (!v || v.size != 8) return 1;
      if (v.data < mine || v.data + v.size > mine + consumer.bytes()) return 2;
      if (static_cast<std::uint64_t>(v.data - mine) != first_word(v.bytes())) return 3;
      consumer.release();
    }
    return 0;
  });
  for (int i = 0; i < 20; ++i) {  // goes round the queue more than twice
    const std::span<std::byte> s = producer.loan(5s);
    ASSERT_FALSE(s.empty());
    const std::uint64_t offset = static_cast<std::uint64_t>(s.data() - base);
    std::memcpy(s.data(), &offset, sizeof offset);
    producer.publish(sizeof offset);
  }
  EXPECT_EQ(exit_code(kids.wait(pid, 10)), 0);
}

// Consumers that sleep at once (Wait::block) and a producer that sends short bursts with
// pauses between, so that nearly every message finds every consumer asleep or falling
// asleep. A lost wake-up would leave a message queued until a consumer's 100 ms reaping
// slice ends: the waits are counted, and a burst left that long more than a handful of
// times (a loaded machine may delay a few) is a lost wake-up, not scheduling.
TEST(Queue, SleepingConsumersAreWokenForEveryBurst) {
  constexpr int kBursts = 4000;
  constexpr std::uint32_t kConsumers = 2;
  const std::string name = unique_name("/", "queue-bursts");
  Remover remover(name);
  Queue q = Queue::create(name, shape(kSlot, 16), Role::producer);
  q.set_wait(Wait::block);
  Shared<Tally> tally;
  Ledger ledger(1, std::uint64_t{kBursts} * 3);
  Children kids;
  for (std::uint32_t c = 0; c < kConsumers; ++c) {
    kids.start([&] { return consume(name, *tally, ledger, Wait::block); }, 120);
  }
  const auto joined_by = Clock::now() + 20s;
  while (q.stats().consumers != kConsumers) {
    ASSERT_LT(Clock::now(), joined_by) << "the consumers never joined";
    std::this_thread::sleep_for(1ms);
  }
  std::mt19937 rng(7);
  std::uint64_t seq = 0;
  int slow = 0;
  std::array<std::byte, kSlot> buf{};
  for (int burst = 0; burst < kBursts; ++burst) {
    const int n = 1 + static_cast<int>(rng() % 3);
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(q.send(std::span(buf).first(write_msg(buf, 0, seq++)), 10s));
    }
    const auto t0 = Clock::now();
    while (tally->received.load() != seq) {
      ASSERT_LT(Clock::now() - t0, 10s) << "burst " << burst << " never taken";
      std::this_thread::yield();
    }
    if (Clock::now() - t0 >= 90ms) ++slow;
    if (rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
  }
  q.leave();
  for (int status : kids.wait_all(20)) EXPECT_EQ(exit_code(status), 0);
  EXPECT_EQ(tally->errors.load(), 0) << tally->first_error;
  EXPECT_LE(slow, std::max(5, kBursts / 200)) << "bursts woken only by the reaping slice";
  expect_exactly_once(ledger, 0, seq);
}

// ---- Deaths ----

// Producer 0 dies between loan() and publish() after `kSent` messages; the other producers
// and the consumers go on: every message the live producers sent arrives exactly once, the
// dead one's first kSent do too, and its half-written slot is skipped.
TEST(Queue, AProducerKilledBetweenLoanAndPublishCostsNothingElse) {
  constexpr std::uint32_t kProducers = 3, kConsumers = 2;
  constexpr std::uint64_t kPer = 50'000, kSent = 5'000;
  const std::string name = unique_name("/", "queue-dead-producer");
  Remover remover(name);
  Queue q = Queue::create(name, shape(kSlot, 64), Role::none);
  Shared<Tally> tally;
  Ledger ledger(kProducers, kPer);
  Children kids;
  std::vector<int> pids;
  for (std::uint32_t c = 0; c < kConsumers; ++c) {
    pids.push_back(
        kids.start([&] { return consume(name, *tally, ledger, Wait::spin_then_block); }));
  }
  const int victim = kids.start([&] {
    Queue p = Queue::open(name, Role::producer);
    tally->producers_joined.fetch_add(1);
    // Dying before the others joined would close the queue for the consumers.
    if (!test::wait_for_value(tally->producers_joined, kProducers, 20)) return 4;
    std::array<std::byte, kSlot> buf{};
    for (std::uint64_t seq = 0; seq < kSent; ++seq) {
      if (!p.send(std::span(buf).first(write_msg(buf, 0, seq)), 10s)) return 1;
    }
    const std::span<std::byte> s = p.loan(10s);
    if (s.empty()) return 2;
    write_msg(s, 0, kSent);  // written, never published
    ::raise(SIGKILL);
    return 3;
  });
  for (std::uint32_t p = 1; p < kProducers; ++p) {
    pids.push_back(kids.start(
        [&, p] { return produce(name, *tally, p, kProducers, kPer, Wait::spin_then_block); }));
  }
  EXPECT_EQ(exit_code(kids.wait(victim, 30)), 128 + SIGKILL);
  for (int pid : pids) EXPECT_EQ(exit_code(kids.wait(pid, 60)), 0) << "child " << pid;
  EXPECT_EQ(tally->errors.load(), 0) << tally->first_error;
  expect_exactly_once(ledger, 0, kSent);
  for (std::uint32_t p = 1; p < kProducers; ++p) expect_exactly_once(ledger, p, kPer);
  const ChannelStats s = q.stats();
  EXPECT_EQ(s.peer_deaths, 1u);
  EXPECT_EQ(s.lost, 0u);
  EXPECT_EQ(s.published, kSent + 1 + (kProducers - 1) * kPer);  // the void slot counts
  EXPECT_EQ(s.producers + s.consumers, 0u);
  EXPECT_EQ(q.check(), "");
}

// A producer killed from outside at a random moment, several times over: whatever it had
// published arrives exactly once (a prefix of its stream), the rest never, and the others'
// messages all arrive.
TEST(Queue, AProducerKilledAtARandomMomentCostsNothingElse) {
  constexpr std::uint32_t kProducers = 2, kConsumers = 2;
  constexpr std::uint64_t kPer = 1'000'000;  // the victim's budget; it never gets there
  constexpr int kRounds = 6;
  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  for (int round = 0; round < kRounds; ++round) {
    const std::string name = unique_name("/", "queue-killed");
    Remover remover(name);
    Queue q = Queue::create(name, shape(kSlot, 32), Role::none);
    Shared<Tally> tally;
    Ledger ledger(kProducers, kPer);
    Children kids;
    std::vector<int> pids;
    for (std::uint32_t c = 0; c < kConsumers; ++c) {
      pids.push_back(
          kids.start([&] { return consume(name, *tally, ledger, Wait::spin_then_block); }));
    }
    const std::uint64_t steady = 20'000;
    pids.push_back(
        kids.start([&] { return produce(name, *tally, 1, kProducers, steady, Wait::block); }));
    const int victim = kids.start(
        [&] { return produce(name, *tally, 0, kProducers, kPer, Wait::spin_then_block); });
    const std::uint64_t at = 500 + rng() % 10'000;
    const auto t0 = Clock::now();
    while (tally->sent[0].load() < at && Clock::now() - t0 < 20s) std::this_thread::yield();
    kids.kill(victim);
    EXPECT_EQ(exit_code(kids.wait(victim, 10)), 128 + SIGKILL);
    for (int pid : pids) EXPECT_EQ(exit_code(kids.wait(pid, 60)), 0) << "round " << round;
    EXPECT_EQ(tally->errors.load(), 0) << tally->first_error;
    std::uint64_t prefix = 0;
    while (prefix < kPer && ledger.at(0, prefix).load() != 0) ++prefix;
    EXPECT_GE(prefix, at);
    expect_exactly_once(ledger, 0, prefix);
    expect_exactly_once(ledger, 1, steady);
    const ChannelStats s = q.stats();
    EXPECT_EQ(s.peer_deaths, 1u) << "round " << round;
    EXPECT_EQ(s.lost, 0u);
    EXPECT_EQ(q.check(), "");
  }
}

// A consumer killed while it holds a message: the producers are not blocked by its slot for
// long (a reaper frees it, counting the message lost), and the other consumer takes every
// other message exactly once.
TEST(Queue, AConsumerKilledHoldingAMessageLosesOnlyThatMessage) {
  constexpr std::uint32_t kProducers = 2;
  constexpr std::uint64_t kPer = 30'000;
  const std::string name = unique_name("/", "queue-dead-consumer");
  Remover remover(name);
  // The parent joins as a consumer that never takes a message: between the victim's death and
  // the other consumer's start, producers waiting for room must not see the queue closed.
  Queue q = Queue::create(name, shape(kSlot, 16), Role::consumer);
  Shared<Tally> tally;
  Ledger ledger(kProducers, kPer);
  Children kids;
  // The victim consumes alone until it dies, so that it surely reaches its 2000th message
  // (with the other consumer running, the producers could finish first); the producers then
  // fill the queue and wait, and the other consumer, started after the death, drains it.
  const int victim = kids.start([&] { return consume(name, *tally, ledger, Wait::block, 2'000); });
  std::vector<int> pids;
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    pids.push_back(kids.start(
        [&, p] { return produce(name, *tally, p, kProducers, kPer, Wait::spin_then_block); }));
  }
  EXPECT_EQ(exit_code(kids.wait(victim, 30)), 128 + SIGKILL);
  pids.push_back(kids.start([&] { return consume(name, *tally, ledger, Wait::spin_then_block); }));
  for (int pid : pids) EXPECT_EQ(exit_code(kids.wait(pid, 60)), 0) << "child " << pid;
  EXPECT_EQ(tally->errors.load(), 0) << tally->first_error;
  const std::int64_t held = tally->held.load();
  ASSERT_GE(held, 0);
  for (std::uint32_t p = 0; p < kProducers; ++p) expect_exactly_once(ledger, p, kPer, held);
  (void)q.reap();
  const ChannelStats s = q.stats();
  EXPECT_EQ(s.lost, 1u);
  EXPECT_EQ(s.peer_deaths, 1u);
  EXPECT_EQ(s.published, kProducers * kPer);
  EXPECT_EQ(q.check(), "");
}

// A producer dies with position 0 loaned; the consumer only polls (try_receive never waits,
// never reaps). A producer blocked for room is the one that finds the dead producer and
// voids its slot, so the polling consumer gets past it.
TEST(Queue, ABlockedProducerReapsForAPollingConsumer) {
  const std::string name = unique_name("/", "queue-polling");
  Remover remover(name);
  Queue producer = Queue::create(name, shape(16, 4), Role::producer);
  Children kids;
  const int dead = kids.start([&] {
    Queue p = Queue::open(name, Role::producer);
    if (p.try_loan().empty()) return 1;  // position 0, never published
    ::raise(SIGKILL);
    return 2;
  });
  EXPECT_EQ(exit_code(kids.wait(dead, 10)), 128 + SIGKILL);
  for (std::uint64_t i = 1; i < 4; ++i) ASSERT_TRUE(producer.try_send(as_bytes(i)));
  const int poller = kids.start([&] {
    Queue c = Queue::open(name, Role::consumer);
    const auto give_up = Clock::now() + 10s;
    for (std::uint64_t want = 1; want < 5;) {
      if (Clock::now() > give_up) return 10 + static_cast<int>(want);
      const Queue::View v = c.try_receive();
      if (!v) {
        std::this_thread::sleep_for(1ms);
        continue;
      }
      if (first_word(v.bytes()) != want) return 20;
      c.release();
      ++want;
    }
    return 0;
  });
  EXPECT_TRUE(producer.send(as_bytes(4), 10s)) << "the dead producer's slot was never voided";
  EXPECT_EQ(exit_code(kids.wait(poller, 15)), 0);
  EXPECT_EQ(producer.stats().peer_deaths, 1u);
}

// In an arena, a message larger than a slot is a block; a consumer that dies holding one
// leaves it to the reaper, which frees it: no leak.
TEST(Queue, ADeadConsumersArenaBlockIsFreed) {
  const std::string arena_name = unique_name("/", "queue-arena");
  Remover remover(arena_name);
  Arena arena = Arena::create(arena_name, ArenaConfig{});
  Queue q = Queue::create(arena, "jobs", shape(16, 8), Role::producer);
  const std::uint64_t base_use = arena.stats().in_use;
  std::vector<std::byte> big(10'000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i % 251);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(q.send(big, 1s));
  EXPECT_GT(arena.stats().in_use, base_use);
  Children kids;
  const int pid = kids.start([&] {
    Arena a = Arena::open(arena_name);
    Queue c = Queue::open(a, "jobs", Role::consumer);
    const Queue::View v = c.receive(5s);
    if (!v || v.size != 10'000) return 1;
    if (std::memcmp(v.data, big.data(), big.size()) != 0) return 2;
    c.release();  // freed by this process
    if (!c.receive(5s)) return 3;
    ::raise(SIGKILL);  // holding the second
    return 4;
  });
  EXPECT_EQ(exit_code(kids.wait(pid, 10)), 128 + SIGKILL);
  EXPECT_EQ(q.reap(), 1u);
  EXPECT_EQ(q.stats().lost, 1u);
  Queue c = Queue::open(arena, "jobs", Role::consumer);
  const Queue::View v = c.try_receive();
  ASSERT_TRUE(v);
  EXPECT_EQ(v.size, big.size());
  EXPECT_EQ(std::memcmp(v.data, big.data(), big.size()), 0);
  c.release();
  EXPECT_FALSE(c.try_receive());
  EXPECT_EQ(arena.stats().in_use, base_use) << "a block was not freed";
  EXPECT_EQ(arena.check(), "");
  EXPECT_EQ(q.check(), "");
}

}  // namespace
}  // namespace shmkit
