// SPDX-License-Identifier: MIT
// Segments between real processes: persistence across processes in every namespace, creation
// races, read-only and permission enforcement, grow/refresh, remove while mapped, listing, and
// interoperation with ipcmk/ipcs, the shell and a separate program (segment_helper, exec'd).
// Children report through their exit status (gtest assertions in a child are lost); processes
// that must run at once meet at flags in an anonymous segment they inherit.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "shmkit/error.hpp"
#include "shmkit/name.hpp"
#include "shmkit/segment.hpp"
#include "test_support.hpp"

namespace shmkit {
namespace {

using test::exit_code;
using test::Kind;
using test::Remover;
using test::run_in_child;
using test::TempDir;
using test::unique_name;
using test::unique_sysv_key;
using test::wait_for_value;

const std::size_t kPage = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
constexpr int kProcesses = 8;
constexpr int kNobody = 65534;

// Flags that processes of one test share through an inherited anonymous segment.
struct Control {
  std::atomic<int> ready;
  std::atomic<int> go;
  std::atomic<int> value;
};
static_assert(std::atomic<int>::is_always_lock_free);

// Child exit codes with a meaning (anything else is a failure the child printed).
constexpr int kOk = 0;
constexpr int kCreated = 10;
constexpr int kOpened = 11;
constexpr int kExists = 17;      // EEXIST
constexpr int kDenied = 13;      // EACCES
constexpr int kCannotGrow = 95;  // EOPNOTSUPP

bool starts_with_text(const Segment& s, const char* text) {
  return std::strncmp(static_cast<const char*>(s.data()), text, std::strlen(text) + 1) == 0;
}

void put_text(const Segment& s, const char* text, std::size_t offset = 0) {
  std::memcpy(static_cast<char*>(s.data()) + offset, text, std::strlen(text) + 1);
}

// Never leave a core file behind for a child that is meant to crash.
void no_core_dump() {
  const rlimit none{0, 0};
  ::setrlimit(RLIMIT_CORE, &none);
}

// Maps the Kind of a parameterised test to its gtest label.
std::string kind_name(const ::testing::TestParamInfo<Kind>& info) {
  return test::to_string(info.param);
}

class ProcSeg : public ::testing::TestWithParam<Kind> {
 protected:
  std::string make_name(const std::string& tag) { return test::make_name(GetParam(), dir_, tag); }

