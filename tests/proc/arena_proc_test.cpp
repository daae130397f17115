// SPDX-License-Identifier: MIT
// Arenas between real processes: concurrent allocation with blocks freed by other processes,
// create-or-join races of unrelated processes (arena_helper, fork+exec), a creator killed in
// its initialiser, root and named-object races, autogrow under load and its limit, the users
// limit with dead users recovered, and processes SIGKILLed in the middle of allocating.
// Children report through their exit status (gtest assertions in a child are lost) and meet
// at flags in an anonymous segment they inherit; every wait is bounded.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "arena/layout.hpp"
#include "shmkit/arena.hpp"
#include "shmkit/error.hpp"
#include "shmkit/segment.hpp"
#include "test_support.hpp"

// Shared with arena_helper.cpp, which declares the same names: keep them identical.
namespace shmkit_arena_helper {

enum Word : int { kReady = 0, kGo = 1, kInits = 2, kInInit = 3, kWords = 16 };

struct InitMark {
  std::uint64_t value;
  std::uint32_t runs;
  std::uint32_t creator;
};
inline constexpr std::uint64_t kInitValue = 0x5eed5eed5eed5eedULL;

inline shmkit::ArenaConfig race_config() {
  shmkit::ArenaConfig c;
  c.size = 1 << 20;
  c.max_size = 64 << 20;
  return c;
}

}  // namespace shmkit_arena_helper

namespace shmkit {
namespace {

using namespace std::chrono_literals;
using shmkit_arena_helper::InitMark;
using test::Children;
using test::exit_code;
using test::Remover;
using test::unique_name;
using test::wait_for_value;

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * 1024;
constexpr int kRan = 10;     // helper / child: ran init, or won
constexpr int kJoined = 11;  // helper / child: joined, or lost
constexpr int kKilled = 128 + SIGKILL;
const std::string kHelper = SHMKIT_ARENA_HELPER;

// Never leave a core file behind for a child that is meant to die.
void no_core_dump() {
  const rlimit none{0, 0};
  ::setrlimit(RLIMIT_CORE, &none);
}

// Waits (bounded) until `pred` holds.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 30s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(100us);
  }
  return true;
}

// ---- Blocks that carry their own pattern ----
// Word 0 holds the size, word 1 a tag made from the block's offset: any process can check a
// block it was handed, and two blocks that overlap spoil each other's pattern.

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}

// `light` writes the first 16 and the last 8 bytes only (processes meant to spend their time
// in the allocator); stamped(..., true) checks those.
void stamp(void* p, std::size_t size, std::uint64_t offset, bool light = false) {
  auto* b = static_cast<unsigned char*>(p);
  const std::uint64_t n = size;
  const std::uint64_t tag = mix(offset ^ (n << 40));
  std::memcpy(b, &n, 8);
  std::memcpy(b + 8, &tag, 8);
  if (light) {
    if (size >= 24) std::memcpy(b + size - 8, &tag, 8);
    return;
  }
  std::size_t i = 16;
  for (; i + 8 <= size; i += 8) {
    const std::uint64_t v = tag + i;
    std::memcpy(b + i, &v, 8);
  }
  for (; i < size; ++i) b[i] = static_cast<unsigned char>(tag + i);
}

// The size stamped in the block at `offset` if its pattern is intact, else 0.
std::size_t stamped(const void* p, std::uint64_t offset, bool light = false) {
  const auto* b = static_cast<const unsigned char*>(p);
  std::uint64_t n = 0, tag = 0;
  std::memcpy(&n, b, 8);
  std::memcpy(&tag, b + 8, 8);
  if (n < 16 || n > 64 * kMiB || tag != mix(offset ^ (n << 40))) return 0;
  if (light) {
    std::uint64_t last = tag;
    if (n >= 24) std::memcpy(&last, b + n - 8, 8);
    return last == tag ? static_cast<std::size_t>(n) : 0;
  }
  std::size_t i = 16;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t v = 0;
    std::memcpy(&v, b + i, 8);
    if (v != tag + i) return 0;
  }
  for (; i < n; ++i) {
    if (b[i] != static_cast<unsigned char>(tag + i)) return 0;
  }
  return static_cast<std::size_t>(n);
}

// 16 B .. 64 KiB, about evenly spread over the powers of two, one in ten large.
std::size_t random_size(std::mt19937_64& rng) {
  if (rng() % 10 == 0) return arena::kMaxSmall + 1 + rng() % (64 * kKiB - arena::kMaxSmall);
  const std::size_t low = std::size_t{16} << (rng() % 11);
  return std::min<std::size_t>(low + rng() % low, arena::kMaxSmall);
}

// What a block of `size` bytes counts in stats().in_use: its class, or what was asked.
std::uint64_t charged(std::size_t size) {
  if (size > arena::kMaxSmall) return size;
  for (std::uint32_t c : arena::kClassSizes) {
    if (c >= std::max<std::size_t>(size, 1)) return c;
  }
  return size;
}

// ---- A second opinion on what is in use ----
// Reads the span headers and walks their free lists (the local one, and the remote one that
// other processes push freed blocks on), so a failing in_use check can say whether blocks were
// lost or only freed remotely and not yet collected. Only while nobody allocates.

struct Use {
  std::uint64_t in_use = 0;          // bytes in blocks on no free list, plus large blocks
  std::uint64_t remote_pending = 0;  // bytes freed by other heaps, not yet collected
};

