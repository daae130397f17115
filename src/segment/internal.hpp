// SPDX-License-Identifier: MIT
// What segment.cpp and list.cpp share.
#pragma once

#include "os/os.hpp"
#include "shmkit/segment.hpp"

namespace shmkit {

/// One System V segment as a SegmentStat, named by key (or by id when the key is private).
SegmentStat stat_from_sysv(const os::SysvStat& st, int id);

}  // namespace shmkit
