// SPDX-License-Identifier: MIT
// Arena in one process (plus forked children where a second user is the point): allocation
// and its error reporting, offsets, Offset<T> / Ptr<T>, the root datum, named objects,
// statistics, Allocator<T> containers, anonymous arenas, inspect, and header validation
// (zeros, random bytes, foreign files, truncation, and every header field corrupted in turn
// through a raw mapping). Opening foreign bytes runs in a child with a time limit, so a crash
// or a hang fails the test instead of taking the suite down.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "arena/layout.hpp"
#include "shmkit/allocator.hpp"
#include "shmkit/arena.hpp"
#include "shmkit/error.hpp"
#include "shmkit/offset_ptr.hpp"
#include "shmkit/segment.hpp"
#include "test_support.hpp"

namespace shmkit {
namespace {

using test::Children;
using test::exit_code;
using test::Remover;
using test::TempDir;
using test::unique_name;

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * 1024;
constexpr std::size_t kPage = arena::kPageSize;
constexpr std::size_t kMaxSmall = arena::kMaxSmall;

// ---- Helpers ----

// Counts what shmkit reports through the error handler while it is installed.
std::atomic<int> g_reported{0};
std::atomic<int> g_last_errno{0};
char g_last_what[512];

void counting_handler(const Error& e) noexcept {
  g_last_errno.store(e.errnum(), std::memory_order_relaxed);
  std::snprintf(g_last_what, sizeof g_last_what, "%s", e.what());
  g_reported.fetch_add(1, std::memory_order_relaxed);
}

class CountErrors {
 public:
  CountErrors() {
    g_reported.store(0);
    g_last_errno.store(0);
    g_last_what[0] = '\0';
    previous_ = set_error_handler(&counting_handler);
  }
  ~CountErrors() { set_error_handler(previous_); }
  CountErrors(const CountErrors&) = delete;
  CountErrors& operator=(const CountErrors&) = delete;
  int count() const { return g_reported.load(); }
  int last_errno() const { return g_last_errno.load(); }
  std::string last() const { return g_last_what; }

 private:
  ErrorHandler previous_ = nullptr;
};

// A pattern that depends on the block and a seed, so blocks that overlap are noticed.
void fill(void* p, std::size_t n, std::uint32_t seed) {
  auto* b = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<unsigned char>(seed * 31u + i * 7u + (i >> 8));
}

bool holds(const void* p, std::size_t n, std::uint32_t seed) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    if (b[i] != static_cast<unsigned char>(seed * 31u + i * 7u + (i >> 8))) return false;
  }
  return true;
}

bool all_zero(const void* p, std::size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  return std::all_of(b, b + n, [](unsigned char c) { return c == 0; });
}

// The block size a small request gets (its size class), or the request for a large one.
std::uint64_t charged(std::size_t size) {
  if (size > kMaxSmall) return size;
  for (std::uint32_t c : arena::kClassSizes) {
    if (c >= std::max<std::size_t>(size, 1)) return c;
  }
  return size;
}

// Runs `body` in a child with a time limit and says how it ended: kReturned, kThrewError
// (errnum, what() and cause() given), kThrewOther; anything else is a crash (128+signal, or
// a sanitizer's exit status) or a hang (killed: 128+SIGKILL).
constexpr int kReturned = 10, kThrewError = 11, kThrewOther = 12;
struct Outcome {
  int code = -1;
  int errnum = 0;
  std::string what, cause;
};

Outcome in_child(const std::function<void()>& body, int limit_seconds = 5) {
  Segment shared = Segment::create_anonymous(4096);
  auto* text = static_cast<char*>(shared.data());
  Children kids;
  const int pid = kids.start(
      [&]() -> int {
        try {
          body();
          return kReturned;
        } catch (const Error& e) {
          std::snprintf(text + 8, 1000, "%s", e.what());
          std::snprintf(text + 1024, 1000, "%s", e.cause().c_str());
          const int errnum = e.errnum();
          std::memcpy(text, &errnum, sizeof errnum);
          return kThrewError;
        } catch (const std::exception& e) {
          std::snprintf(text + 8, 1000, "%s", e.what());
          return kThrewOther;
        }
      },
      static_cast<unsigned>(limit_seconds + 5));
  Outcome o;
  if (pid < 0) return o;
  o.code = exit_code(kids.wait(pid, limit_seconds));
  std::memcpy(&o.errnum, text, sizeof(int));
  o.what = text + 8;
  o.cause = text + 1024;
  return o;
}

class ArenaTest : public ::testing::Test {
 protected:
  std::string name_ = unique_name("/", "arena");
  Remover remover_{name_};
};

// ---- Creating and opening ----

TEST_F(ArenaTest, CreateThenOpenSeeTheSameArena) {
  Arena a = Arena::create(name_);
  ASSERT_TRUE(a);
  EXPECT_TRUE(a.created());
  EXPECT_EQ(a.name().str(), name_);
  EXPECT_GE(a.size(), std::size_t{1} << 20);
  EXPECT_GE(a.max_size(), a.size());
  EXPECT_EQ(a.size() % kPage, 0u);
  Arena b = Arena::open(name_);
  EXPECT_FALSE(b.created());
  EXPECT_EQ(b.size(), a.size());
  EXPECT_EQ(b.max_size(), a.max_size());
  int* p = static_cast<int*>(a.allocate(sizeof(int)));
  *p = 42;
  EXPECT_EQ(*static_cast<int*>(b.at(a.offset_of(p))), 42);
  EXPECT_EQ(a.users().size(), 2u);
}

TEST_F(ArenaTest, CreateExistingIsEexistAndOpenMissingIsEnoent) {
  Arena a = Arena::create(name_);
  try {
    Arena again = Arena::create(name_);
    FAIL() << "created twice";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), EEXIST) << e.what();
  }
  const std::string missing = unique_name("/", "missing");
  try {
    Arena none = Arena::open(missing);
    FAIL() << "opened a missing arena";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), ENOENT) << e.what();
  }
}

TEST_F(ArenaTest, OpenOrCreateCreatesOnceAndRunsInitOnce) {
  int runs = 0;
  Arena a = Arena::open_or_create(name_, {}, [&](Arena&) { ++runs; });
  EXPECT_TRUE(a.created());
  Arena b = Arena::open_or_create(name_, {}, [&](Arena&) { ++runs; });
  EXPECT_FALSE(b.created());
  EXPECT_EQ(runs, 1);
}

TEST_F(ArenaTest, BadConfigurationIsEinval) {
  ArenaConfig many_users;
  many_users.max_users = 70000;
  ArenaConfig many_threads;
  many_threads.max_threads = 65535;
  ArenaConfig tiny;  // no room for its metadata and two pages of data
  tiny.size = 8 * kKiB;
  tiny.max_size = 8 * kKiB;
  for (const ArenaConfig& c : {many_users, many_threads, tiny}) {
    try {
      Arena a = Arena::create(name_, c);
      FAIL() << "created with a bad configuration";
    } catch (const Error& e) {
      EXPECT_EQ(e.errnum(), EINVAL) << e.what();
    }
    EXPECT_FALSE(Arena::is_arena(name_));
  }
}

TEST_F(ArenaTest, RemoveTakesTheNameAway) {
  { Arena a = Arena::create(name_); }
  EXPECT_TRUE(Arena::is_arena(name_));
  Arena::remove(name_);
  EXPECT_FALSE(Arena::is_arena(name_));
}

// ---- Allocation ----

