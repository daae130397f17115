// SPDX-License-Identifier: MIT
// Example 3-5 of seed 001 (the IRIX shmget test program) rewritten on shmkit. It creates or
// finds a System V segment by key and prints its id and, from stat(), its owner and creator.
// The Name is built field by field here; its text form is what every shmkit call accepts.
//
//   shmget_example [-k key] [-s size] [-p perms] [-c] [-x]
//
// Key 0 (the default) is IPC_PRIVATE, spelled sysv:private: always a new segment, which
// stays until removed (shmkit remove sysv:id=N, or ipcrm -m N). Exit status: errno.

#include <unistd.h>  // getopt

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "shmkit/error.hpp"
#include "shmkit/name.hpp"
#include "shmkit/segment.hpp"

namespace {

// Numbers are parsed with base 0, as the seed's strtoul(optarg, NULL, 0): 0644, 0x1000, 42.
unsigned long parse_number(const char* text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long value = std::strtoul(text, &end, 0);
  if (end == text || *end != '\0' || errno != 0)
    throw shmkit::Error(EINVAL, text, "parse number", "not a number");
  return value;
}

}  // namespace

int main(int argc, char** argv) try {
  std::uint32_t key = 0;
  std::size_t size = 65536;
  shmkit::CreateOptions options;  // mode 0600
  bool create = false, exclusive = false;
  for (int c; (c = ::getopt(argc, argv, "k:s:p:cx")) != -1;) {
    switch (c) {
      case 'k':
        key = static_cast<std::uint32_t>(parse_number(optarg));
        break;
      case 's':
        size = shmkit::parse_size(optarg);
        break;
      case 'p':
        options.mode = static_cast<std::uint32_t>(parse_number(optarg));
        break;
      case 'c':
        create = true;
        break;
      case 'x':
        exclusive = true;
        break;
      default:
        std::fprintf(stderr, "usage: shmget_example [-k key] [-s size] [-p perms] [-c] [-x]\n");
        return EINVAL;
    }
  }

  shmkit::Name name;
  name.ns = shmkit::Namespace::sysv;
  name.sysv = key == 0 ? shmkit::SysvForm::private_key : shmkit::SysvForm::key;
  name.key = static_cast<std::int32_t>(key);

  shmkit::Segment segment;
  if (name.sysv == shmkit::SysvForm::private_key) {
    segment = shmkit::Segment::create(name.str(), size, options);
  } else if (create) {
    // IPC_CREAT alone finds or creates; with IPC_EXCL an existing key is EEXIST.
    options.exclusive = exclusive;
    segment = exclusive ? shmkit::Segment::create(name.str(), size, options)
                        : shmkit::Segment::open_or_create(name.str(), size, options);
  } else {
    // Like shmget(key, size, 0): EINVAL when the segment is smaller than `size`.
    segment = shmkit::Segment::open(name.str(), {.size = size});
  }

  const int shmid = segment.native_handle();
  const shmkit::SegmentStat stat = segment.stat();
  std::printf("shmid = %d (0x%x)\n", shmid, static_cast<unsigned>(shmid));
  std::printf("owner uid/gid: %u/%u\n", stat.uid, stat.gid);
  std::printf("creator uid/gid: %u/%u\n", stat.cuid.value_or(stat.uid),
              stat.cgid.value_or(stat.gid));
  return 0;  // ~Segment detaches; the segment stays, as System V segments do
} catch (const shmkit::Error& e) {
  std::fprintf(stderr, "shmget_example: %s\n", e.what());
  return e.errnum();
}
