// SPDX-License-Identifier: MIT
// Seed 004's shared area: a `struct _syscall` that every party agrees on, an initialiser
// (clear_syscall), a creator that allocates it with mode 0600 and exclusively, and users that
// open it and work through shm_ptr->buf. Segment::as<T>() is the typed view: it checks that
// the segment holds at least a T, so a peer that disagrees on the layout gets an error, not
// a write past the end. As the seed says, synchronisation is still the programmer's job.
//
//   shared_struct [-n name] create | write TEXT | read | remove
//
// The default name is sysv:@<this program>:1, the seed's ftok(path_to_existing_file, PROJ)
// with PROJ 1; any shmkit name works. Exit status: errno.

#include <unistd.h>  // getopt, getpid

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <type_traits>

#include "shmkit/error.hpp"
#include "shmkit/name.hpp"
#include "shmkit/segment.hpp"

namespace {

constexpr std::size_t kBufsizeMax = 256;  // the seed's BUFSIZE_MAX
constexpr signed char kMesgUnspec = 0;    // MESG_UNSPEC: nothing written yet
constexpr signed char kMesgText = 1;      // buf holds text

// The shared area (the seed's struct _syscall). Every party compiles this same definition.
// All-zero bytes are its valid empty state; it holds no pointers, only values.
struct Syscall {
  signed char id;           // kMesgUnspec or kMesgText; written by the last writer
  signed char reserved[3];  // padding, made explicit
  std::int32_t pid;         // pid of the last writer
  char buf[kBufsizeMax];    // NUL-terminated text
};
static_assert(std::is_standard_layout_v<Syscall> && std::is_trivially_copyable_v<Syscall>);
static_assert(sizeof(Syscall) == 8 + kBufsizeMax && alignof(Syscall) == 4);
static_assert(offsetof(Syscall, pid) == 4 && offsetof(Syscall, buf) == 8);

// The seed's clear_syscall macro, as a function.
void clear_syscall(Syscall* p) {
  p->id = kMesgUnspec;
  p->pid = 0;
  p->buf[0] = '\0';
}

std::string default_name() {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  return "sysv:@" + self + ":1";
}

int usage() {
  std::fprintf(stderr, "usage: shared_struct [-n name] create | write TEXT | read | remove\n");
  return EINVAL;
}

}  // namespace

int main(int argc, char** argv) try {
  std::string name;
  for (int c; (c = ::getopt(argc, argv, "n:")) != -1;) {
    if (c != 'n') return usage();
    name = optarg;
  }
  if (optind >= argc) return usage();
  if (name.empty()) name = default_name();
  const std::string command = argv[optind];

  if (command == "create" && optind + 1 == argc) {
    shmkit::Segment segment = shmkit::Segment::create(name, sizeof(Syscall), {.mode = 0600});
    Syscall* shm_ptr = &segment.as<Syscall>();
    clear_syscall(shm_ptr);  // initialise shared memory
    std::printf("created %s: %zu bytes, mode 0600\n", name.c_str(), sizeof(Syscall));
  } else if (command == "write" && optind + 2 == argc) {
    const shmkit::Segment segment = shmkit::Segment::open(name);
    Syscall* shm_ptr = &segment.as<Syscall>();  // EINVAL if smaller than a Syscall
    std::strncpy(shm_ptr->buf, argv[optind + 1], kBufsizeMax - 1);
    shm_ptr->buf[kBufsizeMax - 1] = '\0';
    shm_ptr->pid = static_cast<std::int32_t>(::getpid());
    shm_ptr->id = kMesgText;
    std::printf("wrote buf = \"%s\"\n", shm_ptr->buf);
  } else if (command == "read" && optind + 1 == argc) {
    // Readers only need SHM_RDONLY, and a read-only segment gives only a const view.
    const shmkit::Segment segment =
        shmkit::Segment::open(name, {.access = shmkit::Access::read_only});
    const Syscall* shm_ptr = &segment.as<const Syscall>();
    // The bytes are another process's output: check them, never trust them.
    if (shm_ptr->id != kMesgUnspec && shm_ptr->id != kMesgText) {
      throw shmkit::Error(EPROTO, name, "read", "id is not a MESG_ value");
    }
    const std::size_t n = ::strnlen(shm_ptr->buf, kBufsizeMax);
    std::printf("id = %d, pid = %d, buf = \"%.*s\"\n", shm_ptr->id, shm_ptr->pid,
                static_cast<int>(n), shm_ptr->buf);
  } else if (command == "remove" && optind + 1 == argc) {
    shmkit::Segment::remove(name);  // the seed's shmctl(shmid, IPC_RMID, 0)
    std::printf("removed %s\n", name.c_str());
  } else {
    return usage();
  }
  return 0;
} catch (const std::system_error& e) {  // shmkit::Error, or reading /proc/self/exe
  // The seed's typical failure: an earlier run created the segment and never removed it.
  const char* hint = e.code().value() == EEXIST ? " (left by an earlier run? see 'remove')" : "";
  std::fprintf(stderr, "shared_struct: %s%s\n", e.what(), hint);
  return e.code().value();
}