TEST_F(ArenaTest, AllocateWriteAndFreeEverySizeClassAndLarge) {
  Arena a = Arena::create(name_);
  const std::uint64_t base_use = a.stats().in_use;
  std::vector<std::pair<void*, std::size_t>> blocks;
  std::uint32_t seed = 1;
  for (std::uint32_t c : arena::kClassSizes) {
    for (std::size_t size : {std::size_t{c} - 15, std::size_t{c}}) {
      for (int k = 0; k < 3; ++k) {
        void* p = a.allocate(size);
        ASSERT_NE(p, nullptr);
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 16, 0u) << size;
        fill(p, size, seed++);
        blocks.emplace_back(p, size);
      }
    }
  }
  for (std::size_t size : {kMaxSmall + 1, std::size_t{64} * kKiB, std::size_t{200} * kKiB,
                           std::size_t{3} * kMiB}) {
    void* p = a.allocate(size);
    fill(p, size, seed++);
    blocks.emplace_back(p, size);
  }
  std::set<void*> distinct;
  for (auto [p, n] : blocks) distinct.insert(p);
  EXPECT_EQ(distinct.size(), blocks.size());
  EXPECT_EQ(a.check(), "");
  seed = 1;
  for (auto [p, n] : blocks) EXPECT_TRUE(holds(p, n, seed++)) << "block of " << n << " bytes";
  for (auto [p, n] : blocks) a.deallocate(p);
  EXPECT_EQ(a.check(), "");
  EXPECT_EQ(a.stats().in_use, base_use);
}

TEST_F(ArenaTest, TryAllocateReturnsNullWhenFullAndAllocateThrowsEnomem) {
  ArenaConfig c;
  c.size = 512 * kKiB;
  c.autogrow = false;
  Arena a = Arena::create(name_, c);
  EXPECT_EQ(a.max_size(), a.size());
  std::vector<void*> held;
  for (int i = 0; i < 1000; ++i) {
    void* p = a.try_allocate(40 * kKiB);
    if (p == nullptr) break;
    held.push_back(p);
  }
  ASSERT_FALSE(held.empty());
  ASSERT_LT(held.size(), 1000u);
  EXPECT_EQ(a.try_allocate(40 * kKiB), nullptr);
  try {
    (void)a.allocate(40 * kKiB);
    FAIL() << "allocated past the end";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), ENOMEM) << e.what();
  }
  EXPECT_EQ(a.try_allocate_zeroed(40 * kKiB), nullptr);
  EXPECT_EQ(a.check(), "");
  for (void* p : held) a.deallocate(p);
  void* again = a.try_allocate(40 * kKiB);
  EXPECT_NE(again, nullptr);
  a.deallocate(again);
  EXPECT_EQ(a.check(), "");
}

TEST_F(ArenaTest, AllocateZeroedGivesZerosEvenInReusedMemory) {
  Arena a = Arena::create(name_);
  for (std::size_t size : {std::size_t{24}, std::size_t{1000}, std::size_t{20000},
                           std::size_t{100000}}) {
    // Dirty a block of this size, free it, and ask again: the memory is likely reused.
    void* dirty = a.allocate(size);
    std::memset(dirty, 0xab, size);
    a.deallocate(dirty);
    void* z = a.allocate_zeroed(size);
    EXPECT_TRUE(all_zero(z, size)) << size;
    void* t = a.try_allocate_zeroed(size);
    ASSERT_NE(t, nullptr);
    EXPECT_TRUE(all_zero(t, size)) << size;
    a.deallocate(z);
    a.deallocate(t);
  }
}

TEST_F(ArenaTest, ReallocateKeepsContentsGrowingAndShrinking) {
  Arena a = Arena::create(name_);
  void* p = a.reallocate(nullptr, 40);  // nullptr: allocates
  ASSERT_NE(p, nullptr);
  fill(p, 40, 7);
  void* q = a.reallocate(p, 300);  // another class
  EXPECT_GE(a.block_size(q), 300u);
  EXPECT_TRUE(holds(q, 40, 7));
  fill(q, 300, 8);
  void* r = a.reallocate(q, 50000);  // small -> large
  EXPECT_GE(a.block_size(r), 50000u);
  EXPECT_TRUE(holds(r, 300, 8));
  fill(r, 50000, 9);
  void* s = a.reallocate(r, 300000);  // large -> larger
  EXPECT_TRUE(holds(s, 50000, 9));
  fill(s, 300000, 10);
  void* t = a.reallocate(s, 1000);  // shrinking keeps the block and its bytes
  EXPECT_TRUE(holds(t, 1000, 10));
  EXPECT_GE(a.block_size(t), 1000u);
  void* u = a.try_reallocate(t, 5000);
  ASSERT_NE(u, nullptr);
  EXPECT_TRUE(holds(u, 1000, 10));
  a.deallocate(u);
  EXPECT_EQ(a.check(), "");
  EXPECT_EQ(a.stats().in_use, 0u);
}

TEST_F(ArenaTest, ReallocateThatCannotGrowLeavesTheBlockAlone) {
  ArenaConfig c;
  c.size = 512 * kKiB;
  c.autogrow = false;
  Arena a = Arena::create(name_, c);
  void* p = a.allocate(1000);
  fill(p, 1000, 3);
  try {
    (void)a.reallocate(p, 100 * kMiB);
    FAIL() << "grew past the maximum";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), ENOMEM) << e.what();
  }
  EXPECT_EQ(a.try_reallocate(p, 100 * kMiB), nullptr);
  EXPECT_TRUE(holds(p, 1000, 3));
  a.deallocate(p);
  EXPECT_EQ(a.check(), "");
}

TEST_F(ArenaTest, BlockSizeIsAtLeastTheRequest) {
  Arena a = Arena::create(name_);
  for (std::size_t size = 1; size < 300 * kKiB; size = size * 3 / 2 + 1) {
    void* p = a.allocate(size);
    const std::size_t have = a.block_size(p);
    EXPECT_GE(have, size);
    EXPECT_EQ(have, size <= kMaxSmall ? charged(size) : have) << size;
    std::memset(p, 0x5a, have);  // the whole usable size is ours
    a.deallocate(p);
  }
  EXPECT_EQ(a.check(), "");
}

TEST_F(ArenaTest, AllocateZeroGivesDistinctUsableBlocks) {
  Arena a = Arena::create(name_);
  void* p = a.allocate(0);
  void* q = a.allocate(0);
  ASSERT_NE(p, nullptr);
  ASSERT_NE(q, nullptr);
  EXPECT_NE(p, q);
  EXPECT_GE(a.block_size(p), 1u);
  a.deallocate(p);
  a.deallocate(q);
  EXPECT_EQ(a.check(), "");
}

TEST_F(ArenaTest, HugeRequestIsEnomemAndHarmless) {
  Arena a = Arena::create(name_);
  for (std::size_t size : {std::size_t{1} << 40, a.max_size() + 1, ~std::size_t{0},
                           ~std::size_t{0} - kPage}) {
    EXPECT_EQ(a.try_allocate(size), nullptr) << size;
    try {
      (void)a.allocate(size);
      ADD_FAILURE() << "allocated " << size << " bytes";
    } catch (const Error& e) {
      EXPECT_EQ(e.errnum(), ENOMEM) << e.what();
    }
  }
  void* p = a.allocate(100);
  a.deallocate(p);
  EXPECT_EQ(a.check(), "");
}

