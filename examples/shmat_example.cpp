// SPDX-License-Identifier: MIT
// Example 3-6 of seed 001 (the IRIX shmat test program) rewritten on shmkit. It attaches an
// existing System V segment, found by key or by id, prints the address and first word and,
// when read-write, stores its own pid there. Run it twice: the second run shows the first
// run's pid, because the segment keeps its contents between runs.
//
//   shmat_example {-k key | -i id} [-a addr] [-r] [-w]
//
// -a asks for an exact address (OpenOptions::address); EEXIST if something is mapped there.
// Exit status: errno.

#include <unistd.h>  // getopt, getpid

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "shmkit/error.hpp"
#include "shmkit/name.hpp"
#include "shmkit/segment.hpp"

namespace {

// The pid in the first word is written and read by unsynchronised processes.
using Word = std::atomic<std::int32_t>;
static_assert(Word::is_always_lock_free && sizeof(Word) == 4);

// Numbers are parsed with base 0, as the seed's strtoul(optarg, NULL, 0).
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

int usage() {
  std::fprintf(stderr, "usage: shmat_example {-k key | -i id} [-a addr] [-r] [-w]\n");
  return EINVAL;
}

}  // namespace

int main(int argc, char** argv) try {
  shmkit::Name name;  // name.sysv stays none until -k or -i
  name.ns = shmkit::Namespace::sysv;
  shmkit::OpenOptions options;  // read-write, whole segment, system-chosen address
  bool wait = false;
  for (int c; (c = ::getopt(argc, argv, "k:i:a:rw")) != -1;) {
    switch (c) {
      case 'k':
        name.sysv = shmkit::SysvForm::key;
        name.key = static_cast<std::int32_t>(parse_number(optarg));
        break;
      case 'i':
        name.sysv = shmkit::SysvForm::id;
        name.id = static_cast<std::int32_t>(parse_number(optarg));
        break;
      case 'a':
        options.address = reinterpret_cast<void*>(parse_number(optarg));
        break;
      case 'r':
        options.access = shmkit::Access::read_only;
        break;
      case 'w':
        wait = true;
        break;
      default:
        return usage();
    }
  }
  if (name.sysv == shmkit::SysvForm::none || optind != argc) return usage();

  const shmkit::Segment segment = shmkit::Segment::open(name.str(), options);
  std::printf("Attached at %p, first word = 0x%x\n", segment.data(), first_word(segment));
  if (segment.writable()) {
    segment.as<Word>().store(static_cast<std::int32_t>(::getpid()), std::memory_order_relaxed);
    std::printf("Set first word to 0x%x\n", first_word(segment));
  }
  if (wait) {
    std::printf("Press return to detach...");
    std::fflush(stdout);
    for (int c = std::getchar(); c != EOF && c != '\n'; c = std::getchar()) {
    }
    std::printf("First word is now 0x%x\n", first_word(segment));
  }
  return 0;  // ~Segment detaches
} catch (const shmkit::Error& e) {
  std::fprintf(stderr, "shmat_example: %s\n", e.what());
  return e.errnum();
}
