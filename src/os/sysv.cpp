// SPDX-License-Identifier: MIT
// System V shared memory: ftok, shmget, shmat, shmdt, shmctl, and /proc/sysvipc/shm.
#include <sys/ipc.h>
#include <sys/shm.h>

#include <cerrno>
#include <sstream>

#include "os/os.hpp"

namespace shmkit::os {

namespace {

Status status_of(int rc) { return rc == -1 ? Status::fail(errno) : Status{}; }

constexpr std::uint32_t kDestBit = SHM_DEST;
constexpr std::uint32_t kLockedBit = SHM_LOCKED;

void split_mode(std::uint32_t raw, SysvStat& out) {
  out.mode = raw & 0777;
  out.removed = (raw & kDestBit) != 0;
  out.locked = (raw & kLockedBit) != 0;
}

}  // namespace

Result<std::int32_t> ftok(const std::string& path, int proj) {
  const key_t key = ::ftok(path.c_str(), proj);
  if (key == -1) return Result<std::int32_t>::fail(errno);
  return static_cast<std::int32_t>(key);
}

Result<int> sysv_get(std::int32_t key, std::size_t size, SysvFlags flags) {
  const int f = static_cast<int>(flags.mode & 0777) | (flags.create ? IPC_CREAT : 0) |
                (flags.exclusive ? IPC_EXCL : 0) | (flags.huge_pages ? SHM_HUGETLB : 0);
  const int id = ::shmget(static_cast<key_t>(key), size, f);
  if (id == -1) return Result<int>::fail(errno);
  return id;
}

Result<void*> sysv_attach(int id, bool read_only, void* address) {
  void* base = ::shmat(id, address, read_only ? SHM_RDONLY : 0);
  if (base == reinterpret_cast<void*>(-1)) {  // NOLINT: shmat's documented failure value
    // shmat says EINVAL both for a misaligned address and for one already in use; tell
    // the second apart, as mmap's MAP_FIXED_NOREPLACE does.
    if (errno == EINVAL && address != nullptr &&
        reinterpret_cast<std::uintptr_t>(address) % SHMLBA == 0) {
      return Result<void*>::fail(EEXIST);
    }
    return Result<void*>::fail(errno);
  }
  return base;
}

Status sysv_detach(void* base) { return status_of(::shmdt(base)); }

Result<SysvStat> sysv_stat(int id) {
  shmid_ds ds{};
  if (::shmctl(id, IPC_STAT, &ds) == -1) return Result<SysvStat>::fail(errno);
  SysvStat out;
  out.key = static_cast<std::int32_t>(ds.shm_perm.__key);
  out.size = ds.shm_segsz;
  split_mode(ds.shm_perm.mode, out);
  out.uid = ds.shm_perm.uid;
  out.gid = ds.shm_perm.gid;
  out.cuid = ds.shm_perm.cuid;
  out.cgid = ds.shm_perm.cgid;
  out.cpid = ds.shm_cpid;
  out.lpid = ds.shm_lpid;
  out.nattch = ds.shm_nattch;
  out.atime = ds.shm_atime;
  out.dtime = ds.shm_dtime;
  out.ctime = ds.shm_ctime;
  return out;
}

Status sysv_set(int id, std::uint32_t uid, std::uint32_t gid, std::uint32_t mode) {
  shmid_ds ds{};
  if (::shmctl(id, IPC_STAT, &ds) == -1) return Status::fail(errno);
  ds.shm_perm.uid = uid;
  ds.shm_perm.gid = gid;
  ds.shm_perm.mode = static_cast<unsigned short>((ds.shm_perm.mode & ~0777u) | (mode & 0777u));
  return status_of(::shmctl(id, IPC_SET, &ds));
}

Status sysv_remove(int id) { return status_of(::shmctl(id, IPC_RMID, nullptr)); }

Status sysv_lock(int id, bool lock) {
  return status_of(::shmctl(id, lock ? SHM_LOCK : SHM_UNLOCK, nullptr));
}

Result<std::vector<SysvEntry>> sysv_list() {
  auto text = read_small_file("/proc/sysvipc/shm");
  if (!text.ok()) return Result<std::vector<SysvEntry>>::fail(text.error());
  std::vector<SysvEntry> entries;
  std::istringstream in(text.value());
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    SysvEntry e;
    std::int64_t key = 0;
    std::uint32_t perms = 0;
    fields >> key >> e.id >> std::oct >> perms >> std::dec >> e.stat.size >> e.stat.cpid >>
        e.stat.lpid >> e.stat.nattch >> e.stat.uid >> e.stat.gid >> e.stat.cuid >>
        e.stat.cgid >> e.stat.atime >> e.stat.dtime >> e.stat.ctime >> e.rss;
    if (!fields) continue;  // a line this kernel formats differently: skip, never guess
    e.stat.key = static_cast<std::int32_t>(key);
    split_mode(perms, e.stat);
    entries.push_back(e);
  }
  return entries;
}

}  // namespace shmkit::os