  TempDir dir_{"procdir"};
};

// ---- Persistence across processes ----

TEST_P(ProcSeg, ChildCreatesParentReadsAfterItExits) {
  const std::string name = make_name("persist");
  Remover rm(name);
  const int status = run_in_child([&] {
    Segment s = Segment::create(name, 2 * kPage);
    put_text(s, "written by the child");
    put_text(s, "last page", 2 * kPage - 16);
    return kOk;
  });
  ASSERT_EQ(exit_code(status), kOk);
  Segment s = Segment::open(name);
  EXPECT_FALSE(s.created());
  EXPECT_EQ(s.size(), 2 * kPage);
  EXPECT_TRUE(starts_with_text(s, "written by the child"));
  EXPECT_STREQ(static_cast<const char*>(s.data()) + 2 * kPage - 16, "last page");
}

TEST_P(ProcSeg, ParentCreatesChildOpensAndWrites) {
  const std::string name = make_name("childwrites");
  Remover rm(name);
  Segment s = Segment::create(name, kPage);
  put_text(s, "from the parent");
  const int status = run_in_child([&] {
    Segment c = Segment::open(name);
    if (c.created() || c.size() != kPage) return 1;
    if (!starts_with_text(c, "from the parent")) return 2;
    put_text(c, "from the child", 100);
    return kOk;
  });
  ASSERT_EQ(exit_code(status), kOk);
  EXPECT_STREQ(static_cast<const char*>(s.data()) + 100, "from the child");
}

TEST_P(ProcSeg, SeparateProgramSeesTheSameBytes) {
  const std::string name = make_name("helper");
  Remover rm(name);
  std::string out;
  ASSERT_EQ(exit_code(test::run_program({SHMKIT_SEGMENT_HELPER, "create", name, "8K", "hi"})), 0);
  Segment s = Segment::open(name);
  EXPECT_EQ(s.size(), 8192u);
  EXPECT_TRUE(starts_with_text(s, "hi"));

  put_text(s, "parent text");
  ASSERT_EQ(exit_code(test::run_program({SHMKIT_SEGMENT_HELPER, "read", name}, &out)), 0);
  EXPECT_EQ(out, "parent text");

  ASSERT_EQ(exit_code(test::run_program({SHMKIT_SEGMENT_HELPER, "write", name, "helper text"})), 0);
  EXPECT_TRUE(starts_with_text(s, "helper text"));

  // The helper's exclusive create of an existing name fails with EEXIST as its exit status.
  EXPECT_EQ(exit_code(test::run_program({SHMKIT_SEGMENT_HELPER, "create", name, "4K", "x"})),
            EEXIST);
  EXPECT_TRUE(starts_with_text(s, "helper text"));
}

// ---- Races ----

TEST_P(ProcSeg, ExclusiveCreateRaceHasExactlyOneWinner) {
  const std::string name = make_name("race");
  Remover rm(name);
  Segment ctl = Segment::create_anonymous(kPage);
  Control& c = ctl.as<Control>();
  std::vector<int> pids;
  for (int i = 0; i < kProcesses; ++i) {
    pids.push_back(test::start_child([&] {
      c.ready.fetch_add(1, std::memory_order_acq_rel);
      if (!wait_for_value(c.go, 1)) return 3;
      try {
        Segment s = Segment::create(name, kPage);
        return kCreated;
      } catch (const Error& e) {
        if (e.errnum() == EEXIST) return kExists;
        std::fprintf(stderr, "racer: %s\n", e.what());
        return 2;
      }
    }));
    ASSERT_GT(pids.back(), 0);
  }
  EXPECT_TRUE(wait_for_value(c.ready, kProcesses));
  c.go.store(1, std::memory_order_release);
  int winners = 0, losers = 0;
  for (int pid : pids) {
    const int code = exit_code(test::wait_child(pid));
    if (code == kCreated) {
      ++winners;
    } else if (code == kExists) {
      ++losers;
    } else {
      ADD_FAILURE() << "racer exited with " << code;
    }
  }
  EXPECT_EQ(winners, 1);
  EXPECT_EQ(losers, kProcesses - 1);
  EXPECT_EQ(Segment::open(name).size(), kPage);
}

TEST_P(ProcSeg, OpenOrCreateRaceCreatesOnceAndSharesTheMemory) {
  const std::string name = make_name("oocrace");
  Remover rm(name);
  Segment ctl = Segment::create_anonymous(kPage);
  Control& c = ctl.as<Control>();
  std::vector<int> pids;
  for (int i = 0; i < kProcesses; ++i) {
    pids.push_back(test::start_child([&] {
      c.ready.fetch_add(1, std::memory_order_acq_rel);
      if (!wait_for_value(c.go, 1)) return 3;
      Segment s = Segment::open_or_create(name, kPage);
      if (s.size() != kPage) return 4;
      s.as<std::atomic<int>>().fetch_add(1, std::memory_order_acq_rel);
      return s.created() ? kCreated : kOpened;
    }));
    ASSERT_GT(pids.back(), 0);
  }
  EXPECT_TRUE(wait_for_value(c.ready, kProcesses));
  c.go.store(1, std::memory_order_release);
  int created = 0, opened = 0;
  for (int pid : pids) {
    const int code = exit_code(test::wait_child(pid));
    if (code == kCreated) {
      ++created;
    } else if (code == kOpened) {
      ++opened;
    } else {
      ADD_FAILURE() << "racer exited with " << code;
    }
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(opened, kProcesses - 1);
  Segment s = Segment::open(name);
  EXPECT_EQ(s.as<std::atomic<int>>().load(std::memory_order_acquire), kProcesses);
}

// ---- Read-only and permissions ----

TEST_P(ProcSeg, WriteThroughReadOnlyMappingIsSigsegv) {
  const std::string name = make_name("readonly");
  Remover rm(name);
  Segment s = Segment::create(name, kPage);
  put_text(s, "original");
  const int status = run_in_child([&] {
    no_core_dump();
    std::signal(SIGSEGV, SIG_DFL);  // die of the signal even under a sanitizer
    OpenOptions o;
    o.access = Access::read_only;
    Segment r = Segment::open(name, o);
    if (r.writable()) return 1;
    if (!starts_with_text(r, "original")) return 2;
    static_cast<volatile char*>(r.data())[0] = 'X';
    return 3;  // the write went through
  });
  EXPECT_EQ(exit_code(status), 128 + SIGSEGV);
  EXPECT_TRUE(starts_with_text(s, "original"));
}

TEST_P(ProcSeg, NobodyIsRefusedA0600Segment) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch to uid " << kNobody;
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);  // the refusal must come from the object
  const std::string secret = make_name("secret");
  const std::string shared = make_name("shared");
  Remover rm_secret(secret);
  Remover rm_shared(shared);
  Segment s = Segment::create(secret, kPage);
  put_text(s, "secret");
  CreateOptions readable;
  readable.mode = 0604;
  Segment t = Segment::create(shared, kPage, readable);
  put_text(t, "shared");
  ASSERT_EQ(t.stat().mode, 0604u);

