// SPDX-License-Identifier: MIT
// Listing every segment on the machine: POSIX objects in /dev/shm, System V segments from
// /proc/sysvipc/shm. Objects that vanish while we look are skipped, never reported as errors.
#include <cerrno>
#include <string>

#include "os/os.hpp"
#include "segment/internal.hpp"
#include "shmkit/segment.hpp"

namespace shmkit {

SegmentStat stat_from_sysv(const os::SysvStat& st, int id) {
  SegmentStat out;
  Name name;
  name.ns = Namespace::sysv;
  if (st.key != 0) {
    name.sysv = SysvForm::key;
    name.key = st.key;
  } else {
    name.sysv = SysvForm::id;
    name.id = id;
  }
  out.name = name.str();
  out.ns = Namespace::sysv;
  out.size = st.size;
  out.mode = st.mode;
  out.uid = st.uid;
  out.gid = st.gid;
  out.cuid = st.cuid;
  out.cgid = st.cgid;
  out.key = st.key;
  out.id = id;
  out.attach_count = st.nattch;
  out.creator_pid = st.cpid;
  out.last_pid = st.lpid;
  out.attach_time = st.atime;
  out.detach_time = st.dtime;
  out.change_time = st.ctime;
  out.locked = st.locked;
  out.removed = st.removed;
  return out;
}

std::vector<SegmentStat> Segment::list() {
  std::vector<SegmentStat> out;
  const std::string dir = os::posix_shm_directory();
  auto names = os::list_directory(dir);
  if (names.ok()) {
    for (const std::string& entry : names.value()) {
      // POSIX semaphores share the directory as "sem.NAME"; they are not segments.
      if (entry.rfind("sem.", 0) == 0) continue;
      auto st = os::lstat(dir + "/" + entry);
      if (!st.ok() || !st.value().regular) continue;
      SegmentStat s;
      s.name = "/" + entry;
      s.ns = Namespace::posix;
      s.size = st.value().size;
      s.mode = st.value().mode & 0777;
      s.uid = st.value().uid;
      s.gid = st.value().gid;
      s.change_time = st.value().ctime;
      s.modify_time = st.value().mtime;
      out.push_back(std::move(s));
    }
  }
  auto sysv = os::sysv_list();
  if (sysv.ok()) {
    for (const auto& e : sysv.value()) {
      out.push_back(stat_from_sysv(e.stat, e.id));
      out.back().resident = e.rss;
    }
  }
  if (!names.ok() && !sysv.ok()) throw Error(names.error(), dir, "list");
  return out;
}

}  // namespace shmkit