// Alignments a small block can have (its size class is a multiple of them) and those that
// take whole frames, up to the page size, where any mapping's base is aligned.
TEST_F(ArenaTest, AlignmentIsHonouredUpToThePageSize) {
  Arena a = Arena::create(name_);
  std::vector<void*> held;
  for (std::size_t align = 16; align <= 4 * kKiB; align *= 2) {
    for (std::size_t size : {std::size_t{1}, std::size_t{48}, std::size_t{1000},
                             std::size_t{20000}, std::size_t{40000}, std::size_t{100000}}) {
      void* p = a.allocate(size, align);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % align, 0u)
          << "align " << align << " size " << size;
      EXPECT_GE(a.block_size(p), size);
      std::memset(p, 0x77, size);
      held.push_back(p);
      void* q = a.try_allocate(size, align);
      ASSERT_NE(q, nullptr);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(q) % align, 0u) << "try, align " << align;
      held.push_back(q);
    }
  }
  EXPECT_EQ(a.check(), "");
  CountErrors errors;
  for (void* p : held) a.deallocate(p);
  EXPECT_EQ(errors.count(), 0) << errors.last();
  EXPECT_EQ(a.check(), "");
  EXPECT_EQ(a.stats().in_use, 0u);
}

// Above the page size an address is aligned only if the mapping's base is. mmap gives page
// alignment only, so the arena is also pinned (attach_address) at a page-aligned address that
// is 4 KiB past a 64 KiB boundary: the allocator must still hand out aligned addresses.
TEST_F(ArenaTest, AlignmentAboveThePageSizeHoldsAtAnyPageAlignedBase) {
  const std::size_t reserve = 64 * kMiB;
  void* hole = nullptr;
  {
    CreateOptions o;
    o.reserve = reserve + 128 * kKiB;
    Segment probe = Segment::create_anonymous(4 * kKiB, o);  // finds free address space
    hole = probe.data();
  }
  const std::uintptr_t pinned =
      (reinterpret_cast<std::uintptr_t>(hole) + 64 * kKiB - 1) / (64 * kKiB) * (64 * kKiB) + 4 * kKiB;
  ArenaConfig at_odd_address;
  at_odd_address.max_size = reserve;
  at_odd_address.attach_address = reinterpret_cast<void*>(pinned);
  const std::string other_name = unique_name("/", "pinned");
  Remover rm(other_name);
  Arena odd = Arena::create(other_name, at_odd_address);  // before anything else maps there
  ASSERT_EQ(reinterpret_cast<std::uintptr_t>(odd.base()), pinned);
  Arena normal = Arena::create(name_);
  for (Arena* a : {&normal, &odd}) {
    std::string misaligned;
    for (std::size_t align = 8 * kKiB; align <= 64 * kKiB; align *= 2) {
      for (std::size_t size : {std::size_t{100}, std::size_t{40000}}) {
        CountErrors quiet;  // freeing a 64 KiB-aligned block has its own test (AlignmentOf64KiB)
        void* p = a->allocate(size, align);
        const auto address = reinterpret_cast<std::uintptr_t>(p);
        // What counts is the address; relative to the base only where the base is aligned.
        if (reinterpret_cast<std::uintptr_t>(a->base()) % align == 0) {
          EXPECT_EQ(a->offset_of(p) % align, 0u) << "not aligned relative to an aligned base";
        }
        if (address % align != 0) {
          misaligned += " align " + std::to_string(align) + " size " + std::to_string(size) +
                        ": address % align = " + std::to_string(address % align) + ";";
        }
        a->deallocate(p);
      }
    }
    EXPECT_EQ(misaligned, "") << "arena based at " << a->base() << " (base % 64 KiB = "
                              << reinterpret_cast<std::uintptr_t>(a->base()) % (64 * kKiB) << ")";
  }
}

TEST_F(ArenaTest, AlignmentOf64KiB) {
  Arena a = Arena::create(name_);
  const std::size_t align = 64 * kKiB;
  for (std::size_t size : {std::size_t{1}, std::size_t{1000}, std::size_t{100000}}) {
    CountErrors errors;
    void* p = a.allocate(size, align);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % align, 0u) << "size " << size;
    std::memset(p, 0x77, size);
    EXPECT_EQ(a.check(), "") << "after allocate(" << size << ", 64 KiB)";
    try {
      EXPECT_GE(a.block_size(p), size);
    } catch (const Error& e) {
      ADD_FAILURE() << "block_size of a 64 KiB-aligned block: " << e.what();
    }
    a.deallocate(p);
    EXPECT_EQ(errors.count(), 0) << "deallocate of a 64 KiB-aligned block: " << errors.last();
    EXPECT_EQ(a.stats().large_blocks, 0u) << "the block was not freed";
  }
}

TEST_F(ArenaTest, BadAlignmentIsEinvalOrNull) {
  Arena a = Arena::create(name_);
  for (std::size_t align : {std::size_t{0}, std::size_t{3}, std::size_t{48},
                            std::size_t{128} * kKiB}) {
    EXPECT_EQ(a.try_allocate(64, align), nullptr) << align;
    try {
      (void)a.allocate(64, align);
      ADD_FAILURE() << "accepted alignment " << align;
    } catch (const Error& e) {
      EXPECT_EQ(e.errnum(), EINVAL) << e.what();
    }
  }
}

// ---- Freeing what is not a block ----

TEST_F(ArenaTest, DeallocateNullIsIgnored) {
  Arena a = Arena::create(name_);
  CountErrors errors;
  a.deallocate(nullptr);
  EXPECT_EQ(errors.count(), 0);
}

TEST_F(ArenaTest, DeallocateForeignPointerIsReportedNotACrash) {
  Arena a = Arena::create(name_);
  void* mine = a.allocate(64);
  fill(mine, 64, 1);
  int on_stack = 0;
  auto on_heap = std::make_unique<long[]>(16);
  auto* bytes = static_cast<std::byte*>(a.base());
  const std::vector<std::pair<const char*, void*>> foreign = {
      {"stack", &on_stack},
      {"heap", on_heap.get()},
      {"arena header", bytes + 100},
      {"user table", bytes + sizeof(arena::ArenaHeader) + 8},
      {"free page", bytes + a.size() - 2 * kPage + 128},
      {"past the end", bytes + a.size() + 4096},
  };
  for (auto [what, p] : foreign) {
    CountErrors errors;
    a.deallocate(p);
    EXPECT_EQ(errors.count(), 1) << what;
    EXPECT_EQ(errors.last_errno(), EINVAL) << what << ": " << errors.last();
  }
  EXPECT_TRUE(holds(mine, 64, 1));
  EXPECT_EQ(a.check(), "");
  a.deallocate(mine);
  EXPECT_EQ(a.stats().in_use, 0u);
}

TEST_F(ArenaTest, DeallocateIntoTheMiddleOfALargeBlockIsReported) {
  Arena a = Arena::create(name_);
  const std::size_t size = 200000;
  auto* p = static_cast<std::byte*>(a.allocate(size));
  fill(p, size, 2);
  for (std::size_t into : {std::size_t{16}, std::size_t{100}, std::size_t{70000},
                           std::size_t{150000}}) {
    CountErrors errors;
    a.deallocate(p + into);
    EXPECT_EQ(errors.count(), 1) << "pointer " << into << " bytes into the block";
  }
  EXPECT_TRUE(holds(p, size, 2));
  EXPECT_EQ(a.check(), "");
  EXPECT_EQ(a.stats().large_blocks, 1u);
  a.deallocate(p);
  EXPECT_EQ(a.stats().in_use, 0u);
}

