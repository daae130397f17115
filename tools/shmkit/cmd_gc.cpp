// SPDX-License-Identifier: MIT
// `shmkit gc [NAME...] [--dry-run]`: removes the POSIX arenas nobody uses any more (or only
// those of the NAMEs), with one line per arena saying what was done and why, and a last line on
// what gc left alone.
//
// An arena is removed only when both hold:
//   1. every user in its table is dead (or it has none), as Arena::inspect reports; and
//   2. no process has /dev/shm/<name> open or mapped. A process can map an arena without
//      joining it (Arena::inspect, `shmkit cat`), and a user in another pid namespace looks
//      dead from here, hence 2. Two witnesses, asked in this order:
//      - /proc/<pid>/maps and /proc/<pid>/fd name the holders we can see (a "(deleted)" path
//        counts too: we cannot tell it from ours);
//      - the kernel: a write lease (F_SETLEASE) is granted only while no other open file
//        description of the file exists, in any process or namespace, and a mapping keeps
//        its own, read-only or not. A granted lease settles it.
//      When the lease is not ours to take (another owner's file, no CAP_LEASE), /proc must
//      settle it alone: a process whose /proc files gc cannot read, and whose ids the
//      permission bits would let open the arena, makes gc keep it. (Root's power to open
//      anything is not counted there: every root daemon would block gc.)
//
// Everything else is left alone: segments without an arena header (gc cannot know who uses
// them) and System V segments (never probed; see cmd_ls.cpp). Removal only unlinks the name:
// a process that opens the arena between the check and the removal keeps its mapping.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli.hpp"
#include "shmkit/arena.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::cli {
namespace {

// ---- Who has a POSIX object open: /proc and the kernel ----

/// An arena whose users are all dead, as /dev/shm shows its file.
struct Candidate {
  std::string name;  ///< "/foo"
  std::string path;  ///< "/dev/shm/foo"
  struct stat st {};
  std::vector<std::string> holders;  ///< "pid 42 maps it", filled by scan()
  std::vector<std::string> unknown;  ///< "pid 42 (uid 1000)": could hold it, unreadable
};

/// A process whose maps or fds we may not read, with the ids that decide what it may open.
struct Hidden {
  int pid = 0;
  std::uint32_t fsuid = 0;
  std::vector<std::uint32_t> gids;  ///< fsgid and supplementary groups
};

void add_once(std::vector<std::string>& list, std::string item) {
  if (std::find(list.begin(), list.end(), item) == list.end()) list.push_back(std::move(item));
}

bool is_pid(const char* name) {
  return *name != '\0' && std::all_of(name, name + std::string_view(name).size(),
                                      [](char c) { return c >= '0' && c <= '9'; });
}

/// "/dev/shm/foo" or "/dev/shm/foo (deleted)" as /proc shows a file of `c`.
bool same_path(const Candidate& c, std::string_view shown) {
  return shown == c.path || shown == c.path + " (deleted)";
}

std::optional<Hidden> read_ids(int pid) {
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  if (!status) return std::nullopt;
  Hidden h;
  h.pid = pid;
  std::string line;
  while (std::getline(status, line)) {
    std::istringstream fields(line);
    std::string key;
    fields >> key;
    std::uint32_t real = 0, effective = 0, saved = 0, fs = 0;
    if (key == "Uid:" && (fields >> real >> effective >> saved >> fs)) h.fsuid = fs;
    if (key == "Gid:" && (fields >> real >> effective >> saved >> fs)) h.gids.push_back(fs);
    if (key == "Groups:") {
      for (std::uint32_t g; fields >> g;) h.gids.push_back(g);
    }
  }
  return h;
}

/// True if the permission bits of `c` let `h` read or write it (root's override aside).
bool could_open(const Hidden& h, const Candidate& c) {
  unsigned bits = c.st.st_mode & 07;
  if (h.fsuid == c.st.st_uid) {
    bits = (c.st.st_mode >> 6) & 07;
  } else if (std::find(h.gids.begin(), h.gids.end(), c.st.st_gid) != h.gids.end()) {
    bits = (c.st.st_mode >> 3) & 07;
  }
  return (bits & 06) != 0;
}

/// Looks through the mappings and descriptors of every other process once, and fills in the
/// holders (and the processes that might be holders) of each candidate. Returns false if
/// /proc itself cannot be read.
bool scan(std::vector<Candidate>& candidates) {
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return false;
  const int self = static_cast<int>(::getpid());
  while (const dirent* entry = ::readdir(proc)) {
    if (!is_pid(entry->d_name)) continue;
    const int pid = std::atoi(entry->d_name);
    if (pid == self) continue;  // our own inspect mappings are gone by now anyway

    bool hidden = false;
    // maps: "start-end perms offset major:minor inode   path"
    if (std::FILE* maps = std::fopen(fmt::format("/proc/{}/maps", pid).c_str(), "r")) {
      std::array<char, 4096> buf;
      while (std::fgets(buf.data(), static_cast<int>(buf.size()), maps) != nullptr) {
        unsigned major_no = 0, minor_no = 0;
        unsigned long inode = 0;
        int path_at = 0;
        const int fields = std::sscanf(buf.data(), "%*x-%*x %*s %*x %x:%x %lu %n", &major_no,
                                       &minor_no, &inode, &path_at);
        if (fields < 3 || inode == 0) continue;
        std::string_view path(buf.data() + path_at);
        if (!path.empty() && path.back() == '\n') path.remove_suffix(1);
        for (Candidate& c : candidates) {
          const bool same_file = inode == c.st.st_ino && major_no == major(c.st.st_dev) &&
                                 minor_no == minor(c.st.st_dev);
          if (same_file || same_path(c, path)) {
            add_once(c.holders, fmt::format("pid {} maps {}", pid, path));
          }
        }
      }
      std::fclose(maps);
    } else if (errno != ENOENT && errno != ESRCH) {
      hidden = true;  // ENOENT/ESRCH: the process exited meanwhile
    }

    // Between opening and mapping (Arena::open probes first), a joiner holds only a descriptor.
    const std::string fd_dir = fmt::format("/proc/{}/fd", pid);
    if (DIR* fds = ::opendir(fd_dir.c_str())) {
      while (const dirent* fd = ::readdir(fds)) {
        if (!is_pid(fd->d_name)) continue;
        std::array<char, 4096> target;
        const std::string link = fd_dir + "/" + fd->d_name;
        const ssize_t n = ::readlink(link.c_str(), target.data(), target.size() - 1);
        if (n <= 0) continue;
        const std::string_view shown(target.data(), static_cast<std::size_t>(n));
        for (Candidate& c : candidates) {
          if (same_path(c, shown)) add_once(c.holders, fmt::format("pid {} has it open", pid));
        }
      }
      ::closedir(fds);
    } else if (errno != ENOENT && errno != ESRCH) {
      hidden = true;
    }

    if (hidden) {
      const std::optional<Hidden> ids = read_ids(pid);
      for (Candidate& c : candidates) {
        if (!ids || could_open(*ids, c)) {
          c.unknown.push_back(ids ? fmt::format("pid {} (uid {})", pid, ids->fsuid)
                                  : fmt::format("pid {}", pid));
        }
      }
    }
  }
  ::closedir(proc);
  return true;
}

/// What the kernel says of other open file descriptions of a file.
enum class Lease : std::uint8_t { unused, in_use, cannot_tell };

/// Asks for a write lease on `path` through a read-only descriptor and drops it at once.
/// Granted only if no other open file (descriptor or mapping, any process) refers to it.
Lease probe_lease(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Lease::cannot_tell;
  Lease answer = Lease::cannot_tell;
  if (::fcntl(fd, F_SETLEASE, F_WRLCK) == 0) {
    answer = Lease::unused;
    (void)::fcntl(fd, F_SETLEASE, F_UNLCK);
  } else if (errno == EAGAIN) {
    answer = Lease::in_use;
  }
  ::close(fd);
  return answer;
}

/// While it lives, SIGIO is ignored: a process opening the file while we hold the lease makes
/// the kernel signal us, and SIGIO's default action would end gc.
class IgnoreSigio {
 public:
  IgnoreSigio() {
    ::sigaction(SIGIO, nullptr, &old_);
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGIO, &ignore, nullptr);
  }
  IgnoreSigio(const IgnoreSigio&) = delete;
  IgnoreSigio& operator=(const IgnoreSigio&) = delete;
  ~IgnoreSigio() { ::sigaction(SIGIO, &old_, nullptr); }

