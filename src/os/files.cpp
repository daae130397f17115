// SPDX-License-Identifier: MIT
// Descriptors, files and directories: POSIX shared memory, mapped files, memfd.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "os/os.hpp"

namespace shmkit::os {
namespace {

// Retries a call returning -1/errno while it fails with EINTR.
template <class F>
auto retry(F call) {
  decltype(call()) rc;
  do {
    rc = call();
  } while (rc == -1 && errno == EINTR);
  return rc;
}

Status status_of(int rc) { return rc == -1 ? Status::fail(errno) : Status{}; }

int open_flags(OpenFlags f) {
  return (f.read_only ? O_RDONLY : O_RDWR) | (f.create ? O_CREAT : 0) |
         (f.exclusive ? O_EXCL : 0) | (f.truncate ? O_TRUNC : 0) | O_CLOEXEC | O_NOFOLLOW;
}

FileStat to_file_stat(const struct stat& st) {
  FileStat out;
  out.size = static_cast<std::uint64_t>(st.st_size);
  out.mode = st.st_mode & 07777;
  out.uid = st.st_uid;
  out.gid = st.st_gid;
  out.atime = st.st_atim.tv_sec;
  out.mtime = st.st_mtim.tv_sec;
  out.ctime = st.st_ctim.tv_sec;
  out.regular = S_ISREG(st.st_mode);
  return out;
}

}  // namespace

int last_error() noexcept { return errno; }

Result<int> shm_open(const std::string& name, OpenFlags flags, std::uint32_t mode) {
  const int fd = retry([&] { return ::shm_open(name.c_str(), open_flags(flags), mode); });
  if (fd == -1) return Result<int>::fail(errno);
  return fd;
}

const char* posix_shm_directory() noexcept { return "/dev/shm"; }

Status shm_unlink(const std::string& name) { return status_of(::shm_unlink(name.c_str())); }

Result<int> open_file(const std::string& path, OpenFlags flags, std::uint32_t mode) {
  const int fd = retry([&] { return ::open(path.c_str(), open_flags(flags), mode); });
  if (fd == -1) return Result<int>::fail(errno);
  return fd;
}

Status unlink(const std::string& path) { return status_of(::unlink(path.c_str())); }

Result<int> memfd_create(const char* name, bool huge_pages) {
  const int fd = ::memfd_create(name, MFD_CLOEXEC | (huge_pages ? MFD_HUGETLB : 0u));
  if (fd == -1) return Result<int>::fail(errno);
  return fd;
}

Status close(int fd) {
  // Linux releases the descriptor even when close() reports EINTR; retrying could close
  // a descriptor another thread just received.
  if (::close(fd) == -1 && errno != EINTR) return Status::fail(errno);
  return {};
}

Result<FileStat> fstat(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) == -1) return Result<FileStat>::fail(errno);
  return to_file_stat(st);
}

Result<FileStat> lstat(const std::string& path) {
  struct stat st {};
  if (::fstatat(AT_FDCWD, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == -1) {
    return Result<FileStat>::fail(errno);
  }
  return to_file_stat(st);
}

Status allocate(int fd, std::uint64_t size) {
  const auto len = static_cast<off_t>(size);
  if (retry([&] { return ::fallocate(fd, 0, 0, len); }) == 0) return {};
  if (errno != EOPNOTSUPP) return Status::fail(errno);
  // A filesystem without fallocate: posix_fallocate writes into each block instead.
  const int err = ::posix_fallocate(fd, 0, len);
  return err == 0 ? Status{} : Status::fail(err);
}

Status truncate(int fd, std::uint64_t size) {
  return status_of(retry([&] { return ::ftruncate(fd, static_cast<off_t>(size)); }));
}

Status fchmod(int fd, std::uint32_t mode) { return status_of(::fchmod(fd, mode)); }

Status fchown(int fd, std::uint32_t uid, std::uint32_t gid) {
  return status_of(::fchown(fd, uid, gid));
}

Result<std::vector<std::string>> list_directory(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return Result<std::vector<std::string>>::fail(errno);
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) {
      names.emplace_back(entry->d_name);
    }
  }
  const int err = errno;
  ::closedir(dir);
  if (err != 0) return Result<std::vector<std::string>>::fail(err);
  return names;
}

Result<std::string> read_small_file(const std::string& path) {
  auto fd = open_file(path, OpenFlags{.read_only = true}, 0);
  if (!fd.ok()) return Result<std::string>::fail(fd.error());
  std::string text;
  char buf[8192];
  for (;;) {
    const ssize_t n = retry([&] { return ::read(fd.value(), buf, sizeof buf); });
    if (n == -1) {
      const int err = errno;
      (void)close(fd.value());
      return Result<std::string>::fail(err);
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  (void)close(fd.value());
  return text;
}

std::int32_t getpid() noexcept { return ::getpid(); }

}  // namespace shmkit::os
