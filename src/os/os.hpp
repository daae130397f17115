// SPDX-License-Identifier: MIT
// The os layer's contract: every system call shmkit makes, wrapped. Reading this file tells
// everything shmkit asks of the kernel. Wrappers never throw; each returns Result<T>, a value
// or an errno, and retries EINTR itself. Descriptors are opened O_CLOEXEC; paths are never
// followed through a final symlink (O_NOFOLLOW).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace shmkit::os {

// ---- Result ----

/// A value or an errno. `ok()` first; `value()` only when ok, `error()` only when not.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT(google-explicit-constructor): ergonomic returns
  static Result fail(int err) { Result r; r.err_ = err; return r; }
  bool ok() const noexcept { return err_ == 0; }
  int error() const noexcept { return err_; }
  T& value() & { return value_; }
  T&& value() && { return std::move(value_); }
  const T& value() const& { return value_; }

 private:
  Result() = default;
  T value_{};
  int err_ = 0;
};

/// Result of an operation with no value.
class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status fail(int err) { Status s; s.err_ = err; return s; }
  bool ok() const noexcept { return err_ == 0; }
  int error() const noexcept { return err_; }

 private:
  int err_ = 0;
};

/// errno captured right after a failed call, as a failed Result/Status.
int last_error() noexcept;

// ---- Descriptors and files ----

/// How to open a POSIX object or a file (O_CREAT, O_EXCL, O_TRUNC, O_RDONLY / O_RDWR).
struct OpenFlags {
  bool create = false;
  bool exclusive = false;
  bool truncate = false;
  bool read_only = false;
};

/// shm_open(name, flags | O_CLOEXEC | O_NOFOLLOW, mode). `name` is "/x". Errors as shm_open.
Result<int> shm_open(const std::string& name, OpenFlags flags, std::uint32_t mode);
/// The directory where Linux keeps POSIX shared memory objects ("/dev/shm").
const char* posix_shm_directory() noexcept;
/// shm_unlink. ENOENT when missing.
Status shm_unlink(const std::string& name);
/// open(path, flags | O_CLOEXEC | O_NOFOLLOW, mode). ELOOP when path is a symlink.
Result<int> open_file(const std::string& path, OpenFlags flags, std::uint32_t mode);
/// unlink(path).
Status unlink(const std::string& path);
/// memfd_create(name, MFD_CLOEXEC [| MFD_HUGETLB]).
Result<int> memfd_create(const char* name, bool huge_pages);
/// close(fd); EINTR is not retried (the descriptor is gone either way).
Status close(int fd);

/// What fstat/stat report that shmkit uses.
struct FileStat {
  std::uint64_t size = 0;
  std::uint32_t mode = 0;  // permission bits only
  std::uint32_t uid = 0, gid = 0;
  std::int64_t atime = 0, mtime = 0, ctime = 0;
  bool regular = false;
};
Result<FileStat> fstat(int fd);
/// fstatat(dirfd-less path, AT_SYMLINK_NOFOLLOW).
Result<FileStat> lstat(const std::string& path);

/// Commits [0, size) of the file's backing store and extends the file to `size` if shorter,
/// never shrinking it (fallocate mode 0; posix_fallocate where the filesystem lacks it).
/// ENOSPC when the filesystem is full.
Status allocate(int fd, std::uint64_t size);
/// ftruncate(fd, size).
Status truncate(int fd, std::uint64_t size);
Status fchmod(int fd, std::uint32_t mode);
Status fchown(int fd, std::uint32_t uid, std::uint32_t gid);

/// Names of the entries of a directory (no "." or ".."). ENOENT/EACCES as opendir.
Result<std::vector<std::string>> list_directory(const std::string& path);
/// The whole content of a (small, /proc) file.
Result<std::string> read_small_file(const std::string& path);

// ---- Mappings ----

enum class Protection { read, read_write };

/// mmap(nullptr or hint, size, prot, MAP_SHARED [| MAP_FIXED_NOREPLACE when fixed], fd, 0).
Result<void*> map(int fd, std::size_t size, Protection prot, void* address = nullptr,
                  bool fixed = false);
/// munmap.
Status unmap(void* base, std::size_t size);
/// mremap(base, old, new, MREMAP_MAYMOVE).
Result<void*> remap(void* base, std::size_t old_size, std::size_t new_size);
/// madvise(MADV_POPULATE_WRITE): allocates and maps every page now, so a shortage is an
/// error here and not a signal later. EINVAL on kernels before 5.14 (callers may ignore).
Status populate_write(void* base, std::size_t size);
Status mlock(void* base, std::size_t size);
Status munlock(void* base, std::size_t size);
/// The page size.
std::size_t page_size() noexcept;

