// SPDX-License-Identifier: MIT
// The memory section of `shmkit bench alloc` (alloc_memory.cpp): usable fractions of fixed
// regions and churn overhead, shmkit against Boost.Interprocess and glibc.
#pragma once

#include "harness.hpp"

namespace shmkit::bench {

/// Adds the memory rows and the memory_* ratios to `report`.
void memory_section(Report& report, bool quick);

}  // namespace shmkit::bench