  const int status = run_in_child([&] {
    if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) return 3;
    OpenOptions ro;
    ro.access = Access::read_only;
    for (const std::string& name : {secret, shared}) {
      for (const OpenOptions& o : {OpenOptions{}, ro}) {
        const bool should_open = name == shared && o.access == Access::read_only;
        try {
          Segment x = Segment::open(name, o);
          if (!should_open) return 4;
          if (!starts_with_text(x, "shared")) return 5;
        } catch (const Error& e) {
          if (should_open || e.errnum() != EACCES) {
            std::fprintf(stderr, "nobody: %s\n", e.what());
            return 6;
          }
        }
      }
    }
    try {
      (void)Segment::open_or_create(secret, kPage);
      return 7;
    } catch (const Error& e) {
      if (e.errnum() != EACCES) {
        std::fprintf(stderr, "nobody open_or_create: %s\n", e.what());
        return 8;
      }
    }
    return kDenied;
  });
  EXPECT_EQ(exit_code(status), kDenied)
      << "3: could not switch user; 4: opened a 0600 segment; 6/8: not EACCES; 5: bad bytes";
  EXPECT_TRUE(starts_with_text(s, "secret"));
}

// ---- Remove while mapped ----

TEST_P(ProcSeg, RemoveWhileAChildHoldsItMapped) {
  const std::string name = make_name("rmheld");
  Remover rm(name);
  Segment ctl = Segment::create_anonymous(kPage);
  Control& c = ctl.as<Control>();
  Segment s = Segment::create(name, kPage);
  put_text(s, "still here");
  const int pid = test::start_child([&] {
    Segment held = Segment::open(name);
    c.ready.store(1, std::memory_order_release);
    if (!wait_for_value(c.go, 1)) return 3;
    if (!starts_with_text(held, "still here")) return 1;
    put_text(held, "child after remove", 200);
    return kOk;
  });
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(wait_for_value(c.ready, 1));
  EXPECT_NO_THROW(Segment::remove(name));
  EXPECT_THROW((void)Segment::open(name), Error);
  c.go.store(1, std::memory_order_release);
  EXPECT_EQ(exit_code(test::wait_child(pid)), kOk);
  EXPECT_STREQ(static_cast<const char*>(s.data()) + 200, "child after remove");
}

// ---- Grow seen by another process ----