TEST_F(ArenaTest, DeallocateIntoTheMiddleOfASmallBlockIsReported) {
  Arena a = Arena::create(name_);
  auto* p = static_cast<std::byte*>(a.allocate(64));
  void* other = a.allocate(64);  // keeps the span in use whatever happens to p
  fill(p, 64, 3);
  (void)other;
  CountErrors errors;
  a.deallocate(p + 8);
  EXPECT_EQ(errors.count(), 1) << "a pointer 8 bytes into a 64-byte block was taken as a block";
  EXPECT_EQ(a.check(), "");
  // Had it been taken, the next two blocks overlap p.
  auto* q = static_cast<std::byte*>(a.allocate(64));
  EXPECT_TRUE(q + 64 <= p || q >= p + 64) << "a new block overlaps a live one";
}

TEST_F(ArenaTest, DoubleFreeIsReported) {
  Arena a = Arena::create(name_);
  {
    void* big = a.allocate(100000);
    a.deallocate(big);
    CountErrors errors;
    a.deallocate(big);
    EXPECT_EQ(errors.count(), 1) << "large block freed twice";
    EXPECT_EQ(a.check(), "");
  }
  {
    void* keep = a.allocate(64);  // the span stays in use
    void* small = a.allocate(64);
    a.deallocate(small);
    CountErrors errors;
    a.deallocate(small);
    EXPECT_EQ(errors.count(), 1) << "small block freed twice";
    EXPECT_EQ(a.check(), "");
    void* x = a.allocate(64);
    void* y = a.allocate(64);
    EXPECT_NE(x, y) << "the same block was handed out twice";
    (void)keep;
  }
}

TEST_F(ArenaTest, ForeignPointerToReallocateAndBlockSizeIsEinval) {
  Arena a = Arena::create(name_);
  int on_stack = 0;
  try {
    (void)a.block_size(&on_stack);
    ADD_FAILURE() << "block_size of a stack address";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), EINVAL) << e.what();
  }
  try {
    (void)a.reallocate(&on_stack, 100);
    ADD_FAILURE() << "reallocate of a stack address";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), EINVAL) << e.what();
  }
  CountErrors errors;
  EXPECT_EQ(a.try_reallocate(&on_stack, 100), nullptr);
  EXPECT_EQ(errors.count(), 1);
  EXPECT_EQ(a.stats().in_use, 0u);
}

// ---- Offsets ----

TEST_F(ArenaTest, OffsetOfAndAtRoundTrip) {
  Arena a = Arena::create(name_);
  EXPECT_EQ(a.offset_of(nullptr), 0u);
  EXPECT_EQ(a.at(0), nullptr);
  for (std::size_t size : {std::size_t{16}, std::size_t{5000}, std::size_t{300000}}) {
    void* p = a.allocate(size);
    const std::uint64_t off = a.offset_of(p);
    EXPECT_GT(off, 0u);
    EXPECT_LT(off, a.size());
    EXPECT_EQ(a.at(off), p);
    EXPECT_EQ(static_cast<std::byte*>(a.base()) + off, p);
    EXPECT_EQ(a.offset_of(static_cast<std::byte*>(p) + 10), off + 10);
  }
  int on_stack = 0;
  const auto expect_einval = [](const std::function<void()>& f, const char* what) {
    try {
      f();
      ADD_FAILURE() << what << " did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.errnum(), EINVAL) << e.what();
    }
  };
  expect_einval([&] { (void)a.offset_of(&on_stack); }, "offset_of(stack)");
  expect_einval([&] { (void)a.offset_of(static_cast<std::byte*>(a.base()) + a.max_size()); },
                "offset_of(end of the reservation)");
  expect_einval([&] { (void)a.at(a.size()); }, "at(size)");
  expect_einval([&] { (void)a.at(~std::uint64_t{0}); }, "at(2^64-1)");
}

TEST(OffsetT, IsATrivialHandle) {
  static_assert(std::is_trivially_copyable_v<Offset<double>>);
  static_assert(sizeof(Offset<char>) == 8);
  constexpr Offset<int> none;
  static_assert(!none && none.value() == 0);
  constexpr Offset<int> a(64), b(128), c(64);
  static_assert(a && a.value() == 64);
  static_assert(a < b && a == c && b > c && a != b);
  Offset<int> copy = b;
  EXPECT_EQ(copy.value(), 128u);
  copy = a;
  EXPECT_EQ(copy, a);
}

TEST_F(ArenaTest, OffsetTLeadsToTheSameObjectInEveryMapping) {
  Arena a = Arena::create(name_);
  auto* x = static_cast<long*>(a.allocate(sizeof(long)));
  *x = 4242;
  const Offset<long> o(a.offset_of(x));
  Arena b = Arena::open(name_);  // another mapping, at another address
  ASSERT_NE(a.base(), b.base());
  EXPECT_EQ(*static_cast<long*>(b.at(o.value())), 4242);
}

// ---- Ptr<T> ----

TEST(PtrT, NullAndBool) {
  Ptr<int> p;
  Ptr<int> q(nullptr);
  EXPECT_FALSE(p);
  EXPECT_EQ(p.get(), nullptr);
  EXPECT_TRUE(p == nullptr);
  EXPECT_EQ(p, q);
  int x = 1;
  p = &x;
  EXPECT_TRUE(p);
  EXPECT_FALSE(p == nullptr);
  p = nullptr;
  EXPECT_FALSE(p);
  Ptr<int> copy_of_null(q);
  EXPECT_FALSE(copy_of_null);
}

TEST(PtrT, CopiesRecomputeTheDistance) {
  int xs[4] = {10, 20, 30, 40};
  Ptr<int> p(&xs[1]);
  EXPECT_EQ(p.get(), &xs[1]);
  auto far = std::make_unique<Ptr<int>>(p);  // a copy at a very different address
  EXPECT_EQ(far->get(), &xs[1]);
  EXPECT_EQ(**far, 20);
  Ptr<int> assigned;
  assigned = *far;
  EXPECT_EQ(assigned.get(), &xs[1]);
  std::vector<Ptr<int>> many(50, p);  // copies at fifty addresses
  for (const Ptr<int>& m : many) EXPECT_EQ(m.get(), &xs[1]);
  struct Pair {
    int v;
    Ptr<int> to;
  };
  Pair pr{5, nullptr};
  pr.to = &pr.v;
  Pair moved = pr;  // copying a struct copies the Ptr by its copy constructor
  EXPECT_EQ(moved.to.get(), &pr.v);
}