Use count_use(const Arena& a) {
  const auto* base = static_cast<const std::byte*>(a.base());
  const auto& h = *reinterpret_cast<const arena::ArenaHeader*>(base);
  const std::uint64_t frames = h.size.load(std::memory_order_acquire) / arena::kPageSize;
  Use u;
  const auto list_length = [&](std::uint64_t head, std::uint64_t lo, std::uint64_t hi,
                               std::uint32_t cap) {
    std::uint32_t n = 0;
    for (std::uint64_t off = head & ((std::uint64_t{1} << 48) - 1); off != 0 && n <= cap; ++n) {
      if (off < lo || off >= hi) break;
      std::uint64_t next = 0;
      std::memcpy(&next, base + off, 8);
      off = next;
    }
    return n;
  };
  for (std::uint64_t f = h.meta_pages; f < frames; ++f) {
    const auto kind = static_cast<arena::PageKind>(std::to_integer<std::uint8_t>(base[h.page_map_offset + f]));
    const std::byte* frame = base + f * arena::kPageSize;
    if (kind == arena::PageKind::span) {
      const auto* s = reinterpret_cast<const arena::SpanHeader*>(frame);
      const std::uint64_t lo = f * arena::kPageSize + arena::kSpanHeaderSize;
      const std::uint64_t hi = lo + std::uint64_t{s->capacity} * s->block_size;
      const std::uint32_t local = list_length(s->local_free, lo, hi, s->capacity);
      const std::uint32_t remote =
          list_length(s->remote_free.load(std::memory_order_acquire), lo, hi, s->capacity);
      const std::uint32_t bumped = std::min(s->bumped.load(), s->capacity);
      const std::uint32_t free_blocks = std::min(local + remote, bumped);
      u.in_use += std::uint64_t{bumped - free_blocks} * s->block_size;
      u.remote_pending += std::uint64_t{remote} * s->block_size;
    } else if (kind == arena::PageKind::large_head) {
      u.in_use += reinterpret_cast<const arena::LargeHeader*>(frame)->requested;
    }
  }
  return u;
}

std::string explain_use(Arena& a, std::uint64_t baseline) {
  const Use u = count_use(a);
  std::ostringstream out;
  out << "stats().in_use " << a.stats().in_use << ", baseline " << baseline
      << "; counting the free lists instead: " << u.in_use << " bytes in use, of which "
      << u.remote_pending
      << " bytes sit on remote-free lists (freed by another process, not yet collected by the "
         "span's heap, still counted by stats())";
  return out.str();
}

// Whose span check() complained about ("page N: ..."): its heap, that heap's owner thread and
// the process of the user it belongs to, alive or not.
std::string whose_span(const Arena& a, const std::string& problem) {
  unsigned frame = 0;
  if (std::sscanf(problem.c_str(), "page %u:", &frame) != 1) return "";
  const auto* base = static_cast<const std::byte*>(a.base());
  const auto& h = *reinterpret_cast<const arena::ArenaHeader*>(base);
  if (frame >= h.size.load() / arena::kPageSize) return "";
  const auto kind = static_cast<arena::PageKind>(std::to_integer<std::uint8_t>(base[h.page_map_offset + frame]));
  std::ostringstream out;
  if (kind != arena::PageKind::span) {
    const auto* l = reinterpret_cast<const arena::LargeHeader*>(base + frame * arena::kPageSize);
    out << " [frame kind " << static_cast<int>(kind) << "; as a large block header: magic "
        << std::hex << l->magic << " (live: " << (arena::kLargeMagic ^ frame) << ")" << std::dec
        << ", pages " << l->pages << ", requested " << l->requested << ", user_offset "
        << l->user_offset << "; next frames' kinds:";
    for (unsigned f = frame + 1; f < frame + 4 && f < h.size.load() / arena::kPageSize; ++f) {
      out << ' ' << static_cast<int>(std::to_integer<std::uint8_t>(base[h.page_map_offset + f]));
    }
    out << "]";
    return out.str();
  }
  const auto* s = reinterpret_cast<const arena::SpanHeader*>(base + frame * arena::kPageSize);
  out << " [span of heap " << s->heap;
  if (s->heap != 0 && s->heap <= h.max_heaps) {
    const auto* heap = reinterpret_cast<const arena::HeapSlot*>(base + h.heaps_offset) + (s->heap - 1);
    const std::uint32_t tid = heap->owner_tid.load();
    out << ", owned by thread " << tid;
    if (heap->user != 0 && heap->user <= h.max_users) {
      const auto* user = reinterpret_cast<const arena::UserSlot*>(base + h.users_offset) + (heap->user - 1);
      const bool alive = ::kill(user->pid, 0) == 0;
      out << " of user pid " << user->pid << (alive ? " (alive)" : " (dead)");
    }
  }
  out << "]";
  return out.str();
}

// ---- Concurrent allocation, blocks freed by other processes ----

constexpr int kSwapWorkers = 4;
constexpr int kInbox = 64;
constexpr int kSwapOps = 20000;

// Lives in the arena: worker i finds blocks to check and free in inbox[i].
struct SwapBoard {
  std::atomic<std::uint64_t> inbox[kSwapWorkers][kInbox];
};

// Outside the arena (inherited): where the workers meet, and how one that fails stops the rest.
struct SwapControl {
  std::atomic<int> opened;
  std::atomic<int> finished;
  std::atomic<int> abort;
};