TEST_P(ProcSeg, GrowInAChildIsSeenThroughRefresh) {
  const bool sysv = GetParam() == Kind::sysv_key || GetParam() == Kind::sysv_ftok;
  const std::string name = make_name("growchild");
  Remover rm(name);
  Segment s = Segment::create(name, kPage);
  put_text(s, "first page");
  const int status = run_in_child([&] {
    Segment g = Segment::open(name);
    try {
      g.grow(4 * kPage);
    } catch (const Error& e) {
      return e.errnum() == EOPNOTSUPP ? kCannotGrow : 1;
    }
    put_text(g, "grown", 4 * kPage - 8);
    return kOk;
  });
  if (sysv) {  // System V cannot grow: the child is told so and nothing changes
    EXPECT_EQ(exit_code(status), kCannotGrow);
    EXPECT_FALSE(s.refresh());
    EXPECT_EQ(s.size(), kPage);
    EXPECT_TRUE(starts_with_text(s, "first page"));
    return;
  }
  ASSERT_EQ(exit_code(status), kOk);
  EXPECT_EQ(s.size(), kPage);
  EXPECT_TRUE(s.refresh());
  EXPECT_EQ(s.size(), 4 * kPage);
  EXPECT_TRUE(starts_with_text(s, "first page"));
  EXPECT_STREQ(static_cast<const char*>(s.data()) + 4 * kPage - 8, "grown");
  EXPECT_FALSE(s.refresh());
}

INSTANTIATE_TEST_SUITE_P(SegmentProc, ProcSeg,
                         ::testing::Values(Kind::posix, Kind::sysv_key, Kind::sysv_ftok,
                                           Kind::file),
                         kind_name);

// ---- Anonymous and private segments ----

TEST(SegmentProc, AnonymousIsSharedWithAChild) {
  Segment s = Segment::create_anonymous(kPage);
  put_text(s, "parent");
  const int status = run_in_child([&] {
    if (!starts_with_text(s, "parent")) return 1;
    put_text(s, "child", 64);
    return kOk;
  });
  ASSERT_EQ(exit_code(status), kOk);
  EXPECT_STREQ(static_cast<const char*>(s.data()) + 64, "child");
}

TEST(SegmentProc, AnonymousGrowInAChildIsSeenThroughRefresh) {
  Segment s = Segment::create_anonymous(kPage);
  put_text(s, "anon");
  const int status = run_in_child([&] {
    s.grow(3 * kPage);  // the child's handle shares the descriptor
    put_text(s, "tail", 3 * kPage - 8);
    return kOk;
  });
  ASSERT_EQ(exit_code(status), kOk);
  EXPECT_TRUE(s.refresh());
  EXPECT_EQ(s.size(), 3 * kPage);
  EXPECT_TRUE(starts_with_text(s, "anon"));
  EXPECT_STREQ(static_cast<const char*>(s.data()) + 3 * kPage - 8, "tail");
}

TEST(SegmentProc, SysvPrivateOutlivesItsCreator) {
  Segment ctl = Segment::create_anonymous(kPage);
  Control& c = ctl.as<Control>();
  c.value.store(-1, std::memory_order_relaxed);
  const int status = run_in_child([&] {
    Segment s = Segment::create("sysv:private", kPage);
    c.value.store(s.native_handle(), std::memory_order_release);
    put_text(s, "private");
    return s.name().str() == "sysv:id=" + std::to_string(s.native_handle()) ? kOk : 1;
  });
  const int id = c.value.load(std::memory_order_acquire);
  ASSERT_GE(id, 0);
  const std::string name = "sysv:id=" + std::to_string(id);
  Remover rm(name);
  ASSERT_EQ(exit_code(status), kOk);
  Segment s = Segment::open(name);
  EXPECT_TRUE(starts_with_text(s, "private"));
  EXPECT_EQ(s.stat().key, 0);
}

// ---- Listing ----

TEST(SegmentProc, ListSeesSegmentsAnotherProcessCreated) {
  const std::string posix = unique_name("/", "listed");
  const std::string sysv = unique_sysv_key();
  Remover rm_posix(posix);
  Remover rm_sysv(sysv);
  Segment ctl = Segment::create_anonymous(kPage);
  Control& c = ctl.as<Control>();
  const int status = run_in_child([&] {
    Segment a = Segment::create(posix, 2 * kPage);
    Segment b = Segment::create(sysv, 3 * kPage);
    c.value.store(b.native_handle(), std::memory_order_release);
    c.ready.store(::getpid(), std::memory_order_release);
    return kOk;
  });
  ASSERT_EQ(exit_code(status), kOk);
  const int child = c.ready.load(std::memory_order_acquire);
  const int id = c.value.load(std::memory_order_acquire);
  bool saw_posix = false, saw_sysv = false;
  for (const SegmentStat& st : Segment::list()) {
    if (st.ns == Namespace::posix && st.name == posix) {
      saw_posix = true;
      EXPECT_EQ(st.size, 2 * kPage);
    }
    if (st.ns == Namespace::sysv && st.id == id) {
      saw_sysv = true;
      EXPECT_EQ(st.key, Name::parse(sysv).key);
      EXPECT_EQ(st.size, 3 * kPage);
      EXPECT_EQ(st.creator_pid, child);
      EXPECT_EQ(st.attach_count, 0u);
    }
  }
  EXPECT_TRUE(saw_posix) << posix;
  EXPECT_TRUE(saw_sysv) << sysv;
}

