// SPDX-License-Identifier: MIT
// Example 3-1 of seed 001 (the IRIX shm_open test program) rewritten on shmkit. It opens or
// creates a named segment, prints its address and first word, stores its own pid there when
// writable and, with -w, waits for Enter and prints the first word again. One Segment call
// replaces shm_open + ftruncate + mmap; any shmkit name works (/x, file:/tmp/x, sysv:0x10).
//
//   shm_open_example [-p perms] [-s bytes] [-c] [-x] [-r] [-t] [-w] name
//
// As in the seed, the exit status is the errno of the failure (EINVAL for bad arguments).

#include <unistd.h>  // getopt, getpid

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "shmkit/error.hpp"
#include "shmkit/segment.hpp"

namespace {

// The first word holds a pid that unsynchronised processes read and write while others look:
// an atomic with relaxed order is the honest type for it (the seed used a plain pid_t).
using Word = std::atomic<std::int32_t>;
static_assert(Word::is_always_lock_free && sizeof(Word) == 4);

constexpr const char* kUsage =
    "usage: shm_open_example [-p perms] [-s bytes] [-c] [-x] [-r] [-t] [-w] name";

// Numbers are parsed with base 0, as the seed's strtoul(optarg, NULL, 0): 0644, 0x1000, 42.
unsigned long parse_number(const char* text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long value = std::strtoul(text, &end, 0);
  if (end == text || *end != '\0' || errno != 0)
    throw shmkit::Error(EINVAL, text, "parse number", "not a number");
  return value;
}

std::uint32_t first_word(const shmkit::Segment& segment) {
  return static_cast<std::uint32_t>(segment.as<const Word>().load(std::memory_order_relaxed));
}

void wait_for_enter() {
  for (int c = std::getchar(); c != EOF && c != '\n'; c = std::getchar()) {
  }
}

}  // namespace

int main(int argc, char** argv) try {
  shmkit::CreateOptions create_options;  // mode 0600
  shmkit::OpenOptions open_options;      // read-write, whole object
  std::size_t size = 65536;
  bool create = false, exclusive = false, truncate = false, wait = false;
  for (int c; (c = ::getopt(argc, argv, "p:s:cxrtw")) != -1;) {
    switch (c) {
      case 'p':
        create_options.mode = static_cast<std::uint32_t>(parse_number(optarg));
        break;
      case 's':
        size = open_options.size = shmkit::parse_size(optarg);
        break;
      case 'c':
        create = true;
        break;
      case 'x':
        exclusive = true;
        break;
      case 'r':
        open_options.access = shmkit::Access::read_only;
        break;
      case 't':
        truncate = true;
        break;
      case 'w':
        wait = true;
        break;
      default:
        std::fprintf(stderr, "%s\n", kUsage);
        return EINVAL;
    }
  }
  if (optind >= argc) {
    std::fprintf(stderr, "Segment pathname required\n");
    return EINVAL;
  }
  if (truncate && !create) {
    // shmkit never leaves a segment shorter than its mapping (that is the SIGBUS the seed
    // risks on Linux), so emptying one means creating it again at a size: -c -t.
    std::fprintf(stderr, "shm_open_example: -t needs -c\n");
    return EINVAL;
  }
  const char* name = argv[optind];
  const bool read_only = open_options.access == shmkit::Access::read_only;

  shmkit::Segment segment;
  if (create) {
    create_options.truncate = truncate;
    // -c maps to open_or_create (O_CREAT); -c -x to an exclusive create (O_CREAT|O_EXCL).
    segment = exclusive ? shmkit::Segment::create(name, size, create_options)
                        : shmkit::Segment::open_or_create(name, size, create_options);
  }
  if (!create || read_only) {
    // Creating maps read-write (the new memory is committed and zeroed); -c -r then
    // looks at the segment through a second, read-only mapping.
    segment = shmkit::Segment::open(name, open_options);
  }

  std::printf("Attached at %p, first word = 0x%x\n", segment.data(), first_word(segment));
  if (segment.writable()) {
    segment.as<Word>().store(static_cast<std::int32_t>(::getpid()), std::memory_order_relaxed);
    std::printf("Set first word to 0x%x\n", first_word(segment));
  }
  if (wait) {
    std::printf("Waiting for return key before unmapping...");
    std::fflush(stdout);
    wait_for_enter();
    std::printf("First word is now 0x%x\n", first_word(segment));
  }
  return 0;  // ~Segment unmaps; the name stays until removed
} catch (const shmkit::Error& e) {
  std::fprintf(stderr, "shm_open_example: %s\n", e.what());
  return e.errnum();
}