TEST(PtrT, ArithmeticAndComparison) {
  int xs[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  Ptr<int> p(&xs[2]);
  EXPECT_EQ(*p, 2);
  EXPECT_EQ(p[3], 5);
  EXPECT_EQ(*(p + 4), 6);
  EXPECT_EQ(*(4 + p), 6);
  EXPECT_EQ(*(p - 2), 0);
  Ptr<int> q = p;
  ++q;
  EXPECT_EQ(*q, 3);
  q++;
  EXPECT_EQ(*q, 4);
  --q;
  EXPECT_EQ(*q, 3);
  q--;
  EXPECT_EQ(q, p);
  q += 5;
  EXPECT_EQ(q - p, 5);
  EXPECT_EQ(p - q, -5);
  q -= 1;
  EXPECT_EQ(*q, 6);
  EXPECT_TRUE(p < q);
  EXPECT_TRUE(q > p);
  EXPECT_TRUE(p <= p);
  EXPECT_TRUE(p != q);
  EXPECT_EQ(std::pointer_traits<Ptr<int>>::to_address(q), &xs[6]);
  EXPECT_EQ(std::pointer_traits<Ptr<int>>::pointer_to(xs[7]).get(), &xs[7]);
  Ptr<void> v = p;
  EXPECT_EQ(v.get(), static_cast<void*>(&xs[2]));
  EXPECT_EQ(Ptr<int>::from(v).get(), &xs[2]);
  Ptr<const int> c = p;
  EXPECT_EQ(*c, 2);
  EXPECT_EQ(Ptr<int>::from(c).get(), &xs[2]);
  struct S {
    int a, b;
  };
  S s{1, 2};
  Ptr<S> ps(&s);
  EXPECT_EQ(ps->b, 2);
}

// A Ptr stored in the arena leads to the same object through any mapping of it.
TEST_F(ArenaTest, PtrInTheArenaWorksAtAnotherBaseAddress) {
  struct Node {
    Ptr<Node> next;
    int value;
  };
  Arena a = Arena::create(name_);
  auto* first = ::new (a.allocate(sizeof(Node))) Node{nullptr, 1};
  auto* second = ::new (a.allocate(sizeof(Node))) Node{nullptr, 2};
  first->next = second;
  a.set_root(first);
  Arena b = Arena::open(name_);
  ASSERT_NE(a.base(), b.base());
  auto* n = static_cast<Node*>(b.root());
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->value, 1);
  ASSERT_TRUE(n->next);
  EXPECT_EQ(n->next->value, 2);
  EXPECT_EQ(b.offset_of(n->next.get()), a.offset_of(second));
  EXPECT_FALSE(n->next->next);
}

// ---- The root datum ----

TEST_F(ArenaTest, RootSetGetAndCompareExchange) {
  Arena a = Arena::create(name_);
  EXPECT_EQ(a.root(), nullptr);
  void* x = a.allocate(32);
  void* y = a.allocate(32);
  a.set_root(x);
  EXPECT_EQ(a.root(), x);
  void* expected = nullptr;
  EXPECT_FALSE(a.compare_exchange_root(expected, y));
  EXPECT_EQ(expected, x);  // a failed exchange reports what is there
  EXPECT_EQ(a.root(), x);
  EXPECT_TRUE(a.compare_exchange_root(expected, y));
  EXPECT_EQ(a.root(), y);
  expected = y;
  EXPECT_TRUE(a.compare_exchange_root(expected, nullptr));
  EXPECT_EQ(a.root(), nullptr);
  a.set_root(y);
  a.set_root(nullptr);
  EXPECT_EQ(a.root(), nullptr);
  int on_stack = 0;
  try {
    a.set_root(&on_stack);
    ADD_FAILURE() << "set_root took a pointer outside the arena";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), EINVAL) << e.what();
  }
  EXPECT_EQ(a.root(), nullptr);
  Arena b = Arena::open(name_);
  a.set_root(x);
  EXPECT_EQ(b.offset_of(b.root()), a.offset_of(x));
  EXPECT_EQ(Arena::inspect(name_).root, a.offset_of(x));
}

// ---- Named objects ----

struct Counted {
  static inline int made = 0;
  static inline int destroyed = 0;
  explicit Counted(int v) : value(v) { ++made; }
  ~Counted() { ++destroyed; }
  Counted(const Counted&) = delete;
  Counted& operator=(const Counted&) = delete;
  int value;
};

struct Unrelated {
  long x = 0;
};

struct ThrowsOnConstruction {
  ThrowsOnConstruction() { throw std::runtime_error("constructor failed"); }
  int unused = 0;
};

TEST_F(ArenaTest, NamedObjectsConstructFindDestroy) {
  Counted::made = Counted::destroyed = 0;
  Arena a = Arena::create(name_);
  Counted* c = a.construct<Counted>("counter", 7);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->value, 7);
  EXPECT_EQ(Counted::made, 1);
  EXPECT_EQ(a.find<Counted>("counter"), c);
  EXPECT_EQ(a.find_or_construct<Counted>("counter", 99), c);  // found: not constructed
  EXPECT_EQ(Counted::made, 1);
  EXPECT_EQ(c->value, 7);
  EXPECT_EQ(a.find<Counted>("absent"), nullptr);
  try {
    (void)a.construct<Counted>("counter", 8);
    ADD_FAILURE() << "constructed an existing name";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), EEXIST) << e.what();
  }
  EXPECT_EQ(Counted::made, 1);
  try {
    (void)a.find<Unrelated>("counter");
    ADD_FAILURE() << "found an object as another type";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), EINVAL) << e.what();
  }
  try {
    (void)a.find_or_construct<Unrelated>("counter");
    ADD_FAILURE() << "find_or_construct as another type";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), EINVAL) << e.what();
  }
  try {
    (void)a.destroy<Unrelated>("counter");
    ADD_FAILURE() << "destroyed an object as another type";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), EINVAL) << e.what();
  }
  EXPECT_EQ(Counted::destroyed, 0);
  EXPECT_EQ(a.names(), std::vector<std::string>{"counter"});
  Unrelated* u = a.find_or_construct<Unrelated>("other");
  EXPECT_EQ(u->x, 0);
  auto names = a.names();
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"counter", "other"}));
  EXPECT_TRUE(a.destroy<Counted>("counter"));
  EXPECT_EQ(Counted::destroyed, 1);
  EXPECT_EQ(a.find<Counted>("counter"), nullptr);
  EXPECT_FALSE(a.destroy<Counted>("counter"));
  EXPECT_EQ(a.names(), std::vector<std::string>{"other"});
  EXPECT_TRUE(a.destroy<Unrelated>("other"));
  EXPECT_TRUE(a.names().empty());
  EXPECT_EQ(a.check(), "");
}

TEST_F(ArenaTest, NamedObjectsSurviveTableGrowthAndNamesAreValidated) {
  Arena a = Arena::create(name_);
  std::vector<long*> made;
  for (int i = 0; i < 300; ++i) {
    long* p = a.construct<long>("n" + std::to_string(i), i * 3L);
    made.push_back(p);
  }
  for (int i = 0; i < 300; i += 2) EXPECT_TRUE(a.destroy<long>("n" + std::to_string(i)));
  for (int i = 0; i < 300; ++i) {
    long* p = a.find<long>("n" + std::to_string(i));
    if (i % 2 == 0) {
      EXPECT_EQ(p, nullptr) << i;
    } else {
      ASSERT_NE(p, nullptr) << i;
      EXPECT_EQ(p, made[static_cast<std::size_t>(i)]);
      EXPECT_EQ(*p, i * 3L);
    }
  }
  EXPECT_EQ(a.names().size(), 150u);
  for (const std::string& bad : {std::string(), std::string(256, 'x')}) {
    try {
      (void)a.construct<long>(bad, 1L);
      ADD_FAILURE() << "accepted a name of " << bad.size() << " bytes";
    } catch (const Error& e) {
      EXPECT_EQ(e.errnum(), EINVAL) << e.what();
    }
  }
  EXPECT_NE(a.construct<long>(std::string(255, 'y'), 1L), nullptr);
  EXPECT_EQ(a.check(), "");
}

TEST_F(ArenaTest, AThrowingConstructorLeavesNoName) {
  Arena a = Arena::create(name_);
  const std::uint64_t before = a.stats().in_use;
  EXPECT_THROW((void)a.construct<ThrowsOnConstruction>("boom"), std::runtime_error);
  EXPECT_EQ(a.find<ThrowsOnConstruction>("boom"), nullptr);
  EXPECT_TRUE(a.names().empty());
  EXPECT_NE(a.construct<long>("boom", 5L), nullptr);  // the name is free again
  EXPECT_EQ(a.check(), "");
  EXPECT_GE(a.stats().in_use, before);
}

// ---- Statistics ----

