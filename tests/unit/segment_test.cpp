// SPDX-License-Identifier: MIT
// Segment in one process: create / open / open_or_create in every namespace, contents,
// options, errors, remove, grow, stat, chmod, list, locking, symlinks and moves.
// Tests over namespaces are parameterised by Kind; every object gets a unique name and a
// Remover constructed before it is created, so a failing test leaves nothing behind.
#include "shmkit/segment.hpp"

#include <gtest/gtest.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include "shmkit/error.hpp"
#include "shmkit/name.hpp"
#include "test_support.hpp"

namespace shmkit {
namespace {

namespace fs = std::filesystem;
using test::Remover;
using test::TempDir;
using test::unique_name;
using test::unique_sysv_key;

const std::size_t kPage = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));

// Fails the test unless `stmt` throws a shmkit::Error with errno `err`.
#define EXPECT_SHMKIT_ERROR(stmt, err)                                                       \
  do {                                                                                       \
    try {                                                                                    \
      stmt;                                                                                  \
      ADD_FAILURE() << #stmt " did not throw (expected " << std::strerror(err) << ")";       \
    } catch (const ::shmkit::Error& shmkit_error_) {                                         \
      EXPECT_EQ(shmkit_error_.errnum(), err)                                                 \
          << #stmt ": expected " << std::strerror(err) << ", got: " << shmkit_error_.what(); \
    }                                                                                        \
  } while (0)

// Runs `f`, which must throw a shmkit::Error, and returns it.
template <class F>
std::optional<Error> error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no shmkit::Error was thrown";
  return std::nullopt;
}

void fill(const Segment& s, std::size_t offset, std::size_t n, unsigned char seed) {
  auto* p = static_cast<unsigned char*>(s.data());
  for (std::size_t i = 0; i < n; ++i) p[offset + i] = static_cast<unsigned char>(seed + i * 7);
}

bool has_pattern(const Segment& s, std::size_t offset, std::size_t n, unsigned char seed) {
  const auto* p = static_cast<const unsigned char*>(s.data());
  for (std::size_t i = 0; i < n; ++i) {
    if (p[offset + i] != static_cast<unsigned char>(seed + i * 7)) return false;
  }
  return true;
}

bool all_zero(const Segment& s, std::size_t offset, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(s.data());
  return std::all_of(p + offset, p + offset + n, [](unsigned char c) { return c == 0; });
}

// Ids of System V segments this process created, read straight from the kernel.
std::set<int> my_sysv_ids() {
  std::set<int> ids;
  std::ifstream in("/proc/sysvipc/shm");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    long key = 0, id = 0, perms = 0, size = 0, cpid = 0;
    if (fields >> key >> id >> perms >> size >> cpid && cpid == ::getpid()) {
      ids.insert(static_cast<int>(id));
    }
  }
  return ids;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- Namespaces ----

using test::Kind;

std::string kind_name(const ::testing::TestParamInfo<Kind>& info) {
  return test::to_string(info.param);
}

class Seg : public ::testing::TestWithParam<Kind> {
 protected:
  // A fresh unique name in this test's namespace; ftok key files and file: objects live in
  // dir_ until the test ends.
  std::string make_name(const std::string& tag) { return test::make_name(GetParam(), dir_, tag); }
  bool is_sysv() const { return GetParam() == Kind::sysv_key || GetParam() == Kind::sysv_ftok; }

  TempDir dir_{"segdir"};
};

const auto kAllKinds = ::testing::Values(Kind::posix, Kind::sysv_key, Kind::sysv_ftok, Kind::file);

// ---- Create ----

TEST_P(Seg, CreateIsZeroFilledSizedAndWritable) {
  const std::string name = make_name("create");
  Remover rm(name);
  Segment s = Segment::create(name, 3 * kPage);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s.created());
  EXPECT_TRUE(s.writable());
  EXPECT_EQ(s.size(), 3 * kPage);
  EXPECT_EQ(s.bytes().size(), 3 * kPage);
  EXPECT_EQ(static_cast<void*>(s.bytes().data()), s.data());
  EXPECT_GE(s.native_handle(), 0);
  EXPECT_TRUE(all_zero(s, 0, s.size()));
  fill(s, 0, s.size(), 1);
  EXPECT_TRUE(has_pattern(s, 0, s.size(), 1));
}

TEST_P(Seg, CreateKeepsTheParsedName) {
  const std::string name = make_name("name");
  Remover rm(name);
  Segment s = Segment::create(name, kPage);
  EXPECT_EQ(s.name(), Name::parse(name));
  EXPECT_EQ(s.ns(), is_sysv()                  ? Namespace::sysv
                    : GetParam() == Kind::file ? Namespace::file
                                               : Namespace::posix);
}

TEST_P(Seg, CreateSizeZeroIsEinvalAndCreatesNothing) {
  const std::string name = make_name("zero");
  Remover rm(name);
  EXPECT_SHMKIT_ERROR(Segment::create(name, 0), EINVAL);
  EXPECT_SHMKIT_ERROR(Segment::open(name), ENOENT);
}

