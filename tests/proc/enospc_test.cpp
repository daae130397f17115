// SPDX-License-Identifier: MIT
// A full filesystem is an Error with ENOSPC, never a SIGBUS on first touch (DESIGN invariant 5).
// Each test runs in a forked child that enters its own mount namespace and mounts a 1 MiB
// tmpfs over /dev/shm (or over a temp dir for file: segments), so the host is never touched
// and the tmpfs vanishes with the child. Children report through their exit status; without
// the right to unshare or mount, the tests are skipped with the reason.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>

#include "shmkit/error.hpp"
#include "shmkit/segment.hpp"
#include "test_support.hpp"

namespace shmkit {
namespace {

using test::exit_code;
using test::TempDir;
using test::unique_name;

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * kKiB;
constexpr int kSkip = 77;

struct Reason {
  char text[256];
};

// Runs `body` in a child with a private mount namespace in which a `size` tmpfs covers
// `where`. Returns the child's exit code (128+signal if killed), or kSkip with `why` filled
// in when the namespace or the mount is not allowed here.
int in_small_tmpfs(const std::string& where, const char* size, std::string* why,
                   const std::function<int()>& body) {
  Segment reason = Segment::create_anonymous(sizeof(Reason));
  Reason& r = reason.as<Reason>();
  const int status = test::run_in_child([&] {
    const std::string options = std::string("size=") + size + ",mode=1777";
    const char* step = nullptr;
    if (::unshare(CLONE_NEWNS) != 0) {
      step = "unshare(CLONE_NEWNS)";
    } else if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      step = "mount --make-rprivate /";
    } else if (::mount("tmpfs", where.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) !=
               0) {
      step = "mount -t tmpfs";
    }
    if (step != nullptr) {
      const int err = errno;
      std::snprintf(r.text, sizeof r.text, "%s (%s): %s", step, where.c_str(), std::strerror(err));
      return kSkip;
    }
    std::signal(SIGBUS, SIG_DFL);
    return body();
  });
  const int code = exit_code(status);
  if (code == kSkip) *why = r.text;
  return code;
}

int entries(const std::string& dir) {
  return static_cast<int>(std::distance(std::filesystem::directory_iterator(dir),
                                        std::filesystem::directory_iterator()));
}

// Returns 0 when `f` throws Error(ENOSPC); otherwise touches what it made (a SIGBUS there is
// the bug this file guards against) and returns `fail_code`.
template <class F>
int expect_enospc(F&& f, int fail_code) {
  try {
    Segment s = f();
    std::memset(s.data(), 1, s.size());
    std::fprintf(stderr, "no ENOSPC: got %zu bytes\n", s.size());
    return fail_code;
  } catch (const Error& e) {
    if (e.errnum() == ENOSPC) return 0;
    std::fprintf(stderr, "expected ENOSPC, got: %s\n", e.what());
    return fail_code + 1;
  }
}

// Creates `name` at 512 KiB on a 1 MiB filesystem, then grows it past the space: ENOSPC,
// and the segment still works at its old size. `dir` holds the object's file.
int grow_past_the_space(const std::string& name, const std::string& dir) {
  Segment s = Segment::create(name, 512 * kKiB);
  std::memset(s.data(), 0x5A, s.size());
  try {
    s.grow(4 * kMiB);
    std::fprintf(stderr, "grow to 4 MiB on a 1 MiB tmpfs succeeded\n");
    return 20;
  } catch (const Error& e) {
    if (e.errnum() != ENOSPC) {
      std::fprintf(stderr, "expected ENOSPC, got: %s\n", e.what());
      return 21;
    }
  }
  if (!s || s.size() != 512 * kKiB) return 22;
  const auto* p = static_cast<const unsigned char*>(s.data());
  if (!std::all_of(p, p + s.size(), [](unsigned char c) { return c == 0x5A; })) return 23;
  std::memset(s.data(), 0xA5, s.size());  // still writable, all of it
  if (s.stat().size != 512 * kKiB) return 24;
  Segment again = Segment::open(name);
  if (again.size() != 512 * kKiB) return 25;
  if (static_cast<const unsigned char*>(again.data())[512 * kKiB - 1] != 0xA5) return 26;
  if (entries(dir) != 1) return 27;
  return 0;
}

TEST(Enospc, PosixCreateLargerThanTheFilesystem) {
  const std::string name = unique_name("/", "enospc");
  std::string why;
  const int code = in_small_tmpfs("/dev/shm", "1m", &why, [&] {
    if (const int rc = expect_enospc([&] { return Segment::create(name, 4 * kMiB); }, 1)) {
      return rc;
    }
    if (entries("/dev/shm") != 0) return 3;  // nothing left behind
    if (const int rc = expect_enospc([&] { return Segment::open_or_create(name, 4 * kMiB); }, 4)) {
      return rc;
    }
    if (entries("/dev/shm") != 0) return 6;
    // After all that, the space is still there for a segment that fits.
    Segment fits = Segment::create(name, 768 * kKiB);
    std::memset(fits.data(), 1, fits.size());
    return 0;
  });
  if (code == kSkip) GTEST_SKIP() << "cannot mount a private tmpfs: " << why;
  EXPECT_EQ(code, 0) << "1: no ENOSPC; 2/5: another error; 3/6: object left behind; "
                        "135: SIGBUS";
}

TEST(Enospc, PosixGrowPastTheFilesystem) {
  const std::string name = unique_name("/", "enospcgrow");
  std::string why;
  const int code =
      in_small_tmpfs("/dev/shm", "1m", &why, [&] { return grow_past_the_space(name, "/dev/shm"); });
  if (code == kSkip) GTEST_SKIP() << "cannot mount a private tmpfs: " << why;
  EXPECT_EQ(code, 0) << "20: grew; 21: not ENOSPC; 22: lost its size; 23: lost content; "
                        "24: object size changed; 25/26: reopened differently; 27: files; "
                        "135: SIGBUS";
}

TEST(Enospc, FileCreateLargerThanTheFilesystem) {
  TempDir dir("enospcfile");
  const std::string name = "file:" + dir.path() + "/seg";
  std::string why;
  const int code = in_small_tmpfs(dir.path(), "1m", &why, [&] {
    if (const int rc = expect_enospc([&] { return Segment::create(name, 4 * kMiB); }, 1)) {
      return rc;
    }
    if (entries(dir.path()) != 0) return 3;
    return 0;
  });
  if (code == kSkip) GTEST_SKIP() << "cannot mount a private tmpfs: " << why;
  EXPECT_EQ(code, 0) << "1: no ENOSPC; 2: another error; 3: file left behind; 135: SIGBUS";
}

TEST(Enospc, FileGrowPastTheFilesystem) {
  TempDir dir("enospcfilegrow");
  const std::string name = "file:" + dir.path() + "/seg";
  std::string why;
  const int code =
      in_small_tmpfs(dir.path(), "1m", &why, [&] { return grow_past_the_space(name, dir.path()); });
  if (code == kSkip) GTEST_SKIP() << "cannot mount a private tmpfs: " << why;
  EXPECT_EQ(code, 0) << "20: grew; 21: not ENOSPC; 22: lost its size; 23: lost content; "
                        "24: object size changed; 25/26: reopened differently; 27: files; "
                        "135: SIGBUS";
}

}  // namespace
}  // namespace shmkit
