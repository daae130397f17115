// SPDX-License-Identifier: MIT
// Uses the installed headers and library: create, reopen, compare, clean up.
#include <shmkit/shmkit.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include <unistd.h>

int main() {
  const std::string name = "/shmkit-test-" + std::to_string(getpid()) + "-consumer";
  try {
    auto seg = shmkit::Segment::create(name, 4096, {.remove_on_close = true});
    std::strcpy(static_cast<char*>(seg.data()), "consumer");
    auto again = shmkit::Segment::open(name, {.access = shmkit::Access::read_only});
    const bool same = std::strcmp(static_cast<const char*>(again.data()), "consumer") == 0;
    std::printf("%s %s\n", shmkit::kVersion, same ? "ok" : "MISMATCH");
    return same ? 0 : 1;
  } catch (const shmkit::Error& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
}