int swap_worker(const std::string& name, SwapControl& ctl, int me) {
  // Everyone joins before anyone allocates: joining while the arena grows is another test.
  Arena a = Arena::open(name);
  ctl.opened.fetch_add(1, std::memory_order_acq_rel);
  if (!eventually([&] { return ctl.opened.load() == kSwapWorkers || ctl.abort.load() != 0; }) ||
      ctl.abort.load() != 0) {
    return 8;
  }
  auto* board = a.find<SwapBoard>("board");
  if (board == nullptr) return 2;
  std::mt19937_64 rng(1000 + static_cast<std::uint64_t>(me));
  std::vector<std::pair<std::uint64_t, std::size_t>> mine;  // offset, size
  int bad = 0;
  const auto check_and_free = [&](std::uint64_t off, std::size_t size) {
    void* p = a.at(off);
    const std::size_t got = stamped(p, off);
    if (got == 0 || (size != 0 && got != size) || a.block_size(p) < got) {
      std::fprintf(stderr, "worker %d: block at %llu (size %zu) is damaged\n", me,
                   static_cast<unsigned long long>(off), size);
      ++bad;
    }
    a.deallocate(p);
  };
  const auto drain = [&] {
    for (auto& slot : board->inbox[me]) {
      const std::uint64_t off = slot.exchange(0, std::memory_order_acq_rel);
      if (off != 0) check_and_free(off, 0);
    }
  };
  for (int op = 0; op < kSwapOps; ++op) {
    if (op % 16 == 0) drain();
    const auto r = rng() % 100;
    if ((r < 45 || mine.empty()) && mine.size() < 200) {
      const std::size_t size = random_size(rng);
      void* p = a.allocate(size);
      const std::uint64_t off = a.offset_of(p);
      stamp(p, size, off);
      mine.emplace_back(off, size);
      continue;
    }
    const std::size_t k = rng() % mine.size();
    if (r < 80) {
      check_and_free(mine[k].first, mine[k].second);
    } else {
      const auto to = static_cast<std::size_t>(me + 1 + static_cast<int>(rng() % 3)) % kSwapWorkers;
      std::uint64_t empty = 0;
      if (!board->inbox[to][rng() % kInbox].compare_exchange_strong(
              empty, mine[k].first, std::memory_order_acq_rel)) {
        continue;  // that slot is taken: keep the block
      }
    }
    mine[k] = mine.back();
    mine.pop_back();
  }
  for (auto [off, size] : mine) check_and_free(off, size);
  ctl.finished.fetch_add(1, std::memory_order_acq_rel);
  // Blocks may still arrive until every worker has finished sending.
  if (!eventually([&] {
        drain();
        return ctl.finished.load(std::memory_order_acquire) == kSwapWorkers ||
               ctl.abort.load() != 0;
      }) ||
      ctl.abort.load() != 0) {
    return 7;
  }
  drain();
  a.close();
  return bad == 0 ? 0 : 3;
}

TEST(ArenaProc, FourProcessesAllocateFreeAndFreeEachOthersBlocks) {
  const std::string name = unique_name("/", "swap");
  Remover rm(name);
  Arena a = Arena::create(name);
  (void)a.construct<SwapBoard>("board");
  const std::uint64_t baseline = a.stats().in_use;
  Segment shared = Segment::create_anonymous(sizeof(SwapControl));
  auto& ctl = *static_cast<SwapControl*>(shared.data());
  Children kids;
  for (int i = 0; i < kSwapWorkers; ++i) {
    ASSERT_GT(kids.start([&name, &ctl, i] {
      try {
        const int rc = swap_worker(name, ctl, i);
        if (rc != 0) ctl.abort.store(1);
        return rc;
      } catch (...) {
        ctl.abort.store(1);
        throw;
      }
    }),
              0);
  }
  const std::vector<int> statuses = kids.wait_all(120);
  for (std::size_t i = 0; i < statuses.size(); ++i) {
    EXPECT_EQ(exit_code(statuses[i]), 0) << "worker " << i;
  }
  EXPECT_EQ(a.check(), "");
  EXPECT_EQ(a.stats().in_use, baseline) << explain_use(a, baseline);
  EXPECT_EQ(a.users().size(), 1u);
  const Use u = count_use(a);
  EXPECT_EQ(u.in_use, baseline) << "blocks lost (counting the free lists)";
}

// Joining reads the segment's size, then checks the header against it: an arena that another
// process grows in between must not look truncated. Rounds of: one process grows a fresh
// arena from its minimum through five doublings while another joins and leaves in a loop
// (the window is narrow: a run catches it a few times in a few hundred growths, not always).
TEST(ArenaProc, JoiningWhileAnotherProcessGrowsTheArena) {
  constexpr int kRounds = 100;
  Segment shared = Segment::create_anonymous(sizeof(SwapControl));
  auto& ctl = *static_cast<SwapControl*>(shared.data());
  int joins = 0, failures = 0;
  std::string first_failure;
  for (int round = 0; round < kRounds; ++round) {
    const std::string name = unique_name("/", "growjoin");
    Remover rm(name);
    ArenaConfig c;
    c.size = 0;
    c.max_size = 64 * kMiB;
    Arena a = Arena::create(name, c);
    ctl.finished.store(0);
    Children kids;
    const int grower = kids.start([&] {
      Arena mine = Arena::open(name);
      while (mine.size() < 8 * kMiB) (void)mine.allocate(200 * kKiB);
      ctl.finished.store(1);
      return 0;
    });
    ASSERT_GT(grower, 0);
    while (ctl.finished.load() == 0) {
      try {
        Arena joined = Arena::open(name);
        ++joins;
      } catch (const Error& e) {
        if (++failures == 1) first_failure = e.what();
      }
    }
    EXPECT_EQ(exit_code(kids.wait(grower)), 0);
  }
  EXPECT_EQ(failures, 0) << failures << " of " << joins + failures
                         << " joins failed while the arena grew; the first: " << first_failure;
}

// ---- Create-or-join races of unrelated processes ----

std::atomic<int>* words(const Segment& control) {
  return static_cast<std::atomic<int>*>(control.data());
}