TEST_F(ArenaTest, StatsMoveAsBlocksComeAndGo) {
  Arena a = Arena::create(name_);
  const ArenaStats s0 = a.stats();
  EXPECT_EQ(s0.size, a.size());
  EXPECT_EQ(s0.max_size, a.max_size());
  EXPECT_GT(s0.metadata, 0u);
  EXPECT_EQ(s0.metadata % kPage, 0u);
  EXPECT_EQ(s0.users, 1u);
  EXPECT_EQ(s0.free, s0.size - s0.metadata - s0.in_use);

  void* small = a.allocate(100);  // class 112
  const ArenaStats s1 = a.stats();
  EXPECT_EQ(s1.in_use - s0.in_use, 112u);
  EXPECT_EQ(s1.pages_small, s0.pages_small + 16);  // a growing arena's spans: 64 KiB
  EXPECT_EQ(s1.heaps, 1u);
  const auto cls = std::find_if(s1.classes.begin(), s1.classes.end(),
                                [](const ArenaStats::SizeClass& c) { return c.block_size == 112; });
  ASSERT_NE(cls, s1.classes.end());
  EXPECT_EQ(cls->spans, 1u);
  EXPECT_EQ(cls->in_use, 1u);
  EXPECT_EQ(cls->span_pages, 16u);
  EXPECT_EQ(cls->blocks, (16 * kPage - arena::kSpanHeaderSize) / 112);
  EXPECT_GT(s1.fragmentation, 0.9);
  EXPECT_LT(s1.fragmentation, 1.0);

  void* large = a.allocate(100000);  // 25 pages, its header included
  const ArenaStats s2 = a.stats();
  EXPECT_EQ(s2.large_blocks, s1.large_blocks + 1);
  EXPECT_EQ(s2.pages_large, s1.pages_large + 25);
  EXPECT_EQ(s2.in_use - s1.in_use, 100000u);
  EXPECT_EQ(s2.free, s2.size - s2.metadata - s2.in_use);
  EXPECT_EQ(s2.pages_free + s2.pages_small + s2.pages_large, (s2.size - s2.metadata) / kPage);

  a.deallocate(large);
  const ArenaStats s3 = a.stats();
  EXPECT_EQ(s3.large_blocks, s1.large_blocks);
  EXPECT_EQ(s3.pages_large, s1.pages_large);
  EXPECT_EQ(s3.in_use, s1.in_use);
  a.deallocate(small);
  EXPECT_EQ(a.stats().in_use, s0.in_use);
}

// ---- Users ----

TEST_F(ArenaTest, UsersListsEachHandleAndItsHeaps) {
  Arena a = Arena::create(name_);
  auto users = a.users();
  ASSERT_EQ(users.size(), 1u);
  EXPECT_EQ(users[0].pid, ::getpid());
  EXPECT_TRUE(users[0].alive);
  EXPECT_TRUE(users[0].self);
  EXPECT_GT(users[0].joined_ns, 0u);
  EXPECT_EQ(users[0].heaps, 0u);
  a.deallocate(a.allocate(10));
  EXPECT_EQ(a.users()[0].heaps, 1u);
  {
    Arena b = Arena::open(name_);
    users = b.users();
    ASSERT_EQ(users.size(), 2u);
    EXPECT_EQ(std::count_if(users.begin(), users.end(), [](const ArenaUser& u) { return u.self; }), 1);
  }
  EXPECT_EQ(a.users().size(), 1u);
  EXPECT_EQ(a.recover(), 0u);
}

// ---- Inspecting ----

TEST_F(ArenaTest, IsArenaAndInspect) {
  ArenaConfig c;
  c.max_users = 5;
  c.max_threads = 7;
  c.max_size = 8 * kMiB;
  Arena a = Arena::create(name_, c);
  (void)a.construct<long>("alpha", 1L);
  (void)a.construct<int>("beta", 2);
  void* r = a.allocate(1000);
  a.set_root(r);
  EXPECT_TRUE(Arena::is_arena(name_));
  const ArenaInfo info = Arena::inspect(name_);
  EXPECT_EQ(info.name, name_);
  EXPECT_EQ(info.version, arena::kFormatVersion);
  EXPECT_EQ(info.size, a.size());
  EXPECT_EQ(info.max_size, 8 * kMiB);
  EXPECT_TRUE(info.autogrow);
  EXPECT_EQ(info.max_users, 5u);
  EXPECT_EQ(info.max_threads, 7u);
  EXPECT_EQ(info.mode, 0600u);
  EXPECT_GT(info.created_ns, 0u);
  EXPECT_EQ(info.root, a.offset_of(r));
  ASSERT_EQ(info.users.size(), 1u);
  EXPECT_EQ(info.users[0].pid, ::getpid());
  EXPECT_TRUE(info.users[0].alive);
  EXPECT_EQ(info.stats.in_use, a.stats().in_use);
  EXPECT_EQ(info.stats.users, 1u);
  auto names = info.names;
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"alpha", "beta"}));

  const std::string plain = unique_name("/", "plain");
  Remover rm(plain);
  { Segment s = Segment::create(plain, 64 * kKiB); }
  EXPECT_FALSE(Arena::is_arena(plain));
  EXPECT_FALSE(Arena::is_arena(unique_name("/", "missing")));
  EXPECT_FALSE(Arena::is_arena("not a name"));
  try {
    (void)Arena::inspect(plain);
    ADD_FAILURE() << "inspected a plain segment";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), EINVAL) << e.what();
  }
}

// ---- Allocator<T> containers, built by one process and changed by another ----

using IntVector = std::vector<int, Allocator<int>>;
using WordDeque = std::deque<std::uint64_t, Allocator<std::uint64_t>>;

TEST_F(ArenaTest, AllocatorCompares) {
  Arena a = Arena::create(name_);
  Allocator<int> x(a);
  Allocator<long> y(x);
  EXPECT_TRUE(x == y);
  EXPECT_EQ(x.base(), a.base());
  const std::string other_name = unique_name("/", "other");
  Remover rm(other_name);
  Arena b = Arena::create(other_name);
  EXPECT_FALSE(x == Allocator<int>(b));
  Ptr<int> p = x.allocate(10);
  p[9] = 1;
  x.deallocate(p, 10);
  EXPECT_EQ(a.stats().in_use, 0u);
}

TEST_F(ArenaTest, VectorAndDequeChangedByAForkedProcess) {
  Arena a = Arena::create(name_);
  auto* v = a.construct<IntVector>("vector", Allocator<int>(a));
  auto* d = a.construct<WordDeque>("deque", Allocator<std::uint64_t>(a));
  for (int i = 0; i < 1000; ++i) v->push_back(i);
  for (std::uint64_t i = 0; i < 3000; ++i) d->push_back(i * i);
  Children kids;
  const int pid = kids.start([&] {
    // A mapping of its own, at another address than the one inherited.
    Arena mine = Arena::open(name_);
    if (mine.base() == a.base()) return 2;
    auto* cv = mine.find<IntVector>("vector");
    auto* cd = mine.find<WordDeque>("deque");
    if (cv == nullptr || cd == nullptr) return 3;
    if (cv->size() != 1000 || (*cv)[999] != 999) return 4;
    if (cd->size() != 3000 || (*cd)[2999] != 2999u * 2999u) return 5;
    for (int i = 1000; i < 5000; ++i) cv->push_back(i);  // reallocates in the arena
    cv->erase(cv->begin(), cv->begin() + 10);
    for (std::uint64_t i = 0; i < 500; ++i) cd->push_front(~i);
    for (int i = 0; i < 100; ++i) cd->pop_back();
    mine.close();
    return 0;
  });
  ASSERT_EQ(exit_code(kids.wait(pid)), 0);
  ASSERT_EQ(v->size(), 4990u);
  for (std::size_t i = 0; i < v->size(); ++i) ASSERT_EQ((*v)[i], static_cast<int>(i + 10)) << i;
  ASSERT_EQ(d->size(), 3400u);
  for (std::uint64_t i = 0; i < 500; ++i) ASSERT_EQ((*d)[i], ~(499 - i)) << i;
  for (std::uint64_t i = 0; i < 2900; ++i) ASSERT_EQ((*d)[500 + i], i * i) << i;
  v->push_back(-1);  // and the parent can go on changing them
  d->push_back(7);
  EXPECT_EQ(a.check(), "");
  EXPECT_TRUE(a.destroy<IntVector>("vector"));
  EXPECT_TRUE(a.destroy<WordDeque>("deque"));
  EXPECT_EQ(a.check(), "");
}