TEST_P(Seg, ExclusiveCreateOfExistingIsEexistAndLeavesItAlone) {
  const std::string name = make_name("excl");
  Remover rm(name);
  Segment first = Segment::create(name, 2 * kPage);
  fill(first, 0, first.size(), 42);
  const auto e = error_of([&] { (void)Segment::create(name, 2 * kPage); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->errnum(), EEXIST) << e->what();
  EXPECT_EQ(e->object(), name);
  EXPECT_SHMKIT_ERROR(Segment::create(name, 4 * kPage), EEXIST);
  EXPECT_TRUE(has_pattern(first, 0, first.size(), 42));
  EXPECT_EQ(Segment::stat(name).size, 2 * kPage);
}

TEST_P(Seg, NonExclusiveCreateOpensTheExistingObject) {
  const std::string name = make_name("nonexcl");
  Remover rm(name);
  Segment first = Segment::create(name, 2 * kPage);
  fill(first, 0, first.size(), 9);
  CreateOptions o;
  o.exclusive = false;
  Segment second = Segment::create(name, 2 * kPage, o);
  EXPECT_FALSE(second.created());
  EXPECT_TRUE(second.writable());
  EXPECT_EQ(second.size(), 2 * kPage);
  EXPECT_TRUE(has_pattern(second, 0, second.size(), 9));
  static_cast<unsigned char*>(second.data())[5] = 0xAB;
  EXPECT_EQ(static_cast<unsigned char*>(first.data())[5], 0xAB);
}

TEST_P(Seg, CreateWithModeRecordsIt) {
  const std::string name = make_name("mode");
  Remover rm(name);
  CreateOptions o;
  o.mode = 0640;
  Segment s = Segment::create(name, kPage, o);
  EXPECT_EQ(s.stat().mode, 0640u);
}

TEST_P(Seg, DefaultModeIs0600) {
  const std::string name = make_name("mode600");
  Remover rm(name);
  Segment s = Segment::create(name, kPage);
  EXPECT_EQ(s.stat().mode, 0600u);
  EXPECT_EQ(Segment::stat(name).mode, 0600u);
}

// ---- Open ----

TEST_P(Seg, OpenSeesTheSameBytes) {
  const std::string name = make_name("open");
  Remover rm(name);
  Segment a = Segment::create(name, 2 * kPage);
  Segment b = Segment::open(name);
  EXPECT_FALSE(b.created());
  EXPECT_TRUE(b.writable());
  EXPECT_EQ(b.size(), 2 * kPage);
  EXPECT_EQ(b.name(), Name::parse(name));
  fill(a, 0, a.size(), 3);
  EXPECT_TRUE(has_pattern(b, 0, b.size(), 3));
}

TEST_P(Seg, OpenMissingIsEnoentNamingTheObject) {
  const std::string name = make_name("missing");
  Remover rm(name);
  const auto e = error_of([&] { (void)Segment::open(name); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->errnum(), ENOENT);
  EXPECT_EQ(e->object(), name);
  EXPECT_EQ(e->operation(), "open");
  EXPECT_EQ(e->cause(), std::strerror(ENOENT));
  EXPECT_EQ(std::string(e->what()), "open " + name + ": No such file or directory");
}

TEST_P(Seg, OpenLargerThanTheObjectIsEinval) {
  const std::string name = make_name("toolarge");
  Remover rm(name);
  Segment a = Segment::create(name, 2 * kPage);
  OpenOptions o;
  o.size = 3 * kPage;
  EXPECT_SHMKIT_ERROR(Segment::open(name, o), EINVAL);
}

TEST_P(Seg, OpenWithSizeMapsThatMuch) {
  const std::string name = make_name("part");
  Remover rm(name);
  Segment a = Segment::create(name, 4 * kPage);
  fill(a, 0, kPage, 5);
  OpenOptions o;
  o.size = kPage;
  Segment b = Segment::open(name, o);
  EXPECT_EQ(b.size(), kPage);
  EXPECT_TRUE(has_pattern(b, 0, kPage, 5));
}

TEST_P(Seg, OpenReadOnly) {
  const std::string name = make_name("ro");
  Remover rm(name);
  Segment a = Segment::create(name, kPage);
  a.as<std::uint64_t>() = 0x1122334455667788u;
  OpenOptions o;
  o.access = Access::read_only;
  Segment b = Segment::open(name, o);
  EXPECT_FALSE(b.writable());
  EXPECT_EQ(b.as<const std::uint64_t>(), 0x1122334455667788u);
  EXPECT_EQ(b.as_span<const std::uint64_t>().size(), kPage / 8);
  EXPECT_THROW((void)b.as<std::uint64_t>(), Error);
  EXPECT_THROW((void)b.as_span<std::uint64_t>(), Error);
}

TEST_P(Seg, OpenAtAnAddressInUseIsEexist) {
  const std::string name = make_name("addr");
  Remover rm(name);
  Segment a = Segment::create(name, kPage);
  OpenOptions o;
  o.address = a.data();
  EXPECT_SHMKIT_ERROR(Segment::open(name, o), EEXIST);
}

TEST_P(Seg, OpenAtAFreeAddress) {
  const std::string name = make_name("addrfree");
  Remover rm(name);
  Segment a = Segment::create(name, kPage);
  a.as<int>() = 77;
  void* where = nullptr;
  {
    Segment probe = Segment::open(name);
    where = probe.data();
  }  // unmapped: the range is free again (this test is single-threaded)
  OpenOptions o;
  o.address = where;
  Segment b = Segment::open(name, o);
  EXPECT_EQ(b.data(), where);
  EXPECT_EQ(b.as<const int>(), 77);
}

// ---- open_or_create ----

TEST_P(Seg, OpenOrCreateReportsWhetherItCreated) {
  const std::string name = make_name("ooc");
  Remover rm(name);
  Segment a = Segment::open_or_create(name, 2 * kPage);
  EXPECT_TRUE(a.created());
  EXPECT_EQ(a.size(), 2 * kPage);
  EXPECT_TRUE(all_zero(a, 0, a.size()));
  fill(a, 0, a.size(), 11);
  Segment b = Segment::open_or_create(name, 2 * kPage);
  EXPECT_FALSE(b.created());
  EXPECT_EQ(b.size(), 2 * kPage);
  EXPECT_TRUE(has_pattern(b, 0, b.size(), 11));
  CreateOptions excl;
  excl.exclusive = true;  // ignored by open_or_create
  Segment c = Segment::open_or_create(name, 2 * kPage, excl);
  EXPECT_FALSE(c.created());
}

TEST_P(Seg, OpenOrCreateOfASmallerObject) {
  const std::string name = make_name("oocsmall");
  Remover rm(name);
  Segment a = Segment::create(name, kPage);
  fill(a, 0, kPage, 21);
  if (is_sysv()) {
    EXPECT_SHMKIT_ERROR(Segment::open_or_create(name, 2 * kPage), EINVAL);
    return;
  }
  Segment b = Segment::open_or_create(name, 3 * kPage);
  EXPECT_FALSE(b.created());
  EXPECT_EQ(b.size(), 3 * kPage);
  EXPECT_TRUE(has_pattern(b, 0, kPage, 21));
  EXPECT_TRUE(all_zero(b, kPage, 2 * kPage));
  EXPECT_EQ(Segment::stat(name).size, 3 * kPage);
}

// ---- Remove and close ----

TEST_P(Seg, RemoveByName) {
  const std::string name = make_name("remove");
  Remover rm(name);
  Segment s = Segment::create(name, kPage);
  s.as<int>() = 5;
  Segment::remove(name);
  EXPECT_SHMKIT_ERROR(Segment::open(name), ENOENT);
  EXPECT_EQ(s.as<int>(), 5);  // the mapping stays valid
  s.as<int>() = 6;
  EXPECT_EQ(s.as<int>(), 6);
  EXPECT_SHMKIT_ERROR(Segment::remove(name), ENOENT);
}

TEST_P(Seg, RemoveWithErrorCode) {
  const std::string name = make_name("removeec");
  Remover rm(name);
  { Segment s = Segment::create(name, kPage); }
  std::error_code ec;
  EXPECT_TRUE(Segment::remove(name, ec));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(Segment::remove(name, ec));
  EXPECT_EQ(ec, std::errc::no_such_file_or_directory) << ec.message();
}

TEST_P(Seg, MemberRemove) {
  const std::string name = make_name("mremove");
  Remover rm(name);
  Segment s = Segment::create(name, kPage);
  s.remove();
  EXPECT_SHMKIT_ERROR(Segment::open(name), ENOENT);
  s.as<int>() = 8;
  EXPECT_EQ(s.as<int>(), 8);
}

TEST_P(Seg, RemoveOnCloseFromCreate) {
  const std::string name = make_name("roc");
  Remover rm(name);
  CreateOptions o;
  o.remove_on_close = true;
  { Segment s = Segment::create(name, kPage, o); }
  EXPECT_SHMKIT_ERROR(Segment::open(name), ENOENT);
}

TEST_P(Seg, RemoveOnCloseFromOpen) {
  const std::string name = make_name("roco");
  Remover rm(name);
  Segment a = Segment::create(name, kPage);
  OpenOptions o;
  o.remove_on_close = true;
  { Segment b = Segment::open(name, o); }
  EXPECT_SHMKIT_ERROR(Segment::open(name), ENOENT);
}

TEST_P(Seg, SetRemoveOnClose) {
  const std::string name = make_name("setroc");
  Remover rm(name);
  {
    Segment s = Segment::create(name, kPage);
    s.set_remove_on_close(true);
  }
  EXPECT_SHMKIT_ERROR(Segment::open(name), ENOENT);

  CreateOptions o;
  o.remove_on_close = true;
  {
    Segment s = Segment::create(name, kPage, o);
    s.set_remove_on_close(false);
  }
  EXPECT_NO_THROW((void)Segment::open(name));
}

TEST_P(Seg, CloseUnmapsAndKeepsTheName) {
  const std::string name = make_name("close");
  Remover rm(name);
  Segment s = Segment::create(name, kPage);
  s.as<int>() = 12;
  s.close();
  EXPECT_FALSE(s);
  Segment t = Segment::open(name);
  EXPECT_EQ(t.as<int>(), 12);
}

TEST_P(Seg, CloseWithRemoveOnCloseRemoves) {
  const std::string name = make_name("closeroc");
  Remover rm(name);
  CreateOptions o;
  o.remove_on_close = true;
  Segment s = Segment::create(name, kPage, o);
  s.close();
  EXPECT_FALSE(s);
  EXPECT_SHMKIT_ERROR(Segment::open(name), ENOENT);
}

// ---- stat, chmod, chown ----

TEST_P(Seg, StatFields) {
  const std::string name = make_name("stat");
  Remover rm(name);
  Segment s = Segment::create(name, 2 * kPage);
  for (const SegmentStat& st : {s.stat(), Segment::stat(name)}) {
    if (GetParam() == Kind::sysv_ftok && st.name != Name::parse(name).str()) {
      // The kernel knows the key, not the path it came from: the key form is canonical too.
      const auto by_key = Name::try_parse(st.name);
      ASSERT_TRUE(by_key.has_value()) << st.name;
      EXPECT_EQ(by_key->sysv, SysvForm::key) << st.name;
      EXPECT_EQ(by_key->key, st.key) << st.name;
    } else {
      EXPECT_EQ(st.name, Name::parse(name).str());
    }
    EXPECT_EQ(st.ns, s.ns());
    EXPECT_EQ(st.size, 2 * kPage);
    EXPECT_EQ(st.mode, 0600u);
    EXPECT_EQ(st.uid, ::geteuid());
    EXPECT_EQ(st.gid, ::getegid());
    EXPECT_GT(st.change_time, 0);
    if (is_sysv()) {
      EXPECT_EQ(st.cuid, ::geteuid());
      EXPECT_EQ(st.cgid, ::getegid());
      ASSERT_TRUE(st.id.has_value());
      EXPECT_EQ(*st.id, s.native_handle());
      ASSERT_TRUE(st.key.has_value());
      if (GetParam() == Kind::sysv_key) {
        EXPECT_EQ(*st.key, Name::parse(name).key);
      } else {
        const Name n = Name::parse(name);
        EXPECT_EQ(*st.key, static_cast<std::int32_t>(::ftok(n.path.c_str(), n.proj)));
      }
      EXPECT_EQ(st.attach_count, 1u);
      EXPECT_EQ(st.creator_pid, ::getpid());
      EXPECT_FALSE(st.removed);
      EXPECT_FALSE(st.locked);
    } else {
      EXPECT_FALSE(st.cuid.has_value());
      EXPECT_FALSE(st.key.has_value());
      EXPECT_FALSE(st.id.has_value());
      EXPECT_FALSE(st.attach_count.has_value());
      EXPECT_TRUE(st.modify_time.has_value());
    }
  }
}

TEST_P(Seg, StatMissingIsEnoent) {
  const std::string name = make_name("statmissing");
  Remover rm(name);
  EXPECT_SHMKIT_ERROR(Segment::stat(name), ENOENT);
}

TEST_P(Seg, ChmodIsVisibleInStat) {
  const std::string name = make_name("chmod");
  Remover rm(name);
  Segment s = Segment::create(name, kPage);
  s.chmod(0644);
  EXPECT_EQ(s.stat().mode, 0644u);
  EXPECT_EQ(Segment::stat(name).mode, 0644u);
  s.chmod(0400);
  EXPECT_EQ(Segment::stat(name).mode, 0400u);
}

TEST_P(Seg, ChownAsRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown to another user needs root";
  const std::string name = make_name("chown");
  Remover rm(name);
  Segment s = Segment::create(name, kPage);
  s.chown(65534, 65534);
  const SegmentStat st = Segment::stat(name);
  EXPECT_EQ(st.uid, 65534u);
  EXPECT_EQ(st.gid, 65534u);
  if (is_sysv()) {
    EXPECT_EQ(st.cuid, 0u);  // the creator does not change
  }
}

// ---- Memory locking ----

TEST_P(Seg, LockInMemory) {
  const std::string name = make_name("mlock");
  Remover rm(name);
  Segment s = Segment::create(name, 2 * kPage);
  try {
    s.lock_in_memory();
  } catch (const Error& e) {
    if (e.errnum() == EPERM || e.errnum() == ENOMEM) {
      GTEST_SKIP() << "cannot lock memory here: " << e.what();
    }
    throw;
  }
  if (is_sysv()) {
    EXPECT_TRUE(s.stat().locked);
  }
  s.as<int>() = 1;
  s.unlock_memory();
  if (is_sysv()) {
    EXPECT_FALSE(s.stat().locked);
  }
}

INSTANTIATE_TEST_SUITE_P(Segment, Seg, kAllKinds, kind_name);

// ---- Listing (POSIX and System V) ----

class SegListed : public Seg {};

TEST_P(SegListed, ListContainsTheSegment) {
  const std::string name = make_name("list");
  Remover rm(name);
  Segment s = Segment::create(name, 2 * kPage);
  const auto all = Segment::list();
  int found = 0;
  for (const SegmentStat& st : all) {
    if (is_sysv()) {
      if (st.id == s.native_handle()) {
        ++found;
        EXPECT_EQ(st.ns, Namespace::sysv);
        EXPECT_EQ(st.key, s.stat().key);
        EXPECT_EQ(st.size, 2 * kPage);
        EXPECT_EQ(st.attach_count, 1u);
      }
    } else if (st.name == name) {
      ++found;
      EXPECT_EQ(st.ns, Namespace::posix);
      EXPECT_EQ(st.size, 2 * kPage);
      EXPECT_EQ(st.mode, 0600u);
    }
  }
  EXPECT_EQ(found, 1) << name << " among " << all.size() << " listed";
  s.remove();
  s.close();
  for (const SegmentStat& st : Segment::list()) {
    EXPECT_NE(st.name, Name::parse(name).str());
  }
}

INSTANTIATE_TEST_SUITE_P(Segment, SegListed,
                         ::testing::Values(Kind::posix, Kind::sysv_key, Kind::sysv_ftok),
                         kind_name);

// ---- Grow and truncate (POSIX and file) ----

class SegGrowable : public Seg {};

TEST_P(SegGrowable, GrowKeepsContentAndZeroesTheRest) {
  const std::string name = make_name("grow");
  Remover rm(name);
  Segment s = Segment::create(name, kPage);
  fill(s, 0, kPage, 17);
  s.grow(5 * kPage);
  EXPECT_EQ(s.size(), 5 * kPage);
  EXPECT_TRUE(has_pattern(s, 0, kPage, 17));
  EXPECT_TRUE(all_zero(s, kPage, 4 * kPage));
  fill(s, 0, s.size(), 18);  // all of it is usable
  EXPECT_EQ(s.stat().size, 5 * kPage);
  Segment other = Segment::open(name);
  EXPECT_EQ(other.size(), 5 * kPage);
  EXPECT_TRUE(has_pattern(other, 0, other.size(), 18));
}

TEST_P(SegGrowable, GrowToTheSameSizeIsANoOp) {
  const std::string name = make_name("growsame");
  Remover rm(name);
  Segment s = Segment::create(name, 2 * kPage);
  fill(s, 0, s.size(), 2);
  s.grow(2 * kPage);
  EXPECT_EQ(s.size(), 2 * kPage);
  EXPECT_TRUE(has_pattern(s, 0, s.size(), 2));
}

TEST_P(SegGrowable, ShrinkIsRefused) {
  const std::string name = make_name("shrink");
  Remover rm(name);
  Segment s = Segment::create(name, 2 * kPage);
  fill(s, 0, s.size(), 4);
  EXPECT_THROW(s.grow(kPage), Error);
  EXPECT_EQ(s.size(), 2 * kPage);
  EXPECT_TRUE(has_pattern(s, 0, s.size(), 4));
}

TEST_P(SegGrowable, RefreshSeesAnotherHandlesGrow) {
  const std::string name = make_name("refresh");
  Remover rm(name);
  Segment a = Segment::create(name, kPage);
  Segment b = Segment::open(name);
  EXPECT_FALSE(b.refresh());
  a.grow(3 * kPage);
  static_cast<unsigned char*>(a.data())[3 * kPage - 1] = 0x5A;
  EXPECT_TRUE(b.refresh());
  EXPECT_EQ(b.size(), 3 * kPage);
  EXPECT_EQ(static_cast<unsigned char*>(b.data())[3 * kPage - 1], 0x5A);
  EXPECT_FALSE(b.refresh());
}

TEST_P(SegGrowable, TruncateZeroes) {
  const std::string name = make_name("trunc");
  Remover rm(name);
  {
    Segment s = Segment::create(name, 2 * kPage);
    fill(s, 0, s.size(), 33);
  }
  CreateOptions o;
  o.exclusive = false;
  o.truncate = true;
  Segment t = Segment::create(name, 2 * kPage, o);
  EXPECT_EQ(t.size(), 2 * kPage);
  EXPECT_TRUE(all_zero(t, 0, t.size()));
}

TEST_P(SegGrowable, NonExclusiveCreateWithoutTruncateKeeps) {
  const std::string name = make_name("notrunc");
  Remover rm(name);
  {
    Segment s = Segment::create(name, 2 * kPage);
    fill(s, 0, s.size(), 34);
  }
  CreateOptions o;
  o.exclusive = false;
  Segment t = Segment::create(name, 2 * kPage, o);
  EXPECT_TRUE(has_pattern(t, 0, t.size(), 34));
}

TEST_P(SegGrowable, SizeNeedNotBeAPageMultiple) {
  const std::string name = make_name("odd");
  Remover rm(name);
  Segment s = Segment::create(name, 1000);
  EXPECT_EQ(s.size(), 1000u);
  EXPECT_EQ(s.stat().size, 1000u);
  EXPECT_TRUE(all_zero(s, 0, 1000));
  fill(s, 0, 1000, 1);
  Segment t = Segment::open(name);
  EXPECT_EQ(t.size(), 1000u);
  EXPECT_TRUE(has_pattern(t, 0, 1000, 1));
}

INSTANTIATE_TEST_SUITE_P(Segment, SegGrowable, ::testing::Values(Kind::posix, Kind::file),
                         kind_name);

// ---- System V specifics ----

TEST(Segment, GrowOnSysvIsEopnotsupp) {
  const std::string name = unique_sysv_key();
  Remover rm(name);
  Segment s = Segment::create(name, kPage);
  fill(s, 0, kPage, 6);
  EXPECT_SHMKIT_ERROR(s.grow(2 * kPage), EOPNOTSUPP);
  EXPECT_EQ(s.size(), kPage);
  EXPECT_TRUE(has_pattern(s, 0, kPage, 6));
  EXPECT_FALSE(s.refresh());
}

TEST(Segment, SysvAttachCountFollowsMappings) {
  const std::string name = unique_sysv_key();
  Remover rm(name);
  Segment a = Segment::create(name, kPage);
  EXPECT_EQ(a.stat().attach_count, 1u);
  {
    Segment b = Segment::open(name);
    EXPECT_EQ(a.stat().attach_count, 2u);
  }
  EXPECT_EQ(a.stat().attach_count, 1u);
}

TEST(Segment, SysvRemovedButAttachedIsMarked) {
  const std::string name = unique_sysv_key();
  Remover rm(name);
  Segment a = Segment::create(name, kPage);
  a.remove();
  const SegmentStat st = a.stat();
  EXPECT_TRUE(st.removed);
  EXPECT_EQ(st.attach_count, 1u);
}

TEST(Segment, SysvPrivate) {
  CreateOptions o;
  o.remove_on_close = true;
  Segment s = Segment::create("sysv:private", 2 * kPage, o);
  EXPECT_TRUE(s.created());
  EXPECT_EQ(s.name().sysv, SysvForm::id);
  EXPECT_EQ(s.name().id, s.native_handle());
  const std::string id_name = "sysv:id=" + std::to_string(s.native_handle());
  EXPECT_EQ(s.name().str(), id_name);
  EXPECT_TRUE(all_zero(s, 0, s.size()));
  s.as<int>() = 99;

  Segment t = Segment::open(id_name);
  EXPECT_EQ(t.size(), 2 * kPage);
  EXPECT_EQ(t.as<int>(), 99);
  const SegmentStat st = Segment::stat(id_name);
  EXPECT_EQ(st.id, s.native_handle());
  EXPECT_EQ(st.key, 0);
}

TEST(Segment, SysvPrivateTwiceGivesTwoSegments) {
  CreateOptions o;
  o.remove_on_close = true;
  Segment a = Segment::create("sysv:private", kPage, o);
  Segment b = Segment::create("sysv:private", kPage, o);
  EXPECT_NE(a.native_handle(), b.native_handle());
  a.as<int>() = 1;
  EXPECT_EQ(b.as<int>(), 0);
}

TEST(Segment, SysvIdCannotBeCreated) {
  EXPECT_SHMKIT_ERROR(Segment::create("sysv:id=1", kPage), EINVAL);
}

TEST(Segment, SysvOpenById) {
  const std::string name = unique_sysv_key();
  Remover rm(name);
  Segment a = Segment::create(name, kPage);
  a.as<int>() = 4242;
  const std::string id_name = "sysv:id=" + std::to_string(a.native_handle());
  Segment b = Segment::open(id_name);
  EXPECT_EQ(b.as<int>(), 4242);
  EXPECT_EQ(b.native_handle(), a.native_handle());
  Segment::remove(id_name);
  EXPECT_SHMKIT_ERROR(Segment::open(name), ENOENT);
}

TEST(Segment, SysvFtokOnAMissingPathIsEnoentAndCreatesNothing) {
  TempDir dir("ftok");
  const std::string path = dir.path() + "/does-not-exist";
  const std::string name = "sysv:@" + path + ":7";
  const std::set<int> before = my_sysv_ids();
  for (int round = 0; round < 3; ++round) {
    const auto e = error_of([&] {
      switch (round) {
        case 0:
          (void)Segment::create(name, kPage);
          break;
        case 1:
          (void)Segment::open_or_create(name, kPage);
          break;
        default:
          (void)Segment::open(name);
          break;
      }
    });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->errnum(), ENOENT) << e->what();
    EXPECT_NE(std::string(e->what()).find(path), std::string::npos) << e->what();
  }
  EXPECT_EQ(my_sysv_ids(), before);
}

TEST(Segment, SysvFtokKeyIsTheSystemsFtok) {
  TempDir dir("ftokkey");
  const std::string path = dir.path() + "/keyfile";
  write_file(path, "x");
  const std::string name = "sysv:@" + path + ":7";
  Remover rm(name);
  Segment s = Segment::create(name, kPage);
  const key_t key = ::ftok(path.c_str(), 7);
  ASSERT_NE(key, -1);
  EXPECT_EQ(s.stat().key, static_cast<std::int32_t>(key));
  EXPECT_EQ(::shmget(key, 0, 0), s.native_handle());
}

// ---- Anonymous ----

TEST(Segment, CreateAnonymous) {
  Segment s = Segment::create_anonymous(3 * kPage);
  ASSERT_TRUE(s);
  EXPECT_EQ(s.ns(), Namespace::anonymous);
  EXPECT_EQ(s.name().str(), "");
  EXPECT_TRUE(s.created());
  EXPECT_TRUE(s.writable());
  EXPECT_GE(s.native_handle(), 0);
  EXPECT_EQ(s.size(), 3 * kPage);
  EXPECT_TRUE(all_zero(s, 0, s.size()));
  fill(s, 0, s.size(), 50);
  EXPECT_TRUE(has_pattern(s, 0, s.size(), 50));
}

TEST(Segment, CreateAnonymousSizeZeroIsEinval) {
  EXPECT_SHMKIT_ERROR(Segment::create_anonymous(0), EINVAL);
}

TEST(Segment, GrowAnonymous) {
  Segment s = Segment::create_anonymous(kPage);
  fill(s, 0, kPage, 60);
  s.grow(4 * kPage);
  EXPECT_EQ(s.size(), 4 * kPage);
  EXPECT_TRUE(has_pattern(s, 0, kPage, 60));
  EXPECT_TRUE(all_zero(s, kPage, 3 * kPage));
  fill(s, 0, s.size(), 61);
  EXPECT_TRUE(has_pattern(s, 0, s.size(), 61));
}

// ---- Views ----

struct Header {
  std::uint32_t magic;
  std::uint32_t count;
  std::uint64_t values[6];
};

struct Big {
  unsigned char bytes[8192];
};

TEST(Segment, AsGivesTypedViews) {
  Segment s = Segment::create_anonymous(kPage);
  Header& h = s.as<Header>();
  EXPECT_EQ(static_cast<void*>(&h), s.data());
  EXPECT_EQ(h.magic, 0u);
  h.magic = 0xC0FFEE;
  h.values[5] = 7;
  EXPECT_EQ(s.as<const Header>().magic, 0xC0FFEEu);
  const auto words = s.as_span<std::uint64_t>();
  EXPECT_EQ(words.size(), kPage / sizeof(std::uint64_t));
  EXPECT_EQ(words[1 + 5], 7u);
}

TEST(Segment, AsRefusesATypeLargerThanTheSegment) {
  Segment s = Segment::create_anonymous(kPage);
  EXPECT_SHMKIT_ERROR((void)s.as<Big>(), EINVAL);
  EXPECT_SHMKIT_ERROR((void)s.as<const Big>(), EINVAL);
  s.grow(2 * kPage + 4096);
  EXPECT_NO_THROW((void)s.as<Big>());
}

TEST(Segment, AsOnAnEmptySegmentThrows) {
  Segment s;
  EXPECT_THROW((void)s.as<int>(), Error);
}

// ---- Names, errors, moves ----

TEST(Segment, DefaultConstructedIsEmpty) {
  Segment s;
  EXPECT_FALSE(s);
  EXPECT_EQ(s.data(), nullptr);
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.native_handle(), -1);
  EXPECT_TRUE(s.bytes().empty());
}

