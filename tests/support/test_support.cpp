// SPDX-License-Identifier: MIT
#include "test_support.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <sstream>
#include <system_error>
#include <thread>
#include <vector>

#include "shmkit/segment.hpp"

namespace shmkit {

void PrintTo(LockStatus status, std::ostream* os) { *os << to_string(status); }

void PrintTo(BarrierStatus status, std::ostream* os) {
  static constexpr const char* kNames[] = {"released", "released_last", "broken", "timed_out"};
  const auto i = static_cast<unsigned>(status);
  if (i < std::size(kNames)) {
    *os << kNames[i];
  } else {
    *os << "BarrierStatus(" << i << ")";
  }
}

}  // namespace shmkit

namespace shmkit::test {
namespace {
std::atomic<int> counter{0};
}

std::string unique_name(const std::string& prefix, const std::string& tag) {
  return prefix + "shmkit-test-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter.fetch_add(1, std::memory_order_relaxed)) + "-" + tag;
}

std::string unique_sysv_key() {
  // 0x5Cxxxxxx: a recognisable high byte, then 16 bits of pid and 8 of counter.
  const unsigned pid = static_cast<unsigned>(::getpid()) & 0xffffu;
  const unsigned n = static_cast<unsigned>(counter.fetch_add(1, std::memory_order_relaxed)) & 0xffu;
  char buf[32];
  std::snprintf(buf, sizeof buf, "sysv:0x5c%04x%02x", pid, n);
  return buf;
}

Remover::~Remover() {
  std::error_code ec;
  (void)Segment::remove(name_, ec);
}

int run_in_child(const std::function<int()>& body) {
  const int pid = start_child(body);
  if (pid < 0) return -1;
  return wait_child(pid);
}

int start_child(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int rc = 99;
    try {
      rc = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  return pid;
}

int wait_child(int pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

namespace {

// In a new child: die with the parent and after `limit_seconds`. The alarm survives exec.
void limit_child(pid_t parent, unsigned limit_seconds) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(98);  // the parent died before prctl took effect
  ::alarm(limit_seconds);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

Children::~Children() {
  for (int pid : pids_) ::kill(pid, SIGKILL);
  for (int pid : pids_) (void)wait_child(pid);
}

int Children::start(const std::function<int()>& body, unsigned limit_seconds) {
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    limit_child(parent, limit_seconds);
    int rc = 99;
    try {
      rc = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  pids_.push_back(pid);
  return pid;
}

int Children::spawn(const std::vector<std::string>& argv, unsigned limit_seconds) {
  if (argv.empty()) return -1;
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    limit_child(parent, limit_seconds);
    ::execv(args[0], args.data());
    std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  pids_.push_back(pid);
  return pid;
}

int Children::wait(int pid, int limit_seconds) {
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(limit_seconds);
  auto pause = std::chrono::microseconds(20);
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      status = -1;
      break;
    }
    if (std::chrono::steady_clock::now() > limit) {
      std::fprintf(stderr, "child %d still running after %d s: killing it\n", pid, limit_seconds);
      ::kill(pid, SIGKILL);
      status = wait_child(pid);
      break;
    }
    std::this_thread::sleep_for(pause);
    if (pause < std::chrono::milliseconds(5)) pause *= 2;
  }
  std::erase(pids_, pid);
  return status;
}

std::vector<int> Children::wait_all(int limit_seconds) {
  std::vector<int> statuses;
  const std::vector<int> pids = pids_;
  for (int pid : pids) statuses.push_back(wait(pid, limit_seconds));
  return statuses;
}

void Children::kill(int pid, int sig) {
  if (std::find(pids_.begin(), pids_.end(), pid) != pids_.end()) ::kill(pid, sig);
}

bool wait_until_blocked(int tid, const void* object, std::size_t size, int limit_seconds) {
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(limit_seconds);
  const std::string dir = "/proc/" + std::to_string(tid);
  const auto begin = reinterpret_cast<std::uintptr_t>(object);
  for (;;) {
    // "202 0x7f12a4c3d000 0x89 ...": the system call's number, then its arguments.
    std::istringstream syscall(read_text(dir + "/syscall"));
    long number = -1;
    std::string word;
    if (syscall >> number) {
      if (number == SYS_futex && syscall >> word) {
        const std::uintptr_t address = std::strtoull(word.c_str(), nullptr, 16);
        if (object == nullptr || (address >= begin && address < begin + size)) return true;
      }
    } else {
      const std::string stat = read_text(dir + "/stat");
      const auto paren = stat.rfind(')');
      if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'S') {
        return true;
      }
    }
    if (std::chrono::steady_clock::now() > limit) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

bool wait_for_value(const std::atomic<int>& word, int value, int limit_seconds) {
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(limit_seconds);
  while (word.load(std::memory_order_acquire) != value) {
    if (std::chrono::steady_clock::now() > limit) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return true;
}

TempDir::TempDir(const std::string& tag) {
  std::string pattern = unique_name("/tmp/", tag) + ".XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
  }
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool no_huge_pages() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  long value = -1;
  while (in >> key) {
    if (key == "HugePages_Total:") {
      in >> value;
      return value == 0;
    }
  }
  return true;
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

const char* to_string(Kind kind) {
  switch (kind) {
    case Kind::posix:
      return "posix";
    case Kind::sysv_key:
      return "sysv_key";
    case Kind::sysv_ftok:
      return "sysv_ftok";
    case Kind::file:
      return "file";
  }
  return "unknown";
}

void PrintTo(Kind kind, std::ostream* os) { *os << to_string(kind); }

std::string make_name(Kind kind, const TempDir& dir, const std::string& tag) {
  switch (kind) {
    case Kind::posix:
      return unique_name("/", tag);
    case Kind::sysv_key:
      return unique_sysv_key();
    case Kind::sysv_ftok: {
      const std::string path = dir.path() + "/" + unique_name("", tag) + ".key";
      std::ofstream(path).put('k');
      return "sysv:@" + path + ":7";
    }
    case Kind::file:
      return "file:" + dir.path() + "/" + unique_name("", tag);
  }
  return {};
}

int run_program(const std::vector<std::string>& argv, std::string* output) {
  if (argv.empty()) return -1;
  int fds[2] = {-1, -1};
  if (output != nullptr && ::pipe2(fds, O_CLOEXEC) != 0) return -1;
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (output != nullptr) ::dup2(fds[1], STDOUT_FILENO);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  if (output != nullptr) {
    ::close(fds[1]);
    output->clear();
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n > 0) {
        output->append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        break;
      }
    }
    ::close(fds[0]);
  }
  return wait_child(pid);
}

}  // namespace shmkit::test