// ---- Anonymous arenas and fork ----

TEST(ArenaAnonymous, SharedWithAForkedChildThatJoinsAsItself) {
  Arena a = Arena::create_anonymous();
  EXPECT_TRUE(a.created());
  auto* mine = static_cast<std::uint64_t*>(a.allocate(sizeof(std::uint64_t) * 4));
  mine[0] = 0x1234;
  Children kids;
  const int pid = kids.start([&] {
    if (mine[0] != 0x1234) return 2;
    std::vector<void*> blocks;
    for (int i = 0; i < 2000; ++i) blocks.push_back(a.allocate(static_cast<std::size_t>(16 + i % 700)));
    for (std::size_t i = 0; i < blocks.size(); i += 2) a.deallocate(blocks[i]);
    for (std::size_t i = 1; i < blocks.size(); i += 2) a.deallocate(blocks[i]);
    auto* answer = static_cast<std::uint64_t*>(a.allocate(sizeof(std::uint64_t)));
    *answer = 0xfeed;
    mine[3] = a.offset_of(answer);  // [0] and [1] are the free list's once freed
    const auto users = a.users();
    if (users.size() != 2) return 3;
    int selves = 0;
    for (const ArenaUser& u : users) {
      if (u.self && u.pid != ::getpid()) return 4;
      selves += u.self ? 1 : 0;
    }
    if (selves != 1) return 5;
    a.deallocate(mine);  // a block the parent made (it still reads mine[3]: a test shortcut)
    return a.check().empty() ? 0 : 6;
  });
  ASSERT_EQ(exit_code(kids.wait(pid)), 0);
  ASSERT_NE(mine[3], 0u);
  EXPECT_EQ(*static_cast<std::uint64_t*>(a.at(mine[3])), 0xfeedu);
  // The child exited without leaving: it is listed as dead until recovered.
  auto users = a.users();
  ASSERT_EQ(users.size(), 2u);
  for (const ArenaUser& u : users) EXPECT_EQ(u.alive, u.pid == ::getpid()) << u.pid;
  EXPECT_EQ(a.recover(), 1u);
  EXPECT_EQ(a.users().size(), 1u);
  EXPECT_EQ(a.check(), "");
}

// A child that closes its copy of a handle it never used must not touch the parent's heaps.
TEST_F(ArenaTest, ForkedChildClosingItsCopyLeavesTheParentsHeapsAlone) {
  Arena a = Arena::create(name_);
  void* p = a.allocate(64);
  const ArenaStats before = a.stats();
  ASSERT_EQ(before.heaps, 1u);
  Children kids;
  const int pid = kids.start([&] {
    a.close();
    return 0;
  });
  ASSERT_EQ(exit_code(kids.wait(pid)), 0);
  EXPECT_EQ(a.stats().heaps, 1u) << "the child released a heap the parent's thread still uses";
  EXPECT_EQ(a.users().size(), 1u);
  EXPECT_EQ(a.users()[0].heaps, 1u);
  a.deallocate(p);
}

// ---- Header validation: foreign bytes are an error, never a crash or a hang ----

void expect_rejected(const std::string& name, const char* cause_part) {
  const Outcome o = in_child([&] { Arena a = Arena::open(name); });
  ASSERT_NE(o.code, kReturned) << "Arena::open accepted it";
  ASSERT_EQ(o.code, kThrewError) << "Arena::open crashed, hung or threw something else (exit "
                                 << o.code << "): " << o.what;
  EXPECT_EQ(o.errnum, EINVAL) << o.what;
  EXPECT_FALSE(o.cause.empty());
  if (cause_part != nullptr) {
    EXPECT_NE(o.what.find(cause_part), std::string::npos) << o.what;
  }
  const Outcome i = in_child([&] { (void)Arena::inspect(name); });
  ASSERT_EQ(i.code, kThrewError) << "Arena::inspect did not throw shmkit::Error (exit " << i.code
                                 << "): " << i.what;
  EXPECT_EQ(i.errnum, EINVAL) << i.what;
}

TEST_F(ArenaTest, OpeningASegmentOfZerosIsEinval) {
  { Segment s = Segment::create(name_, 1 * kMiB); }
  expect_rejected(name_, "not a shmkit arena");
  EXPECT_FALSE(Arena::is_arena(name_));
}

TEST_F(ArenaTest, OpeningRandomBytesIsEinval) {
  std::mt19937_64 rng(12345);
  for (std::size_t size : {std::size_t{100}, std::size_t{4096}, 1 * kMiB}) {
    {
      Segment s = Segment::create(name_, size);
      auto* w = static_cast<unsigned char*>(s.data());
      for (std::size_t i = 0; i < size; ++i) w[i] = static_cast<unsigned char>(rng());
    }
    expect_rejected(name_, nullptr);
    Segment::remove(name_);
  }
}

TEST_F(ArenaTest, OpeningAnEmptySegmentIsEinval) {
  { Segment s = Segment::create(name_, 64); }
  expect_rejected(name_, nullptr);
}

TEST(ArenaFile, OpeningAFileThatIsNotAnArenaIsEinval) {
  TempDir dir("notarena");
  const std::string path = dir.path() + "/text";
  {
    std::ofstream out(path);
    for (int i = 0; i < 5000; ++i) out << "this is not an arena, line " << i << '\n';
  }
  expect_rejected("file:" + path, "not a shmkit arena");
  const std::string empty = dir.path() + "/empty";
  std::ofstream(empty).close();
  expect_rejected("file:" + empty, nullptr);
}

TEST(ArenaFile, OpeningATruncatedArenaIsEinval) {
  TempDir dir("truncated");
  for (std::size_t keep : {std::size_t{0}, std::size_t{512}, std::size_t{4096}, 2 * kPage,
                           1 * kMiB - kPage}) {
    const std::string path = dir.path() + "/arena-" + std::to_string(keep);
    const std::string name = "file:" + path;
    {
      ArenaConfig c;
      c.size = 1 * kMiB;
      Arena a = Arena::create(name, c);
      ASSERT_EQ(a.size(), 1 * kMiB);
      a.deallocate(a.allocate(1000));
    }
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(keep)), 0);
    SCOPED_TRACE("truncated to " + std::to_string(keep));
    expect_rejected(name, keep >= sizeof(arena::ArenaHeader) ? "truncated" : nullptr);
  }
}

// One header field changed through a raw mapping.
struct Corruption {
  const char* what;
  std::function<void(arena::ArenaHeader&)> change;
  const char* cause;  // part of the message expected
};

