// SPDX-License-Identifier: MIT
// Mappings: mmap, munmap, mremap, populate, mlock.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include "os/os.hpp"

#ifndef MADV_POPULATE_WRITE
#  define MADV_POPULATE_WRITE 23  // Linux 5.14; older headers lack the name
#endif

namespace shmkit::os {
namespace {
Status status_of(int rc) { return rc == -1 ? Status::fail(errno) : Status{}; }
}  // namespace

Result<void*> map(int fd, std::size_t size, Protection prot, void* address, bool fixed) {
  const int p = prot == Protection::read ? PROT_READ : PROT_READ | PROT_WRITE;
  const int flags = MAP_SHARED | (fixed ? MAP_FIXED_NOREPLACE : 0);
  void* base = ::mmap(address, size, p, flags, fd, 0);
  if (base == MAP_FAILED) return Result<void*>::fail(errno);
  if (fixed && base != address) {
    // Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat it as a hint.
    ::munmap(base, size);
    return Result<void*>::fail(EEXIST);
  }
  return base;
}

Status unmap(void* base, std::size_t size) { return status_of(::munmap(base, size)); }

Result<void*> remap(void* base, std::size_t old_size, std::size_t new_size) {
  void* moved = ::mremap(base, old_size, new_size, MREMAP_MAYMOVE);
  if (moved == MAP_FAILED) return Result<void*>::fail(errno);
  return moved;
}

Status populate_write(void* base, std::size_t size) {
  int rc;
  do {
    rc = ::madvise(base, size, MADV_POPULATE_WRITE);
  } while (rc == -1 && errno == EINTR);
  return status_of(rc);
}

Status mlock(void* base, std::size_t size) { return status_of(::mlock(base, size)); }
Status munlock(void* base, std::size_t size) { return status_of(::munlock(base, size)); }

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

}  // namespace shmkit::os