TEST(Segment, BadNamesAreEinvalBeforeAnySystemCall) {
  for (const char* bad : {"", "foo", "/a/b", "sysv:0xZZ", "file:", "/.."}) {
    SCOPED_TRACE(bad);
    EXPECT_SHMKIT_ERROR(Segment::create(bad, kPage), EINVAL);
    EXPECT_SHMKIT_ERROR(Segment::open(bad), EINVAL);
    EXPECT_SHMKIT_ERROR(Segment::open_or_create(bad, kPage), EINVAL);
    EXPECT_SHMKIT_ERROR(Segment::remove(bad), EINVAL);
    EXPECT_SHMKIT_ERROR(Segment::stat(bad), EINVAL);
    std::error_code ec;
    EXPECT_FALSE(Segment::remove(bad, ec));
    EXPECT_EQ(ec, std::errc::invalid_argument);
  }
}

TEST(Segment, PosixPrefixNamesTheSameObject) {
  const std::string name = unique_name("/", "prefix");
  Remover rm(name);
  Segment a = Segment::create("posix:" + name, kPage);
  EXPECT_EQ(a.name().str(), name);
  a.as<int>() = 3;
  EXPECT_TRUE(fs::exists("/dev/shm" + name));
  Segment b = Segment::open(name);
  EXPECT_EQ(b.as<int>(), 3);
}