template <class T>
void poke(arena::ArenaHeader& h, std::size_t offset, T value) {
  std::memcpy(reinterpret_cast<std::byte*>(&h) + offset, &value, sizeof value);
}
template <class T>
T peek(const arena::ArenaHeader& h, std::size_t offset) {
  T value;
  std::memcpy(&value, reinterpret_cast<const std::byte*>(&h) + offset, sizeof value);
  return value;
}

#define SHMKIT_AT(field) offsetof(arena::ArenaHeader, field)

std::vector<Corruption> corruptions() {
  using H = arena::ArenaHeader;
  const auto add32 = [](std::size_t off, std::uint32_t d) {
    return [off, d](H& h) { poke<std::uint32_t>(h, off, peek<std::uint32_t>(h, off) + d); };
  };
  const auto set32 = [](std::size_t off, std::uint32_t v) {
    return [off, v](H& h) { poke<std::uint32_t>(h, off, v); };
  };
  const auto set64 = [](std::size_t off, std::uint64_t v) {
    return [off, v](H& h) { poke<std::uint64_t>(h, off, v); };
  };
  const char* bad = "corrupted";
  return {
      {"magic, one bit", [](H& h) { poke<std::uint8_t>(h, 0, peek<std::uint8_t>(h, 0) ^ 1); },
       "not a shmkit arena"},
      {"magic, zero", set64(SHMKIT_AT(magic), 0), "not a shmkit arena"},
      {"magic, byte-swapped", set64(SHMKIT_AT(magic), __builtin_bswap64(arena::kMagic)),
       "not a shmkit arena"},
      {"version + 1", add32(SHMKIT_AT(version), 1), "version"},
      {"version 0", set32(SHMKIT_AT(version), 0), "version"},
      {"fingerprint", add32(SHMKIT_AT(fingerprint), 1), "layout"},
      {"state empty", set32(SHMKIT_AT(state), 0), "initialised"},
      {"state initializing", set32(SHMKIT_AT(state), 1), "initialised"},
      {"state 77", set32(SHMKIT_AT(state), 77), nullptr},
      {"max_users 0", set32(SHMKIT_AT(max_users), 0), bad},
      {"max_users 2^32-1", set32(SHMKIT_AT(max_users), 0xffffffffu), bad},
      {"max_heaps 0", set32(SHMKIT_AT(max_heaps), 0), bad},
      {"max_heaps + 1", add32(SHMKIT_AT(max_heaps), 1), bad},
      {"meta_pages 0", set32(SHMKIT_AT(meta_pages), 0), bad},
      {"max_pages 0", set32(SHMKIT_AT(max_pages), 0), bad},
      {"max_pages + 1", add32(SHMKIT_AT(max_pages), 1), bad},
      {"users_offset + 64", add32(SHMKIT_AT(users_offset), 64), bad},
      {"heaps_offset - 64", add32(SHMKIT_AT(heaps_offset), 0xffffffc0u), bad},
      {"page_map_offset + 1", add32(SHMKIT_AT(page_map_offset), 1), bad},
      {"page_map_offset past the metadata", set32(SHMKIT_AT(page_map_offset), 0x7fffffffu), bad},
      {"size 0", set64(SHMKIT_AT(size), 0), bad},
      {"size + 1", [](H& h) { poke<std::uint64_t>(h, SHMKIT_AT(size), peek<std::uint64_t>(h, SHMKIT_AT(size)) + 1); }, bad},
      {"size past max_size",
       [](H& h) { poke<std::uint64_t>(h, SHMKIT_AT(size), peek<std::uint64_t>(h, SHMKIT_AT(max_size)) + kPage); },
       bad},
      {"size past the segment",
       [](H& h) { poke<std::uint64_t>(h, SHMKIT_AT(size), peek<std::uint64_t>(h, SHMKIT_AT(max_size))); },
       "truncated"},
      {"max_size + 1 frame",
       [](H& h) { poke<std::uint64_t>(h, SHMKIT_AT(max_size), peek<std::uint64_t>(h, SHMKIT_AT(max_size)) + kPage); },
       bad},
      {"max_size 2^62", set64(SHMKIT_AT(max_size), std::uint64_t{1} << 62), bad},
      {"max_size 2^64-1", set64(SHMKIT_AT(max_size), ~std::uint64_t{0}), bad},
  };
}

class ArenaHeaderCorruption : public ::testing::TestWithParam<std::size_t> {};

TEST_P(ArenaHeaderCorruption, OpenIsEinvalNeverACrash) {
  const Corruption c = corruptions()[GetParam()];
  SCOPED_TRACE(c.what);
  const std::string name = unique_name("/", "corrupt");
  Remover rm(name);
  {
    ArenaConfig config;
    config.max_size = 16 * kMiB;
    Arena a = Arena::create(name, config);
    a.set_root(a.allocate(100));
    (void)a.construct<long>("named", 1L);
  }
  {
    Segment raw = Segment::open(name);
    c.change(*static_cast<arena::ArenaHeader*>(raw.data()));
  }
  expect_rejected(name, c.cause);
}

INSTANTIATE_TEST_SUITE_P(Fields, ArenaHeaderCorruption,
                         ::testing::Range(std::size_t{0}, corruptions().size()),
                         [](const ::testing::TestParamInfo<std::size_t>& param) {
                           std::string n = corruptions()[param.param].what;
                           for (char& ch : n) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

// The locks in the header are foreign bytes too: a lock word naming a thread that does not
// exist must not make open() wait forever. Opening may succeed (the owner is dead) or fail.
TEST_F(ArenaTest, GarbageInAHeaderLockWordDoesNotHangOpen) {
  for (std::size_t lock : {SHMKIT_AT(init_lock), SHMKIT_AT(arena_lock)}) {
    SCOPED_TRACE(lock == SHMKIT_AT(init_lock) ? "init_lock" : "arena_lock");
    {
      Arena a = Arena::create(name_);
    }
    {
      Segment raw = Segment::open(name_);
      // A thread id above any pid_max, with no owner-died bit: a holder the kernel never had.
      poke<std::uint32_t>(*static_cast<arena::ArenaHeader*>(raw.data()), lock, 0x3ffffff0u);
    }
    const Outcome o = in_child([&] { Arena a = Arena::open(name_); }, 2);
    EXPECT_TRUE(o.code == kReturned || o.code == kThrewError)
        << "Arena::open " << (o.code == 128 + SIGKILL ? "hung" : "crashed") << " (exit " << o.code
        << ") on a lock word naming thread 0x3ffffff0";
    Segment::remove(name_);
  }
}

// Fields open() cannot judge (they change as the arena is used) must still never be followed
// blindly: a directory offset past the end must not crash names() or find().
TEST_F(ArenaTest, CorruptedDirectoryOffsetIsNotFollowedBlindly) {
  {
    Arena a = Arena::create(name_);
    (void)a.construct<long>("named", 1L);
  }
  {
    Segment raw = Segment::open(name_);
    poke<std::uint64_t>(*static_cast<arena::ArenaHeader*>(raw.data()), SHMKIT_AT(directory),
                        std::uint64_t{1} << 45);
  }
  const Outcome o = in_child([&] {
    Arena a = Arena::open(name_);
    (void)a.names();
    (void)a.find<long>("named");
  });
  EXPECT_TRUE(o.code == kReturned || o.code == kThrewError)
      << "names()/find() crashed (exit " << o.code << ")";
  const Outcome i = in_child([&] { (void)Arena::inspect(name_); });
  EXPECT_TRUE(i.code == kReturned || i.code == kThrewError) << "inspect crashed (exit " << i.code << ")";
}

#undef SHMKIT_AT

}  // namespace
}  // namespace shmkit