TEST(ArenaProc, SixteenUnrelatedProcessesRaceOpenOrCreate) {
  const std::string name = unique_name("/", "race");
  const std::string control_name = unique_name("/", "race-ctl");
  Remover rm(name), rm_control(control_name);
  Segment control = Segment::create(control_name, 4096);
  std::atomic<int>* w = words(control);
  Children kids;
  constexpr int kRacers = 16;
  for (int i = 0; i < kRacers; ++i) {
    ASSERT_GT(kids.spawn({kHelper, "race", name, control_name}, 60), 0);
  }
  ASSERT_TRUE(wait_for_value(w[shmkit_arena_helper::kReady], kRacers, 60));
  w[shmkit_arena_helper::kGo].store(1, std::memory_order_release);
  int ran = 0, joined = 0, other = 0;
  for (int status : kids.wait_all(60)) {
    const int code = exit_code(status);
    if (code == kRan) ++ran;
    else if (code == kJoined) ++joined;
    else ++other;
  }
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(joined, kRacers - 1);
  EXPECT_EQ(other, 0) << "helpers that failed (see their messages above)";
  EXPECT_EQ(w[shmkit_arena_helper::kInits].load(), 1);
  Arena a = Arena::open(name);
  const auto* mark = a.find<InitMark>("init-mark");
  ASSERT_NE(mark, nullptr);
  EXPECT_EQ(mark->runs, 1u);
  EXPECT_EQ(mark->value, shmkit_arena_helper::kInitValue);
  EXPECT_EQ(a.check(), "");
  EXPECT_EQ(a.users().size(), 1u);  // every helper left
}

TEST(ArenaProc, CreatorKilledInsideInitIsInitialisedAgainByTheNext) {
  no_core_dump();
  const std::string name = unique_name("/", "reinit");
  const std::string control_name = unique_name("/", "reinit-ctl");
  Remover rm(name), rm_control(control_name);
  Segment control = Segment::create(control_name, 4096);
  std::atomic<int>* w = words(control);
  Children kids;
  const int creator = kids.spawn({kHelper, "hang", name, control_name}, 60);
  ASSERT_GT(creator, 0);
  ASSERT_TRUE(wait_for_value(w[shmkit_arena_helper::kInInit], 1, 30));
  // A second process comes while init runs: it must wait, then take over.
  const int next = kids.spawn({kHelper, "join", name, control_name}, 60);
  ASSERT_GT(next, 0);
  (void)test::wait_until_blocked(next, nullptr, 0, 10);  // ideally asleep on init_lock
  kids.kill(creator);
  EXPECT_EQ(exit_code(kids.wait(creator)), kKilled);
  EXPECT_EQ(exit_code(kids.wait(next)), kRan) << "the waiting process did not initialise again";
  EXPECT_EQ(w[shmkit_arena_helper::kInits].load(), 2);
  // Later processes join the re-initialised arena.
  const int later = kids.spawn({kHelper, "join", name, control_name}, 60);
  EXPECT_EQ(exit_code(kids.wait(later)), kJoined);
  EXPECT_EQ(w[shmkit_arena_helper::kInits].load(), 2);
  Arena a = Arena::open(name);
  const auto* mark = a.find<InitMark>("init-mark");
  ASSERT_NE(mark, nullptr);
  EXPECT_EQ(mark->runs, 1u) << "the second init did not start from zero";
  EXPECT_EQ(mark->creator, 2u);
  EXPECT_EQ(mark->value, shmkit_arena_helper::kInitValue);
  EXPECT_EQ(a.names(), std::vector<std::string>{"init-mark"});
  EXPECT_EQ(a.check(), "");
  void* p = a.allocate(100000);
  a.deallocate(p);
  const auto users = a.users();
  ASSERT_EQ(users.size(), 1u);  // the dead creator's slot went with the re-initialisation
  EXPECT_EQ(users[0].pid, ::getpid());
}

// ---- Root and named-object races ----

struct Gate {
  std::atomic<int> ready;
  std::atomic<int> go;
  std::atomic<int> constructed;
  std::atomic<int> destroyed;
  std::atomic<std::uint64_t> offsets[16];
};

// Each process starts at the same moment as the others (bounded waits).
bool meet(Gate& g, int count) {
  g.ready.fetch_add(1, std::memory_order_acq_rel);
  return eventually([&] { return g.go.load(std::memory_order_acquire) != 0; }) &&
         g.ready.load() >= count;
}

void open_gate(Gate& g, int count) {
  ASSERT_TRUE(wait_for_value(g.ready, count, 60));
  g.go.store(1, std::memory_order_release);
}

TEST(ArenaProc, SixteenProcessesRaceCompareExchangeRoot) {
  const std::string name = unique_name("/", "root");
  Remover rm(name);
  Arena a = Arena::create(name);
  Segment shared = Segment::create_anonymous(sizeof(Gate));
  auto& g = *static_cast<Gate*>(shared.data());
  constexpr int kRacers = 16;
  Children kids;
  std::vector<int> pids;
  for (int i = 0; i < kRacers; ++i) {
    pids.push_back(kids.start([&] {
      Arena mine = Arena::open(name);
      auto* block = static_cast<std::int32_t*>(mine.allocate(64));
      *block = ::getpid();
      if (!meet(g, kRacers)) return 9;
      void* expected = nullptr;
      if (mine.compare_exchange_root(expected, block)) return kRan;
      // Lost: `expected` is the winner's block.
      if (expected == nullptr || *static_cast<std::int32_t*>(expected) == ::getpid()) return 3;
      mine.deallocate(block);
      return kJoined;
    }));
    ASSERT_GT(pids.back(), 0);
  }
  open_gate(g, kRacers);
  int winner = 0, winners = 0, losers = 0;
  for (int pid : pids) {
    const int code = exit_code(kids.wait(pid));
    if (code == kRan) {
      ++winners;
      winner = pid;
    } else if (code == kJoined) {
      ++losers;
    }
  }
  EXPECT_EQ(winners, 1);
  EXPECT_EQ(losers, kRacers - 1);
  ASSERT_NE(a.root(), nullptr);
  EXPECT_EQ(*static_cast<std::int32_t*>(a.root()), winner);
  EXPECT_EQ(a.check(), "");
}

