// SPDX-License-Identifier: MIT
// Containers in an arena: Allocator<T> with std::vector and std::deque, shmkit::String and
// shmkit::HashMap, built by one process and read and changed by another.
#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "shmkit/allocator.hpp"
#include "shmkit/hash_map.hpp"
#include "shmkit/string.hpp"
#include "test_support.hpp"

namespace shmkit {
namespace {

using test::exit_code;
using test::run_in_child;

using Ints = std::vector<std::uint64_t, Allocator<std::uint64_t>>;
using Deque = std::deque<std::uint32_t, Allocator<std::uint32_t>>;
using Names = HashMap<String, std::uint64_t>;
using Numbers = HashMap<std::uint64_t, double>;

Arena make_arena() { return Arena::create_anonymous({.size = 8 << 20, .max_size = 64 << 20}); }

TEST(Containers, VectorBuiltHereIsReadAndGrownInAChild) {
  Arena a = make_arena();
  Ints* v = a.construct<Ints>("v", Allocator<std::uint64_t>(a));
  for (std::uint64_t i = 0; i < 1000; ++i) v->push_back(i * i);
  const int status = run_in_child([&] {
    Ints* w = a.find<Ints>("v");
    if (w == nullptr || w->size() != 1000 || (*w)[999] != 999u * 999u) return 1;
    for (std::uint64_t i = 0; i < 100000; ++i) w->push_back(i);  // reallocates in the child
    return 0;
  });
  ASSERT_EQ(exit_code(status), 0);
  ASSERT_EQ(v->size(), 101000u);
  EXPECT_EQ((*v)[10], 100u);
  EXPECT_EQ(v->back(), 99999u);
  EXPECT_EQ(a.check(), "");
  ASSERT_TRUE(a.destroy<Ints>("v"));
  EXPECT_EQ(a.check(), "");
}

TEST(Containers, DequeWorksAcrossProcesses) {
  Arena a = make_arena();
  Deque* d = a.construct<Deque>("d", Allocator<std::uint32_t>(a));
  for (std::uint32_t i = 0; i < 5000; ++i) d->push_back(i);
  const int status = run_in_child([&] {
    Deque* e = a.find<Deque>("d");
    if (e == nullptr || e->size() != 5000 || e->front() != 0 || (*e)[4999] != 4999) return 1;
    for (std::uint32_t i = 0; i < 1000; ++i) e->push_front(i);
    e->pop_back();
    return 0;
  });
  ASSERT_EQ(exit_code(status), 0);
  EXPECT_EQ(d->size(), 5999u);
  EXPECT_EQ(d->front(), 999u);
  EXPECT_EQ(d->back(), 4998u);
  ASSERT_TRUE(a.destroy<Deque>("d"));
  EXPECT_EQ(a.check(), "");
}

TEST(Containers, StringBehavesAsAString) {
  Arena a = make_arena();
  String* s = a.construct<String>("s", "hello", Allocator<char>(a));
  EXPECT_EQ(*s, "hello");
  EXPECT_EQ(s->size(), 5u);
  *s += ", world";
  EXPECT_STREQ(s->c_str(), "hello, world");
  EXPECT_TRUE(*s < "hellz");
  String copy(*s);
  copy.assign("x");
  EXPECT_EQ(*s, "hello, world");
  EXPECT_EQ(copy, "x");
  s->clear();
  EXPECT_TRUE(s->empty());
  EXPECT_STREQ(s->c_str(), "");
  const int status = run_in_child([&] {
    String* t = a.find<String>("s");
    t->assign(std::string(1000, 'z'));  // long: the characters move to a new block
    return 0;
  });
  ASSERT_EQ(exit_code(status), 0);
  EXPECT_EQ(s->size(), 1000u);
  EXPECT_EQ((*s)[999], 'z');
}

TEST(Containers, HashMapWithStringKeysAcrossProcesses) {
  Arena a = make_arena();
  Names* m = a.construct<Names>("names", Allocator<char>(a));
  for (std::uint64_t i = 0; i < 20000; ++i) {
    EXPECT_TRUE(m->insert_or_assign(String("key" + std::to_string(i), Allocator<char>(a)), i));
  }
  EXPECT_FALSE(m->insert_or_assign(String("key7", Allocator<char>(a)), 70));
  EXPECT_EQ(*m->find(std::string_view("key7")), 70u);
  const int status = run_in_child([&] {
    Names* n = a.find<Names>("names");
    const std::uint64_t* v = n->find(std::string_view("key12345"));
    if (v == nullptr || *v != 12345 || n->size() != 20000) return 1;
    for (std::uint64_t i = 0; i < 20000; i += 2) {
      if (!n->erase(std::string_view("key" + std::to_string(i)))) return 2;
    }
    n->insert_or_assign(String("from child", Allocator<char>(a)), 1);
    return 0;
  });
  ASSERT_EQ(exit_code(status), 0);
  EXPECT_EQ(m->size(), 10001u);
  EXPECT_FALSE(m->contains(std::string_view("key2")));
  EXPECT_TRUE(m->contains(std::string_view("key3")));
  EXPECT_TRUE(m->contains(std::string_view("from child")));
  std::uint64_t sum = 0;
  m->for_each([&](const String&, std::uint64_t v) { sum += v; });
  // The odd keys 1..19999 sum to 10000², key7 holds 70 instead of 7, and "from child" is 1.
  EXPECT_EQ(sum, 10000u * 10000u + 63 + 1);
}

TEST(Containers, HashMapReleasesEverythingWhenDestroyed) {
  Arena a = make_arena();
  const std::uint64_t before = a.stats().in_use;
  Numbers* m = a.construct<Numbers>("numbers", Allocator<char>(a));
  for (std::uint64_t i = 0; i < 50000; ++i) m->insert_or_assign(i, static_cast<double>(i) / 2);
  EXPECT_DOUBLE_EQ(*m->find(std::uint64_t{49999}), 24999.5);
  EXPECT_EQ(m->find(std::uint64_t{50000}), nullptr);
  ASSERT_TRUE(a.destroy<Numbers>("numbers"));
  // Only the directory's own table may remain beyond what was there before.
  EXPECT_LE(a.stats().in_use, before + 1024);
  EXPECT_EQ(a.check(), "");
}

}  // namespace
}  // namespace shmkit