TEST(Segment, PosixObjectLivesInDevShm) {
  const std::string name = unique_name("/", "devshm");
  Remover rm(name);
  Segment s = Segment::create(name, 2 * kPage);
  struct stat st {};
  ASSERT_EQ(::lstat(("/dev/shm" + name).c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(static_cast<std::size_t>(st.st_size), 2 * kPage);
  // Memory is committed at create: every page is allocated before it is touched.
  EXPECT_GE(static_cast<std::size_t>(st.st_blocks) * 512, 2 * kPage);
}

TEST(Segment, FileObjectIsAFile) {
  TempDir dir("fileobj");
  const std::string path = dir.path() + "/data.seg";
  Remover rm("file:" + path);
  Segment s = Segment::create("file:" + path, 2 * kPage);
  std::memcpy(s.data(), "hello", 5);
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(static_cast<std::size_t>(st.st_size), 2 * kPage);
  s.close();
  EXPECT_EQ(read_file(path).substr(0, 5), "hello");
}

TEST(Segment, ErrorMessageFormat) {
  const Error e(ENOENT, "/foo", "open");
  EXPECT_EQ(std::string(e.what()), "open /foo: No such file or directory");
  EXPECT_EQ(e.errnum(), ENOENT);
  EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
  EXPECT_EQ(e.object(), "/foo");
  EXPECT_EQ(e.operation(), "open");
  EXPECT_EQ(e.cause(), "No such file or directory");

  const Error d(EINVAL, "foo", "parse name", "must start with '/'");
  EXPECT_EQ(d.cause(), "must start with '/'");
  EXPECT_EQ(std::string(d.what()), "parse name foo: must start with '/'");

  const std::system_error& base = e;  // catchable as std::system_error
  EXPECT_EQ(base.code().value(), ENOENT);
}

TEST(Segment, OpenMissingPosixMessage) {
  const std::string name = unique_name("/", "msg");
  Remover rm(name);
  try {
    (void)Segment::open(name);
    ADD_FAILURE() << "open of a missing segment did not throw";
  } catch (const std::system_error& e) {
    EXPECT_EQ(std::string(e.what()), "open " + name + ": No such file or directory");
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
  }
}

std::atomic<int> handled{0};
void count_errors(const Error&) noexcept { handled.fetch_add(1, std::memory_order_relaxed); }

TEST(Segment, ErrorHandlerIsInstallable) {
  const ErrorHandler before = set_error_handler(count_errors);
  handled.store(0, std::memory_order_relaxed);
  report_error(Error(EIO, "/x", "unmap"));
  EXPECT_EQ(handled.load(std::memory_order_relaxed), 1);
  EXPECT_EQ(set_error_handler(before), count_errors);
}

TEST(Segment, MoveConstructAndAssign) {
  const std::string name = unique_name("/", "move");
  Remover rm(name);
  Segment a = Segment::create(name, kPage);
  a.as<int>() = 31;
  void* const base = a.data();
  const int handle = a.native_handle();

  Segment b(std::move(a));
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move)
  ASSERT_TRUE(b);
  EXPECT_EQ(b.data(), base);
  EXPECT_EQ(b.native_handle(), handle);
  EXPECT_EQ(b.name().str(), name);
  EXPECT_TRUE(b.created());

  Segment c;
  c = std::move(b);
  EXPECT_FALSE(b);  // NOLINT(bugprone-use-after-move)
  ASSERT_TRUE(c);
  EXPECT_EQ(c.data(), base);
  EXPECT_EQ(c.as<int>(), 31);  // still mapped: the moved-from objects unmapped nothing
  EXPECT_EQ(c.size(), kPage);
}

TEST(Segment, MoveAssignReleasesTheTarget) {
  const std::string keep = unique_name("/", "keep");
  const std::string gone = unique_name("/", "gone");
  Remover rm_keep(keep);
  Remover rm_gone(gone);
  CreateOptions o;
  o.remove_on_close = true;
  Segment target = Segment::create(gone, kPage, o);
  Segment source = Segment::create(keep, kPage);
  target = std::move(source);
  EXPECT_SHMKIT_ERROR(Segment::open(gone), ENOENT);
  EXPECT_EQ(target.name().str(), keep);
  EXPECT_NO_THROW((void)Segment::open(keep));
}

TEST(Segment, RemoveOnCloseMovesWithTheSegment) {
  const std::string name = unique_name("/", "rocmove");
  Remover rm(name);
  CreateOptions o;
  o.remove_on_close = true;
  std::optional<Segment> outer;
  {
    Segment inner = Segment::create(name, kPage, o);
    outer.emplace(std::move(inner));
  }  // the moved-from segment removes nothing
  EXPECT_NO_THROW((void)Segment::open(name));
  outer.reset();
  EXPECT_SHMKIT_ERROR(Segment::open(name), ENOENT);
}

// ---- Symlinks are never followed ----

TEST(Segment, PosixNameThroughASymlinkIsRefused) {
  TempDir dir("symlink");
  const std::string target = dir.path() + "/target";
  write_file(target, "precious");
  const std::string name = unique_name("/", "link");
  Remover rm(name);  // shm_unlink removes the link itself, never the target
  ASSERT_EQ(::symlink(target.c_str(), ("/dev/shm" + name).c_str()), 0) << std::strerror(errno);

  EXPECT_THROW((void)Segment::open(name), Error);
  OpenOptions ro;
  ro.access = Access::read_only;
  EXPECT_THROW((void)Segment::open(name, ro), Error);
  EXPECT_THROW((void)Segment::create(name, kPage), Error);
  CreateOptions trunc;
  trunc.exclusive = false;
  trunc.truncate = true;
  EXPECT_THROW((void)Segment::create(name, kPage, trunc), Error);
  CreateOptions nonexcl;
  nonexcl.exclusive = false;
  EXPECT_THROW((void)Segment::create(name, 4 * kPage, nonexcl), Error);
  EXPECT_THROW((void)Segment::open_or_create(name, 4 * kPage), Error);

  EXPECT_EQ(read_file(target), "precious");
  EXPECT_TRUE(fs::is_symlink("/dev/shm" + name));
}

TEST(Segment, FileNameThroughASymlinkIsRefused) {
  TempDir dir("filelink");
  const std::string target = dir.path() + "/target";
  const std::string link = dir.path() + "/link";
  write_file(target, "precious");
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0) << std::strerror(errno);
  const std::string name = "file:" + link;

  EXPECT_THROW((void)Segment::open(name), Error);
  CreateOptions trunc;
  trunc.exclusive = false;
  trunc.truncate = true;
  EXPECT_THROW((void)Segment::create(name, kPage, trunc), Error);
  EXPECT_THROW((void)Segment::open_or_create(name, 4 * kPage), Error);
  EXPECT_THROW((void)Segment::create(name, kPage), Error);
  EXPECT_EQ(read_file(target), "precious");
}

