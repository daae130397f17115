// SPDX-License-Identifier: MIT
// A separate program that segment_proc_test runs with fork+exec, so the other side of a test
// is a fresh process image (own address space layout, no inherited mappings).
//
//   segment_helper create NAME SIZE TEXT   create NAME (exclusive) and store TEXT at offset 0
//   segment_helper write NAME TEXT         open NAME read-write and store TEXT at offset 0
//   segment_helper read NAME               open NAME read-only and print the text at offset 0
//
// Exit status: 0 on success, the errno of a shmkit::Error, 100 on bad usage.
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "shmkit/segment.hpp"

namespace {

int store(const shmkit::Segment& s, std::string_view text) {
  if (text.size() + 1 > s.size()) {
    std::fprintf(stderr, "segment_helper: text does not fit in %zu bytes\n", s.size());
    return 101;
  }
  std::memcpy(s.data(), text.data(), text.size());
  static_cast<char*>(s.data())[text.size()] = '\0';
  return 0;
}

int run(int argc, char** argv) {
  const std::string verb = argc > 1 ? argv[1] : "";
  if (verb == "create" && argc == 5) {
    shmkit::Segment s = shmkit::Segment::create(argv[2], shmkit::parse_size(argv[3]));
    return store(s, argv[4]);
  }
  if (verb == "write" && argc == 4) {
    shmkit::Segment s = shmkit::Segment::open(argv[2]);
    return store(s, argv[3]);
  }
  if (verb == "read" && argc == 3) {
    shmkit::OpenOptions o;
    o.access = shmkit::Access::read_only;
    const shmkit::Segment s = shmkit::Segment::open(argv[2], o);
    const char* p = static_cast<const char*>(s.data());
    std::fwrite(p, 1, strnlen(p, s.size()), stdout);
    return 0;
  }
  std::fprintf(stderr,
               "usage: segment_helper create NAME SIZE TEXT | write NAME TEXT | read NAME\n");
  return 100;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const shmkit::Error& e) {
    std::fprintf(stderr, "segment_helper: %s\n", e.what());
    return e.errnum();
  }
}
