// SPDX-License-Identifier: MIT
// Beej's shmdemo (seed 003) rewritten on shmkit: with one argument it stores the text in a
// 1 KiB System V segment, without one it prints what the segment holds. The data persists
// between runs because the segment lives in the kernel; --remove deletes it (Beej: ipcrm).
//
//   shmdemo [text]      write text, or (no argument) read
//   shmdemo --remove    remove the segment
//
// The key is ftok(file, 'R'), as Beej's ftok("shmdemo.c", 'R'), where file is
// $SHMDEMO_KEYFILE if set, else this program's own executable (so it works from any
// directory; rebuilding the program changes the key). Exit status: 0, or 1 on failure.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "shmkit/error.hpp"
#include "shmkit/name.hpp"
#include "shmkit/segment.hpp"

namespace {

constexpr std::size_t kShmSize = 1024;

std::string segment_name() {
  std::string file;
  if (const char* env = std::getenv("SHMDEMO_KEYFILE"); env != nullptr && *env != '\0') {
    file = env;
  } else {
    file = std::filesystem::read_symlink("/proc/self/exe").string();
  }
  const shmkit::Name name{
      .ns = shmkit::Namespace::sysv, .sysv = shmkit::SysvForm::ftok, .path = file, .proj = 'R'};
  return name.str();  // "sysv:@<file>:82"
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc > 2) {
    std::fprintf(stderr, "usage: shmdemo [text | --remove]\n");
    return 1;
  }
  const std::string name = segment_name();
  if (argc == 2 && std::strcmp(argv[1], "--remove") == 0) {
    shmkit::Segment::remove(name);
    std::printf("removed %s\n", name.c_str());
    return 0;
  }

  // ftok + shmget(key, 1024, 0644 | IPC_CREAT) + shmat, and the (char *)-1 check, in one call.
  const shmkit::Segment segment = shmkit::Segment::open_or_create(name, kShmSize, {.mode = 0644});
  const std::span<char> data = segment.as_span<char>().first(kShmSize);

  if (argc == 2) {
    std::printf("writing to segment: \"%s\"\n", argv[1]);
    // Unlike the seed's strncpy, always leave room for the terminator.
    const std::size_t n = std::min(std::strlen(argv[1]), data.size() - 1);
    std::fill(std::copy_n(argv[1], n, data.begin()), data.end(), '\0');
  } else {
    // Another process wrote these bytes: stop at the terminator or at the end.
    const std::string_view text(data.data(), ::strnlen(data.data(), data.size()));
    std::printf("segment contains: \"%.*s\"\n", static_cast<int>(text.size()), text.data());
  }
  return 0;  // ~Segment detaches (shmdt); the segment stays for the next run
} catch (const std::exception& e) {  // shmkit::Error, or reading /proc/self/exe
  std::fprintf(stderr, "shmdemo: %s\n", e.what());
  return 1;
}