// ---- Interoperation with other programs ----

TEST(SegmentProc, OpensASegmentMadeByIpcmk) {
  std::string out;
  const int status = test::run_program({"ipcmk", "-M", "4096"}, &out);
  if (status == -1 || exit_code(status) == 127) GTEST_SKIP() << "ipcmk is not installed";
  ASSERT_EQ(exit_code(status), 0) << out;
  const std::string marker = "Shared memory id: ";
  const auto at = out.find(marker);
  ASSERT_NE(at, std::string::npos) << out;
  const int id = std::stoi(out.substr(at + marker.size()));
  const std::string name = "sysv:id=" + std::to_string(id);
  Remover rm(name);

  Segment s = Segment::open(name);
  EXPECT_EQ(s.size(), 4096u);
  EXPECT_EQ(s.native_handle(), id);
  put_text(s, "shmkit was here");
  Segment t = Segment::open(name);
  EXPECT_TRUE(starts_with_text(t, "shmkit was here"));
  const SegmentStat st = Segment::stat(name);
  EXPECT_EQ(st.id, id);
  EXPECT_EQ(st.size, 4096u);
  EXPECT_EQ(st.attach_count, 2u);
}

TEST(SegmentProc, IpcsListsAShmkitSegment) {
  const std::string name = unique_sysv_key();
  Remover rm(name);
  Segment s = Segment::create(name, 3 * kPage);
  std::string out;
  const int status = test::run_program({"ipcs", "-m"}, &out);
  if (status == -1 || exit_code(status) == 127) GTEST_SKIP() << "ipcs is not installed";
  ASSERT_EQ(exit_code(status), 0);
  char key[16];
  std::snprintf(key, sizeof key, "0x%08x", static_cast<unsigned>(Name::parse(name).key));
  std::istringstream lines(out);
  std::string line;
  bool found = false;
  while (std::getline(lines, line)) {
    std::istringstream f(line);
    std::string k, id, owner, perms, bytes, nattch;
    if (!(f >> k >> id >> owner >> perms >> bytes >> nattch)) continue;
    if (id != std::to_string(s.native_handle())) continue;
    found = true;
    EXPECT_EQ(k, key) << line;
    EXPECT_EQ(perms, "600") << line;
    EXPECT_EQ(bytes, std::to_string(3 * kPage)) << line;
    EXPECT_EQ(nattch, "1") << line;
  }
  EXPECT_TRUE(found) << "shmid " << s.native_handle() << " not in:\n" << out;
}

TEST(SegmentProc, OpensAPosixObjectWrittenByTheShell) {
  const std::string name = unique_name("/", "shell");
  Remover rm(name);
  const int status = test::run_program({"sh", "-c", "printf hello > /dev/shm" + name});
  ASSERT_EQ(exit_code(status), 0);
  OpenOptions ro;
  ro.access = Access::read_only;
  for (const OpenOptions& o : {OpenOptions{}, ro}) {
    Segment s = Segment::open(name, o);
    ASSERT_EQ(s.size(), 5u);
    EXPECT_EQ(std::string(static_cast<const char*>(s.data()), 5), "hello");
  }
  const SegmentStat st = Segment::stat(name);
  EXPECT_EQ(st.size, 5u);
  EXPECT_EQ(st.ns, Namespace::posix);
}

}  // namespace
}  // namespace shmkit