 private:
  struct sigaction old_ {};
};

// ---- Deciding ----

std::string pid_list(const std::vector<ArenaUser>& users) {
  std::vector<std::int32_t> pids;
  for (const ArenaUser& u : users) pids.push_back(u.pid);
  return fmt::format("{}", fmt::join(pids, ", "));
}

/// "the first two, and 3 more".
std::string first_few(const std::vector<std::string>& items) {
  constexpr std::size_t kShown = 3;
  std::string text = fmt::format(
      "{}", fmt::join(items.begin(), items.begin() + std::min(items.size(), kShown), ", "));
  if (items.size() > kShown) text += fmt::format(" and {} more", items.size() - kShown);
  return text;
}

std::string plural(std::size_t n, std::string_view word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

}  // namespace

int cmd_gc(const GcArgs& args) {
  std::size_t not_arenas = 0, sysv = 0, kept = 0;
  std::vector<Candidate> candidates;
  std::vector<std::string> why_dead;  // per candidate: "no users", "its 2 users are all dead …"

  const auto keep = [&kept](const std::string& name, const std::string& why) {
    fmt::print("kept {}: {}\n", name, why);
    ++kept;
  };

  // With NAMEs, only those: each must exist (spelled as `ls` shows it, or as a Name parses).
  std::vector<std::string> wanted;
  for (const std::string& n : args.names) wanted.push_back(Name::parse(n).str());
  std::vector<Entry> entries = list_entries();
  int status = 0;
  if (!args.names.empty()) {
    std::erase_if(entries, [&](const Entry& e) {
      return std::find(wanted.begin(), wanted.end(), display_name(e.stat)) == wanted.end();
    });
    for (std::size_t i = 0; i < wanted.size(); ++i) {
      const bool listed = std::any_of(entries.begin(), entries.end(), [&](const Entry& e) {
        return display_name(e.stat) == wanted[i];
      });
      if (!listed) status = report(args.names[i] + ": no such segment");
    }
  }

  for (const Entry& e : entries) {
    const std::string name = display_name(e.stat);
    // Asked for by name, what gc leaves alone gets a line of its own.
    if (e.content == Content::unprobed) {
      if (args.names.empty()) {
        ++sysv;
      } else {
        keep(name, "a System V segment, which gc does not probe");
      }
      continue;
    }
    if (e.content != Content::arena) {
      if (args.names.empty()) {
        ++not_arenas;
      } else {
        keep(name, "not an arena, and gc removes only arenas");
      }
      continue;
    }
    ArenaInfo info;
    try {
      info = Arena::inspect(name);
    } catch (const Error& error) {
      keep(name, "cannot read the arena: " + error.cause());
      continue;
    }
    const auto alive = static_cast<std::size_t>(std::count_if(
        info.users.begin(), info.users.end(), [](const ArenaUser& u) { return u.alive; }));
    if (alive != 0) {
      std::vector<ArenaUser> living;
      for (const ArenaUser& u : info.users) {
        if (u.alive) living.push_back(u);
      }
      keep(name, fmt::format("{} of {} users alive (pid{} {})", alive, info.users.size(),
                             alive == 1 ? "" : "s", pid_list(living)));
      continue;
    }
    Candidate c;
    c.name = name;
    c.path = "/dev/shm" + e.stat.name;
    if (::stat(c.path.c_str(), &c.st) != 0) {
      keep(name, fmt::format("cannot see {}: {}", c.path, std::strerror(errno)));
      continue;
    }
    candidates.push_back(std::move(c));
    if (info.users.empty()) {
      why_dead.push_back("no users");
    } else if (info.users.size() == 1) {
      why_dead.push_back(fmt::format("its only user is dead (pid {})", info.users[0].pid));
    } else {
      why_dead.push_back(fmt::format("its {} users are all dead (pids {})", info.users.size(),
                                     pid_list(info.users)));
    }
  }

  const bool scanned = candidates.empty() || scan(candidates);
  const IgnoreSigio ignore_sigio;
  std::size_t removed = 0;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const Candidate& c = candidates[i];
    const std::string& why = why_dead[i];
    if (!c.holders.empty()) {
      keep(c.name, why + ", but " + first_few(c.holders));
      continue;
    }
    const Lease lease = probe_lease(c.path);  // last, to leave the least time before removal
    if (lease == Lease::in_use) {
      keep(c.name, why + ", but a process hidden from /proc has it open or mapped (the kernel " +
                       "refused a write lease)");
      continue;
    }
    if (lease == Lease::cannot_tell && !scanned) {
      keep(c.name, why + ", but neither /proc nor a write lease can tell who has it open");
      continue;
    }
    if (lease == Lease::cannot_tell && !c.unknown.empty()) {
      keep(c.name, fmt::format("{}, but gc cannot see inside {}, which may have it open", why,
                               first_few(c.unknown)));
      continue;
    }
    const char* witness = lease == Lease::unused ? "the kernel granted a write lease" : "/proc";
    if (args.dry_run) {
      fmt::print("would remove {}: {}, and no process has it open ({})\n", c.name, why, witness);
      ++removed;
      continue;
    }
    try {
      Arena::remove(c.name);
      fmt::print("removed {}: {}, and no process had it open ({})\n", c.name, why, witness);
      ++removed;
    } catch (const Error& error) {
      status = report(error);
    }
  }

  std::string left;
  if (not_arenas != 0) {
    left = plural(not_arenas, "segment") +
           (not_arenas == 1 ? " that is not an arena" : " that are not arenas");
  }
  if (sysv != 0) {
    left += fmt::format("{}{} (not probed)", left.empty() ? "" : " and ",
                        plural(sysv, "System V segment"));
  }
  fmt::print("{} {}, {} {}{}\n", args.dry_run ? "would remove" : "removed",
             plural(removed, "arena"), args.dry_run ? "would keep" : "kept", kept,
             left.empty() ? "" : "; left alone " + left + ": gc removes only unused arenas");
  return status;
}

}  // namespace shmkit::cli
