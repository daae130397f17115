// SPDX-License-Identifier: MIT
// What the 64-bit test and the 32-bit helper share inside the arena: one layout for both.
#pragma once

#include <cstdint>

#include "shmkit/mutex.hpp"

namespace m32 {

inline constexpr std::uint32_t kBlocks = 64;

struct Shared {
  shmkit::Mutex lock;
  std::uint64_t counter;
  std::uint64_t blocks[kBlocks];  // offsets of the 32-bit process's blocks
  std::uint64_t from64[kBlocks];  // offsets of the 64-bit process's blocks (0 once freed)
};
static_assert(sizeof(Shared) == 64 + 8 + 2 * 8 * kBlocks, "the same in 32 and 64 bits");

inline std::size_t block_size(std::uint32_t i) { return 16 + (i * 97) % 3000; }
inline unsigned char pattern(std::uint32_t i) { return static_cast<unsigned char>(0x40 + i); }

}  // namespace m32
