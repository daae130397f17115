// SPDX-License-Identifier: MIT
// Built with -m32: a 32-bit process that joins an arena a 64-bit process created, and uses
// every part of it. Prints what it read; exits 0 when all went as expected.
//   arena32_helper NAME ROUNDS
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "m32_shared.hpp"
#include "shmkit/arena.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: arena32_helper NAME ROUNDS\n");
    return 2;
  }
  static_assert(sizeof(void*) == 4, "this helper must be built as a 32-bit program");
  try {
    shmkit::Arena arena = shmkit::Arena::open(argv[1]);
    const int rounds = std::atoi(argv[2]);
    // The root datum and a named object the 64-bit creator made.
    const char* greeting = static_cast<const char*>(arena.root());
    std::printf("root: %s\n", greeting != nullptr ? greeting : "(none)");
    auto* shared = arena.find<m32::Shared>("shared");
    if (shared == nullptr) {
      std::fprintf(stderr, "no object named shared\n");
      return 1;
    }
    // Mutual exclusion with the 64-bit process, through one Mutex.
    for (int i = 0; i < rounds; ++i) {
      shared->lock.lock();
      ++shared->counter;
      shared->lock.unlock();
    }
    // Blocks allocated here, their offsets published for the 64-bit process to check and free.
    for (std::uint32_t i = 0; i < m32::kBlocks; ++i) {
      const std::size_t size = m32::block_size(i);
      auto* p = static_cast<unsigned char*>(arena.allocate(size));
      std::memset(p, m32::pattern(i), size);
      shared->blocks[i] = arena.offset_of(p);
    }
    // Free a few of the 64-bit process's blocks here (cross-architecture frees).
    for (std::uint32_t i = 0; i < m32::kBlocks; i += 2) {
      if (shared->from64[i] != 0) {
        arena.deallocate(arena.at(shared->from64[i]));
        shared->from64[i] = 0;
      }
    }
    void* expected = const_cast<char*>(greeting);
    void* mine = arena.allocate(32);
    std::strcpy(static_cast<char*>(mine), "hello from 32 bits");
    if (!arena.compare_exchange_root(expected, mine)) {
      std::fprintf(stderr, "root changed under us\n");
      return 1;
    }
    arena.construct<std::uint64_t>("m32.done", 32);
    std::printf("done: counter %llu\n", static_cast<unsigned long long>(shared->counter));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "arena32_helper: %s\n", e.what());
    return 1;
  }
}