// Counted in the Gate of the test that makes it (the constructor is given the counter).
struct SharedThing {
  static inline std::atomic<int>* destroyed = nullptr;  // this process's counter
  SharedThing(std::atomic<int>* constructed, std::int32_t pid) : creator(pid) {
    constructed->fetch_add(1, std::memory_order_acq_rel);
    std::this_thread::sleep_for(20ms);  // a slow constructor: the others must wait, not build
    for (std::uint64_t& w : payload) w = 0xabcdef;
  }
  ~SharedThing() {
    if (destroyed != nullptr) destroyed->fetch_add(1, std::memory_order_acq_rel);
  }
  SharedThing(const SharedThing&) = delete;
  SharedThing& operator=(const SharedThing&) = delete;
  std::int32_t creator;
  std::uint64_t payload[8];
};

TEST(ArenaProc, EightProcessesRaceForOneNamedObject) {
  const std::string name = unique_name("/", "named");
  Remover rm(name);
  Arena a = Arena::create(name);
  Segment shared = Segment::create_anonymous(sizeof(Gate));
  auto& g = *static_cast<Gate*>(shared.data());
  constexpr int kRacers = 8;
  constexpr int kOwnNames = 25;
  Children kids;
  std::set<int> pids;
  for (int i = 0; i < kRacers; ++i) {
    const int pid = kids.start([&, i] {
      Arena mine = Arena::open(name);
      if (!meet(g, kRacers)) return 9;
      auto* thing = mine.find_or_construct<SharedThing>("the-thing", &g.constructed, ::getpid());
      if (thing == nullptr || thing->payload[7] != 0xabcdef) return 2;  // never half-built
      g.offsets[i].store(mine.offset_of(thing), std::memory_order_release);
      // Names of its own, at the same time as the others: the directory grows under load.
      for (int k = 0; k < kOwnNames; ++k) {
        (void)mine.construct<long>("w" + std::to_string(i) + "-" + std::to_string(k), i * 1000L + k);
      }
      return 0;
    });
    ASSERT_GT(pid, 0);
    pids.insert(pid);
  }
  open_gate(g, kRacers);
  for (int status : kids.wait_all(60)) EXPECT_EQ(exit_code(status), 0);
  EXPECT_EQ(g.constructed.load(), 1) << "the constructor ran more than once";
  auto* thing = a.find<SharedThing>("the-thing");
  ASSERT_NE(thing, nullptr);
  EXPECT_TRUE(pids.count(thing->creator)) << thing->creator;
  for (int i = 0; i < kRacers; ++i) {
    EXPECT_EQ(g.offsets[i].load(), a.offset_of(thing)) << "process " << i << " saw another object";
  }
  EXPECT_EQ(a.names().size(), 1u + kRacers * kOwnNames);
  for (int i = 0; i < kRacers; ++i) {
    for (int k = 0; k < kOwnNames; ++k) {
      const long* v = a.find<long>("w" + std::to_string(i) + "-" + std::to_string(k));
      ASSERT_NE(v, nullptr) << i << "-" << k;
      EXPECT_EQ(*v, i * 1000L + k);
    }
  }
  EXPECT_EQ(a.check(), "");
}

TEST(ArenaProc, NamedObjectErrorsAndDestroyAcrossProcesses) {
  const std::string name = unique_name("/", "named-errors");
  Remover rm(name);
  Arena a = Arena::create(name);
  Segment shared = Segment::create_anonymous(sizeof(Gate));
  auto& g = *static_cast<Gate*>(shared.data());
  auto* thing = a.construct<SharedThing>("thing", &g.constructed, ::getpid());
  ASSERT_NE(thing, nullptr);
  (void)a.construct<int>("other", 5);
  Children kids;
  // Another process: construct of an existing name, find as another type, then destroy.
  const int pid = kids.start([&] {
    Arena mine = Arena::open(name);
    try {
      (void)mine.construct<SharedThing>("thing", &g.constructed, ::getpid());
      return 2;
    } catch (const Error& e) {
      if (e.errnum() != EEXIST) return 3;
    }
    try {
      (void)mine.find<long>("thing");
      return 4;
    } catch (const Error& e) {
      if (e.errnum() != EINVAL) return 5;
    }
    auto names = mine.names();
    std::sort(names.begin(), names.end());
    if (names != std::vector<std::string>{"other", "thing"}) return 6;
    SharedThing::destroyed = &g.destroyed;
    if (!mine.destroy<SharedThing>("thing")) return 7;
    if (mine.destroy<SharedThing>("thing")) return 8;
    return 0;
  });
  ASSERT_EQ(exit_code(kids.wait(pid)), 0);
  EXPECT_EQ(g.constructed.load(), 1);
  EXPECT_EQ(g.destroyed.load(), 1);
  EXPECT_EQ(a.find<SharedThing>("thing"), nullptr);
  EXPECT_EQ(a.names(), std::vector<std::string>{"other"});
  // The name can be used again, by anyone.
  auto* again = a.construct<SharedThing>("thing", &g.constructed, ::getpid());
  EXPECT_NE(again, nullptr);
  EXPECT_EQ(g.constructed.load(), 2);
  EXPECT_EQ(a.check(), "");
}

// ---- Autogrow ----

constexpr int kGrowers = 4;
constexpr int kGrowEntries = 1024;