// ---- System V ----

/// ftok(path, proj). ENOENT when the path is missing.
Result<std::int32_t> ftok(const std::string& path, int proj);
/// How to get a System V segment (IPC_CREAT, IPC_EXCL, SHM_HUGETLB, permission bits).
struct SysvFlags {
  bool create = false;
  bool exclusive = false;
  bool huge_pages = false;
  std::uint32_t mode = 0;
};
/// shmget(key, size, flags). `key` 0 is IPC_PRIVATE.
Result<int> sysv_get(std::int32_t key, std::size_t size, SysvFlags flags);
/// shmat(id, nullptr, read_only ? SHM_RDONLY : 0).
Result<void*> sysv_attach(int id, bool read_only, void* address = nullptr);
Status sysv_detach(void* base);

/// What IPC_STAT reports that shmkit uses.
struct SysvStat {
  std::int32_t key = 0;
  std::uint64_t size = 0;
  std::uint32_t mode = 0;  // permission bits only
  bool removed = false;    // SHM_DEST
  bool locked = false;     // SHM_LOCKED
  std::uint32_t uid = 0, gid = 0, cuid = 0, cgid = 0;
  std::int32_t cpid = 0, lpid = 0;
  std::uint64_t nattch = 0;
  std::int64_t atime = 0, dtime = 0, ctime = 0;
};
Result<SysvStat> sysv_stat(int id);
/// IPC_SET with the given owner and permission bits.
Status sysv_set(int id, std::uint32_t uid, std::uint32_t gid, std::uint32_t mode);
/// IPC_RMID.
Status sysv_remove(int id);
/// SHM_LOCK / SHM_UNLOCK.
Status sysv_lock(int id, bool lock);

/// One line of /proc/sysvipc/shm.
struct SysvEntry {
  SysvStat stat;
  int id = -1;
  std::uint64_t rss = 0;
};
/// Every System V segment, from /proc/sysvipc/shm.
Result<std::vector<SysvEntry>> sysv_list();

// ---- Processes, threads and futexes ----

std::int32_t getpid() noexcept;
/// When process `pid` started (field 22 of /proc/<pid>/stat, clock ticks since boot), or 0
/// when it does not exist or is a zombie. With the pid, it names a process even across pid
/// reuse. Slow (reads /proc).
std::uint64_t process_start_time(std::int32_t pid) noexcept;
/// CLOCK_REALTIME in nanoseconds.
std::int64_t realtime_ns() noexcept;
/// The calling thread's kernel id (gettid).
std::int32_t gettid() noexcept;
/// True unless the thread `tid` has exited (gone, zombie or dead per /proc/<tid>/stat).
/// Slow (reads /proc); for recovery paths only.
bool thread_alive(std::int32_t tid) noexcept;
/// get_robust_list(0): the calling thread's registered robust-futex list head, or nullptr.
/// `length` receives the head's size as registered.
void* robust_list_head(std::size_t* length) noexcept;
/// Registers `child` to run in the child after fork() (pthread_atfork).
Status at_fork_child(void (*child)()) noexcept;
/// How many CPUs are online (sysconf); 1 on failure.
int cpus_online() noexcept;
/// CLOCK_MONOTONIC in nanoseconds (the clock of std::chrono::steady_clock).
std::int64_t monotonic_ns() noexcept;
/// sched_yield(): lets another runnable thread have this CPU.
void yield() noexcept;

/// Registers this process for heavy_fence() (MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED), so
/// that its threads may pair plain loads and stores with a peer's heavy_fence().
Status register_for_heavy_fence() noexcept;
/// Runs a full memory barrier on every CPU running a registered process
/// (MEMBARRIER_CMD_GLOBAL_EXPEDITED): the slow side of an asymmetric Dekker fence.
Status heavy_fence() noexcept;

/// FUTEX_WAIT_BITSET (shared, never FUTEX_PRIVATE_FLAG) on the 32-bit word at `word`: sleeps
/// while it holds `expected`, until woken or until `deadline_ns` (CLOCK_MONOTONIC, absolute;
/// negative: no deadline). Returns 0 when woken or interrupted (callers re-check and loop),
/// EAGAIN when the word no longer held `expected`, ETIMEDOUT at the deadline.
int futex_wait(const void* word, std::uint32_t expected, std::int64_t deadline_ns) noexcept;
/// FUTEX_WAKE (shared): wakes up to `count` sleepers on `word`; returns how many woke.
int futex_wake(const void* word, int count) noexcept;

}  // namespace shmkit::os
