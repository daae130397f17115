// SPDX-License-Identifier: MIT
// Arena settings beyond the allocator: growth step, same address in every process, System V
// arenas of a fixed size, typed offsets.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "shmkit/arena.hpp"
#include "shmkit/segment.hpp"
#include "test_support.hpp"

namespace shmkit {
namespace {

using test::exit_code;
using test::Remover;
using test::run_in_child;
using test::unique_name;

constexpr std::size_t kMiB = std::size_t{1} << 20;

TEST(ArenaOptions, GrowStepSetsHowMuchEachGrowthAdds) {
  Arena a = Arena::create_anonymous({.size = 2 * kMiB, .max_size = 64 * kMiB});
  EXPECT_EQ(a.grow_step(), 0u);
  a.set_grow_step(kMiB);
  EXPECT_EQ(a.grow_step(), kMiB);
  const std::size_t before = a.size();
  // Fill the arena with large blocks until it must grow once.
  while (a.size() == before) ASSERT_NE(a.try_allocate(256 * 1024), nullptr);
  EXPECT_EQ(a.size(), before + kMiB);  // not doubled
  a.set_grow_step(0);
  const std::size_t now = a.size();
  while (a.size() == now) ASSERT_NE(a.try_allocate(256 * 1024), nullptr);
  EXPECT_EQ(a.size(), now + std::max((now / 16 + 4095) / 4096 * 4096, kMiB));  // a sixteenth, or 1 MiB
  EXPECT_EQ(a.check(), "");
}

TEST(ArenaOptions, SameAddressMapsEveryJoinerWhereTheCreatorDid) {
  const std::string name = unique_name("/", "same-address");
  Remover remover(name);
  Arena a = Arena::create(name, {.size = kMiB, .max_size = 8 * kMiB, .same_address = true});
  char* text = static_cast<char*>(a.allocate(64));
  std::strcpy(text, "a raw pointer, valid everywhere");
  a.set_root(text);
  const int status = run_in_child([&] {
    a.close();  // the inherited mapping is at the same place: let open() find it free
    Arena b = Arena::open(name);
    if (b.base() == nullptr) return 1;
    // A raw pointer from the creator means the same here.
    return std::strcmp(text, "a raw pointer, valid everywhere") == 0 && b.root() == text ? 0 : 2;
  });
  EXPECT_EQ(exit_code(status), 0);
}

TEST(ArenaOptions, SameAddressFailsClearlyWhenTheAddressIsTaken) {
  const std::string name = unique_name("/", "same-address-taken");
  Remover remover(name);
  Arena a = Arena::create(name, {.size = kMiB, .max_size = 8 * kMiB, .same_address = true});
  // In this very process the creator's address is taken (by `a` itself).
  try {
    Arena b = Arena::open(name);
    FAIL() << "a second mapping at the same address must fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), EEXIST) << e.what();
  }
}

TEST(ArenaOptions, SystemVArenasKeepTheirSize) {
  const std::string name = test::unique_sysv_key();
  Remover remover(name);
  Arena a = Arena::create(name, {.size = 2 * kMiB, .max_size = 64 * kMiB});
  EXPECT_EQ(a.max_size(), a.size());
  // It fills up and reports it, rather than growing past what System V can map.
  std::size_t got = 0;
  while (a.try_allocate(64 * 1024) != nullptr) got += 64 * 1024;
  EXPECT_GT(got, 0u);
  EXPECT_LT(got, 2 * kMiB);
  EXPECT_EQ(a.check(), "");
}

TEST(ArenaOptions, TypedOffsetsRoundTrip) {
  Arena a = Arena::create_anonymous({.size = kMiB});
  auto* p = static_cast<std::uint64_t*>(a.allocate(sizeof(std::uint64_t)));
  *p = 7;
  const Offset<std::uint64_t> o = a.offset(p);
  EXPECT_TRUE(o);
  EXPECT_EQ(a.get(o), p);
  EXPECT_EQ(*a.get(o), 7u);
  EXPECT_EQ(a.get(Offset<std::uint64_t>()), nullptr);
  EXPECT_FALSE(a.offset(static_cast<std::uint64_t*>(nullptr)));
}

}  // namespace
}  // namespace shmkit
