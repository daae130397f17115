// SPDX-License-Identifier: MIT
// The library's version.
#pragma once

#define SHMKIT_VERSION_MAJOR 0
#define SHMKIT_VERSION_MINOR 1
#define SHMKIT_VERSION_PATCH 0

namespace shmkit {
/// The version of the headers, "major.minor.patch".
inline constexpr const char* kVersion = "0.1.0";
}  // namespace shmkit