struct GrowBoard {
  std::atomic<int> opened;
  std::atomic<int> filled;
  std::atomic<int> verified;
  struct {
    std::atomic<int> count;
    std::uint64_t offset[kGrowEntries];
    std::uint64_t size[kGrowEntries];
  } per[kGrowers];
};

TEST(ArenaProc, AutogrowUnderConcurrentAllocation) {
  const std::string name = unique_name("/", "grow");
  Remover rm(name);
  ArenaConfig c;
  c.size = 0;  // the minimum
  c.max_size = 64 * kMiB;
  Arena a = Arena::create(name, c);
  const std::size_t initial = a.size();
  ASSERT_LT(initial, 1 * kMiB);
  Segment shared = Segment::create_anonymous(sizeof(GrowBoard));
  auto& board = *static_cast<GrowBoard*>(shared.data());
  Children kids;
  for (int i = 0; i < kGrowers; ++i) {
    ASSERT_GT(kids.start([&, i] {
      Arena mine = Arena::open(name);
      // Everyone joins before the arena grows: joining while it grows is another test.
      board.opened.fetch_add(1, std::memory_order_acq_rel);
      if (!eventually([&] { return board.opened.load() == kGrowers; })) return 7;
      auto& me = board.per[i];
      std::mt19937_64 rng(77 + static_cast<std::uint64_t>(i));
      const std::size_t sizes[] = {4096, 16384, 65472, 131008, 262080};
      std::size_t total = 0;
      int n = 0;
      while (total < 10 * kMiB) {
        if (n == kGrowEntries) return 2;
        const std::size_t size = sizes[rng() % 5];
        void* p = mine.allocate(size);
        me.offset[n] = mine.offset_of(p);
        me.size[n] = size;
        stamp(p, size, me.offset[n]);
        total += size;
        me.count.store(++n, std::memory_order_release);
      }
      board.filled.fetch_add(1, std::memory_order_acq_rel);
      if (!eventually([&] { return board.filled.load(std::memory_order_acquire) == kGrowers; })) {
        return 8;
      }
      // Everyone's blocks, through this process's mapping, made before the arena grew.
      for (const auto& other : board.per) {
        const int count = other.count.load(std::memory_order_acquire);
        for (int k = 0; k < count; ++k) {
          if (stamped(mine.at(other.offset[k]), other.offset[k]) != other.size[k]) return 3;
        }
      }
      board.verified.fetch_add(1, std::memory_order_acq_rel);
      return 0;
    }),
              0);
  }
  for (int status : kids.wait_all(120)) EXPECT_EQ(exit_code(status), 0);
  EXPECT_GT(a.size(), initial);
  EXPECT_GE(a.size(), 40 * kMiB);
  EXPECT_LE(a.size(), a.max_size());
  for (const auto& other : board.per) {
    for (int k = 0; k < other.count.load(); ++k) {
      ASSERT_EQ(stamped(a.at(other.offset[k]), other.offset[k]), other.size[k]);
    }
  }
  EXPECT_EQ(a.check(), "");
}

TEST(ArenaProc, GrowthStopsAtMaxSize) {
  const std::string name = unique_name("/", "full");
  Remover rm(name);
  ArenaConfig c;
  c.size = 0;
  c.max_size = 4 * kMiB;
  Arena a = Arena::create(name, c);
  Children kids;
  for (int i = 0; i < 2; ++i) {
    ASSERT_GT(kids.start([&, i] {
      Arena mine = Arena::open(name);
      std::mt19937_64 rng(5 + static_cast<std::uint64_t>(i));
      std::vector<std::pair<std::uint64_t, std::size_t>> held;
      for (int misses = 0; misses < 50;) {
        const std::size_t size = 1 * kKiB + rng() % (200 * kKiB);
        void* p = mine.try_allocate(size);
        if (p == nullptr) {
          ++misses;
          continue;
        }
        stamp(p, size, mine.offset_of(p));
        held.emplace_back(mine.offset_of(p), size);
      }
      for (int k = 0; k < 300000 && mine.try_allocate(16) != nullptr; ++k) {
      }
      try {
        (void)mine.allocate(16);
        return 2;
      } catch (const Error& e) {
        if (e.errnum() != ENOMEM) return 3;
      }
      for (auto [off, size] : held) {
        if (stamped(mine.at(off), off) != size) return 4;
      }
      return 0;
    }),
              0);
  }
  for (int status : kids.wait_all(60)) EXPECT_EQ(exit_code(status), 0);
  EXPECT_EQ(a.size(), a.max_size());
  EXPECT_EQ(a.max_size(), 4 * kMiB);
  EXPECT_EQ(a.try_allocate(1 * kMiB), nullptr);
  try {
    (void)a.allocate(1 * kMiB);
    ADD_FAILURE() << "allocated past max_size";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), ENOMEM) << e.what();
  }
  EXPECT_EQ(a.check(), "");
}

// ---- The users' limit ----

struct UsersGate {
  std::atomic<int> joined[4];
  std::atomic<int> leave[4];
};

