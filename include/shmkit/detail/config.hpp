// SPDX-License-Identifier: MIT
// Export macro and debug assertions shared by every public header.
#pragma once

// Symbols are hidden by default (-fvisibility=hidden); this marks the exported ones.
#define SHMKIT_API __attribute__((visibility("default")))

#include <cstdio>
#include <cstdlib>

/// Checks one of shmkit's own invariants in debug builds. Never used on bytes another
/// process wrote: those are validated and reported as errors.
#ifndef NDEBUG
#  define SHMKIT_ASSERT(cond)                                                              \
    ((cond) ? static_cast<void>(0)                                                         \
            : (std::fprintf(stderr, "shmkit: assertion failed: %s (%s:%d)\n", #cond,       \
                            __FILE__, __LINE__),                                           \
               std::abort()))
#else
#  define SHMKIT_ASSERT(cond) static_cast<void>(0)
#endif
