// SPDX-License-Identifier: MIT
#include "test_support.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <thread>
#include <vector>

#include "shmkit/segment.hpp"

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

}  // namespace shmkit::test