TEST(ArenaProc, MaxUsersLimitAndDeadUsersRecovered) {
  no_core_dump();
  const std::string name = unique_name("/", "users");
  Remover rm(name);
  ArenaConfig c;
  c.max_users = 3;
  Arena a = Arena::create(name, c);
  Segment shared = Segment::create_anonymous(sizeof(UsersGate));
  auto& g = *static_cast<UsersGate*>(shared.data());
  Children kids;
  const auto holder = [&](int k) {
    return kids.start([&, k] {
      Arena mine = Arena::open(name);
      g.joined[k].store(1, std::memory_order_release);
      if (!eventually([&] { return g.leave[k].load() != 0; }, 60s)) return 9;
      mine.close();
      return 0;
    });
  };
  const auto joiner = [&] {
    const int pid = kids.start([&] {
      try {
        Arena mine = Arena::open(name);
        return 0;
      } catch (const Error& e) {
        return e.errnum();
      }
    });
    return exit_code(kids.wait(pid));
  };
  const int h0 = holder(0);
  const int h1 = holder(1);
  ASSERT_TRUE(wait_for_value(g.joined[0], 1));
  ASSERT_TRUE(wait_for_value(g.joined[1], 1));
  auto users = a.users();
  ASSERT_EQ(users.size(), 3u);
  std::set<int> listed;
  for (const ArenaUser& u : users) {
    listed.insert(u.pid);
    EXPECT_TRUE(u.alive) << u.pid;
    EXPECT_EQ(u.self, u.pid == ::getpid());
  }
  EXPECT_EQ(listed, (std::set<int>{::getpid(), h0, h1}));
  EXPECT_EQ(joiner(), EUSERS) << "a fourth user joined";
  // One leaves: there is room again.
  g.leave[0].store(1);
  EXPECT_EQ(exit_code(kids.wait(h0)), 0);
  EXPECT_EQ(joiner(), 0);
  const int h2 = holder(2);
  ASSERT_TRUE(wait_for_value(g.joined[2], 1));
  EXPECT_EQ(joiner(), EUSERS);
  // One dies: the next joiner recovers its slot.
  kids.kill(h1);
  EXPECT_EQ(exit_code(kids.wait(h1)), kKilled);
  users = a.users();
  ASSERT_EQ(users.size(), 3u);
  for (const ArenaUser& u : users) EXPECT_EQ(u.alive, u.pid != h1) << u.pid;
  EXPECT_EQ(joiner(), 0) << "a dead user's slot was not recovered";
  users = a.users();
  listed.clear();
  for (const ArenaUser& u : users) listed.insert(u.pid);
  EXPECT_EQ(listed, (std::set<int>{::getpid(), h2}));
  EXPECT_EQ(Arena::inspect(name).users.size(), 2u);
  g.leave[2].store(1);
  EXPECT_EQ(exit_code(kids.wait(h2)), 0);
  EXPECT_EQ(a.users().size(), 1u);
}

// ---- Processes killed in the middle of allocating ----

constexpr int kStormRounds = 300;
constexpr int kVictimSlots = 32;
constexpr int kSurvivors = 2;

// What a victim holds, written as it goes so the test knows after SIGKILL. A block is
// recorded only once allocated and stamped; `pending` says what was under way.
struct VictimLog {
  std::atomic<int> running;
  std::atomic<int> pending;  // 0 nothing, 1 allocating pending_size bytes, 2 freeing pending_slot
  std::atomic<std::uint32_t> pending_size;
  std::atomic<int> pending_slot;
  std::atomic<std::uint64_t> offset[kVictimSlots];  // 0: empty slot
  std::atomic<std::uint32_t> size[kVictimSlots];
};

struct Storm {
  std::atomic<int> stop;
  std::atomic<int> survivors_running;
  VictimLog victims[kStormRounds];
};

int survivor(const std::string& name, Storm& storm, int me) {
  Arena a = Arena::open(name);
  std::mt19937_64 rng(500 + static_cast<std::uint64_t>(me));
  std::vector<std::pair<std::uint64_t, std::size_t>> mine;
  int bad = 0;
  const auto free_one = [&](std::size_t k) {
    const auto [off, size] = mine[k];
    if (stamped(a.at(off), off) != size) ++bad;
    a.deallocate(a.at(off));
    mine[k] = mine.back();
    mine.pop_back();
  };
  storm.survivors_running.fetch_add(1);
  while (storm.stop.load(std::memory_order_acquire) == 0) {
    if (mine.size() < 150 && rng() % 2 == 0) {
      const std::size_t size = random_size(rng);
      void* p = a.allocate(size);
      stamp(p, size, a.offset_of(p));
      mine.emplace_back(a.offset_of(p), size);
    } else if (!mine.empty()) {
      free_one(rng() % mine.size());
    }
  }
  while (!mine.empty()) free_one(mine.size() - 1);
  a.close();
  if (bad != 0) std::fprintf(stderr, "survivor %d: %d damaged blocks\n", me, bad);
  return bad == 0 ? 0 : 3;
}

[[noreturn]] void victim(const std::string& name, VictimLog& log, std::uint64_t seed) {
  Arena a = Arena::open(name);
  std::mt19937_64 rng(seed);
  log.running.store(1, std::memory_order_release);
  for (;;) {  // until SIGKILL (or the time limit)
    const int j = static_cast<int>(rng() % kVictimSlots);
    const std::uint64_t off = log.offset[j].load(std::memory_order_relaxed);
    if (off == 0) {
      // Many large, of 1..4 frames (two in three for odd seeds, else one in three): the frame
      // map is changed under the arena lock, where dying hurts most.
      const bool large = rng() % 3 < (seed % 2 == 1 ? 2u : 1u);
      const std::size_t size = large ? arena::kMaxSmall + 1 + rng() % (224 * kKiB) : random_size(rng);
      log.pending_size.store(static_cast<std::uint32_t>(size), std::memory_order_relaxed);
      log.pending.store(1, std::memory_order_seq_cst);
      void* p = a.allocate(size);
      const std::uint64_t at = a.offset_of(p);
      stamp(p, size, at, true);
      log.size[j].store(static_cast<std::uint32_t>(size), std::memory_order_relaxed);
      log.offset[j].store(at, std::memory_order_seq_cst);
      log.pending.store(0, std::memory_order_seq_cst);
    } else {
      log.pending_slot.store(j, std::memory_order_relaxed);
      log.pending.store(2, std::memory_order_seq_cst);
      a.deallocate(a.at(off));
      log.offset[j].store(0, std::memory_order_seq_cst);
      log.pending.store(0, std::memory_order_seq_cst);
    }
  }
}

