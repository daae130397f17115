// SPDX-License-Identifier: MIT
// Seed 000's open_shm(bytes, justreading) done with shmkit. The seed calls it "fiendishly
// tedious": ftok, shmget at the minimum size, shmat, IPC_RMID, shmdt, shmget again at the
// new size, shmat again, because a System V segment cannot grow. Here it is one call on a
// POSIX name, and a block that an earlier run made smaller is grown in place, contents kept.
//
//   open_shm [-k] [name [text]]   write text, ask for a bigger block, read it back;
//                                 remove the name unless -k (keep)
//   open_shm -r [name]            only read what an earlier (-k) run wrote
//
// The default name is /open_shm-example. Exit status: 0, or 1 on failure.

#include <unistd.h>  // getopt, getpid

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "shmkit/error.hpp"
#include "shmkit/segment.hpp"

namespace {

/// Returns `bytes` of shared memory named `name`, to be used like memory from malloc().
/// Reading opens what a writer left (ENOENT if there is none, EINVAL if it is smaller than
/// `bytes`; 0 maps all of it); writing opens or creates it, growing it when smaller.
/// Throws Error.
shmkit::Segment open_shm(const std::string& name, std::size_t bytes, bool just_reading) {
  if (just_reading) {
    return shmkit::Segment::open(name, {.access = shmkit::Access::read_only, .size = bytes});
  }
  return shmkit::Segment::open_or_create(name, bytes, {.mode = 0644});
}

void put_text(const shmkit::Segment& segment, std::string_view text) {
  const std::span<char> data = segment.as_span<char>();
  const std::size_t n = std::min(text.size(), data.size() - 1);
  std::fill(std::copy_n(text.begin(), n, data.begin()), data.end(), '\0');
}

// The bytes are another process's output: stop at the terminator or at the end.
std::string get_text(const shmkit::Segment& segment) {
  const std::span<const char> data = segment.as_span<const char>();
  return std::string(data.data(), ::strnlen(data.data(), data.size()));
}

}  // namespace

int main(int argc, char** argv) try {
  bool keep = false, read_only = false;
  for (int c; (c = ::getopt(argc, argv, "kr")) != -1;) {
    if (c == 'k') {
      keep = true;
    } else if (c == 'r') {
      read_only = true;
    } else {
      std::fprintf(stderr, "usage: open_shm [-k] [name [text]] | open_shm -r [name]\n");
      return 1;
    }
  }
  const std::string name = optind < argc ? argv[optind++] : "/open_shm-example";
  if (read_only) {
    const shmkit::Segment in = open_shm(name, 0, true);
    std::printf("read \"%s\" from %s (%zu bytes)\n", get_text(in).c_str(), name.c_str(), in.size());
    return 0;
  }
  const std::string text =
      optind < argc ? argv[optind] : "hello from pid " + std::to_string(::getpid());

  {
    const shmkit::Segment out = open_shm(name, 4096, false);
    put_text(out, text);
    std::printf("wrote \"%s\" to %s (%zu bytes)\n", text.c_str(), name.c_str(), out.size());
  }
  {
    // The seed had to delete and recreate the segment here, losing what it held.
    const shmkit::Segment bigger = open_shm(name, 65536, false);
    std::printf("grew %s to %zu bytes; it still holds \"%s\"\n", name.c_str(), bigger.size(),
                get_text(bigger).c_str());
  }
  shmkit::Segment in = open_shm(name, 65536, true);
  std::printf("read \"%s\" from %s (%zu bytes, read-only)\n", get_text(in).c_str(), name.c_str(),
              in.size());
  if (!keep) {
    in.remove();  // the mapping stays valid until `in` is destroyed
    std::printf("removed %s\n", name.c_str());
  }
  return 0;
} catch (const shmkit::Error& e) {
  std::fprintf(stderr, "open_shm: %s\n", e.what());
  return 1;
}