// ---- Huge pages on a system without them ----

bool no_overcommit_huge_pages() {
  std::ifstream in("/proc/sys/vm/nr_overcommit_hugepages");
  long n = 0;
  return !(in >> n) || n == 0;
}

TEST(Segment, HugePagesWithoutAnyIsAClearError) {
  if (!test::no_huge_pages() || !no_overcommit_huge_pages()) {
    GTEST_SKIP() << "this system has huge pages (HugePages_Total or overcommit > 0)";
  }
  constexpr std::size_t kHuge = 2u << 20;
  const std::string key = unique_sysv_key();
  Remover rm(key);
  // In a child, so a SIGBUS would be a failed test, not a dead test program.
  for (int which = 0; which < 2; ++which) {
    SCOPED_TRACE(which == 0 ? "anonymous" : "sysv");
    const int status = test::run_in_child([&] {
      CreateOptions o;
      o.huge_pages = true;
      try {
        Segment s =
            which == 0 ? Segment::create_anonymous(kHuge, o) : Segment::create(key, kHuge, o);
        std::memset(s.data(), 1, s.size());
        return 1;  // succeeded without huge pages: unexpected
      } catch (const Error& e) {
        std::fprintf(stderr, "huge pages refused as expected: %s\n", e.what());
        return e.errnum() != 0 && std::string(e.what()).size() > 0 ? 0 : 2;
      }
    });
    EXPECT_EQ(test::exit_code(status), 0)
        << "1: created without huge pages; 2: empty error; >128: killed by signal";
  }
}

}  // namespace
}  // namespace shmkit