TEST(ArenaProc, ProcessesKilledWhileAllocatingLoseNothing) {
  no_core_dump();
  const std::string name = unique_name("/", "storm");
  Remover rm(name);
  Arena a = Arena::create(name);
  const std::uint64_t baseline = a.stats().in_use;
  Segment shared = Segment::create_anonymous(sizeof(Storm));
  auto& storm = *static_cast<Storm*>(shared.data());
  Children kids;
  std::vector<int> survivors;
  for (int i = 0; i < kSurvivors; ++i) {
    survivors.push_back(kids.start([&, i] { return survivor(name, storm, i); }, 120));
    ASSERT_GT(survivors.back(), 0);
  }
  ASSERT_TRUE(wait_for_value(storm.survivors_running, kSurvivors));
  std::mt19937_64 rng(99);
  // check() while the survivors run. Damage stays; a snapshot taken while a live owner was
  // mid-operation does not (its fast path takes no lock), so each finding is looked at again.
  int lasting = 0, check_raced = 0;
  std::string first_lasting, first_race, known;
  const auto classify = [&](int round, const char* when) {
    const std::string problem = a.check();
    if (problem.empty()) return;
    if (problem == known) {  // the damage already found, still there
      ++lasting;
      return;
    }
    const std::string where = whose_span(a, problem);
    std::string again;
    bool stays = true;
    for (int k = 0; k < 3 && stays; ++k) {
      std::this_thread::sleep_for(2ms);
      again = a.check();
      stays = again == problem;
    }
    const std::string at = "round " + std::to_string(round) + ", " + when + ": ";
    if (stays) known = problem;
    if (stays && lasting++ == 0) first_lasting = at + problem + where;
    if (!stays && check_raced++ == 0) first_race = at + problem + where + "; then: \"" + again + "\"";
  };
  for (int round = 0; round < kStormRounds; ++round) {
    VictimLog& log = storm.victims[round];
    const int pid = kids.start(
        [&, round]() -> int { victim(name, log, 7000 + static_cast<std::uint64_t>(round)); }, 30);
    ASSERT_GT(pid, 0);
    // Most die storming; every fifth dies at any point, joining included.
    if (round % 5 != 0) {
      ASSERT_TRUE(wait_for_value(log.running, 1, 30));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
    kids.kill(pid);
    const int code = exit_code(kids.wait(pid));
    ASSERT_EQ(code, kKilled) << "round " << round << ": the victim ended by itself";
    classify(round, "after the kill");
    const auto users = a.users();
    for (const ArenaUser& u : users) {
      if (u.pid == pid) {
        EXPECT_FALSE(u.alive) << "round " << round;
      }
    }
    (void)a.recover();
    for (const ArenaUser& u : a.users()) {
      ASSERT_NE(u.pid, pid) << "round " << round << ": the dead user is still listed after recover()";
    }
    classify(round, "after recover()");
  }
  // check() reads spans whose live owners change them without a lock: while survivors
  // allocate, it may see a span mid-operation (documented). Only lasting damage counts.
  if (check_raced != 0) {
    std::printf("note: check() saw %d transient inconsistencies of live spans in %d rounds; "
                "the first: %s\n",
                check_raced, kStormRounds, first_race.c_str());
  }
  EXPECT_EQ(lasting, 0) << "check() found lasting damage " << lasting
                        << " times (twice a round, after the kill and after recover()); the first: "
                        << first_lasting;
  storm.stop.store(1, std::memory_order_release);
  for (int pid : survivors) EXPECT_EQ(exit_code(kids.wait(pid, 60)), 0) << "survivor " << pid;
  EXPECT_EQ(a.check(), "");
  // What the dead still hold: recorded blocks (certain), and at most one block each whose
  // allocation or free was under way when it died (uncertain).
  std::uint64_t held = 0, uncertain = 0;
  std::vector<std::pair<std::uint64_t, std::size_t>> to_free;
  for (const VictimLog& log : storm.victims) {
    const int pending = log.pending.load();
    if (pending == 1) uncertain += charged(log.pending_size.load());
    for (int j = 0; j < kVictimSlots; ++j) {
      const std::uint64_t off = log.offset[j].load();
      if (off == 0) continue;
      const std::size_t size = log.size[j].load();
      if (pending == 2 && log.pending_slot.load() == j) {
        uncertain += charged(size);  // maybe freed already: leave it
        continue;
      }
      held += charged(size);
      to_free.emplace_back(off, size);
    }
  }
  const std::uint64_t in_use = a.stats().in_use;
  EXPECT_GE(in_use, baseline + held) << explain_use(a, baseline);
  EXPECT_LE(in_use, baseline + held + uncertain)
      << "the survivors freed everything; the dead hold " << held << " bytes (+ " << uncertain
      << " uncertain). " << explain_use(a, baseline);
  int damaged = 0;
  for (auto [off, size] : to_free) {
    if (stamped(a.at(off), off, true) != size) ++damaged;
    a.deallocate(a.at(off));
  }
  EXPECT_EQ(damaged, 0) << "blocks the dead held were changed by someone else";
  const std::uint64_t after = a.stats().in_use;
  EXPECT_GE(after, baseline);
  EXPECT_LE(after, baseline + uncertain)
      << "after freeing what the dead held. " << explain_use(a, baseline);
  const Use u = count_use(a);
  EXPECT_LE(u.in_use, baseline + uncertain) << "blocks lost (counting the free lists)";
  EXPECT_EQ(a.check(), "");
  EXPECT_EQ(a.users().size(), 1u);
}

}  // namespace
}  // namespace shmkit
