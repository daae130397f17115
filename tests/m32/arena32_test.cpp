// SPDX-License-Identifier: MIT
// A 32-bit process joins an arena a 64-bit process created: both lock one Mutex, allocate,
// free each other's blocks, swap the root datum and make named objects, and see the same data.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "m32_shared.hpp"
#include "shmkit/arena.hpp"
#include "test_support.hpp"

namespace {

using shmkit::test::Remover;
using shmkit::test::unique_name;

TEST(Arena32, A32BitProcessSharesAnArenaWithA64BitOne) {
#ifndef SHMKIT_M32_HELPER
  GTEST_SKIP() << "no 32-bit toolchain (g++-multilib) at build time";
#else
  const std::string name = unique_name("/", "m32");
  Remover remover(name);
  shmkit::Arena arena = shmkit::Arena::create(name, {.size = 4 << 20, .max_size = 64 << 20});
  auto* shared = arena.construct<m32::Shared>("shared");
  char* greeting = static_cast<char*>(arena.allocate(32));
  std::strcpy(greeting, "hello from 64 bits");
  arena.set_root(greeting);
  for (std::uint32_t i = 0; i < m32::kBlocks; ++i) {
    auto* p = static_cast<unsigned char*>(arena.allocate(m32::block_size(i)));
    std::memset(p, m32::pattern(i), m32::block_size(i));
    shared->from64[i] = arena.offset_of(p);
  }

  constexpr int kRounds = 200000;
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    const std::string rounds = std::to_string(kRounds);
    ::execl(SHMKIT_M32_HELPER, SHMKIT_M32_HELPER, name.c_str(), rounds.c_str(), nullptr);
    ::_exit(errno == ENOEXEC ? 126 : 127);
  }
  ::close(out[1]);
  for (int i = 0; i < kRounds; ++i) {
    shared->lock.lock();
    ++shared->counter;
    shared->lock.unlock();
  }
  std::string text;
  char buf[256];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
  ::close(out[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << text;
  if (WEXITSTATUS(status) == 126) {
    GTEST_SKIP() << "this kernel cannot run 32-bit programs (ENOEXEC: no IA-32 emulation)";
  }
  ASSERT_EQ(WEXITSTATUS(status), 0) << text;

  EXPECT_NE(text.find("root: hello from 64 bits"), std::string::npos) << text;
  EXPECT_EQ(shared->counter, 2u * kRounds);  // mutual exclusion across 32 and 64 bits
  EXPECT_STREQ(static_cast<const char*>(arena.root()), "hello from 32 bits");
  const auto* done = arena.find<std::uint64_t>("m32.done");
  ASSERT_NE(done, nullptr);
  EXPECT_EQ(*done, 32u);
  for (std::uint32_t i = 0; i < m32::kBlocks; ++i) {
    auto* p = static_cast<unsigned char*>(arena.at(shared->blocks[i]));
    ASSERT_NE(p, nullptr);
    for (std::size_t k = 0; k < m32::block_size(i); ++k) ASSERT_EQ(p[k], m32::pattern(i)) << i;
    arena.deallocate(p);
    if (shared->from64[i] != 0) arena.deallocate(arena.at(shared->from64[i]));
    EXPECT_EQ(shared->from64[i] == 0, i % 2 == 0);
  }
  EXPECT_EQ(arena.check(), "");
#endif
}

}  // namespace
