// SPDX-License-Identifier: MIT
// `shmkit wait NAME`: the seed examples' `-w`. Attaches read-only, prints the first 32-bit
// word, waits for Enter (or end of input, SIGINT, SIGTERM), prints the word again, detaches.
// Meanwhile other processes can attach too (see NATTCH in `shmkit ls`) or change the word.
//
// SIGINT and SIGTERM are blocked and read from a signalfd, polled together with stdin, so a
// signal that arrives at any moment (even before the first print) ends the wait cleanly.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "cli.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::cli {
namespace {

/// Catches SIGINT and SIGTERM from construction on (blocked, read from a signalfd), so a
/// signal sent at any moment ends wait() instead of killing the process before it unmaps.
class EnterOrSignal {
 public:
  EnterOrSignal() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    if (::sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) throw Error(errno, "signals", "block");
    fd_ = ::signalfd(-1, &signals, SFD_CLOEXEC);
    if (fd_ < 0) throw Error(errno, "signals", "signalfd");
  }
  EnterOrSignal(const EnterOrSignal&) = delete;
  EnterOrSignal& operator=(const EnterOrSignal&) = delete;
  ~EnterOrSignal() { ::close(fd_); }

  /// Returns when a line or end of input arrives on stdin, or a signal was caught.
  void wait() const {
    std::array<pollfd, 2> fds = {pollfd{STDIN_FILENO, POLLIN, 0}, pollfd{fd_, POLLIN, 0}};
    for (;;) {
      if (::poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        throw Error(errno, "stdin", "poll");
      }
      // A caught signal stays pending, blocked, and dies with the process: exit status 0.
      if (fds[1].revents != 0) return;
      if (fds[0].revents & (POLLERR | POLLNVAL)) return;
      std::array<char, 256> buf;
      const ssize_t n = ::read(STDIN_FILENO, buf.data(), buf.size());
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0 || std::memchr(buf.data(), '\n', static_cast<std::size_t>(n)) != nullptr) return;
    }
  }

 private:
  int fd_ = -1;
};

}  // namespace

int cmd_wait(const WaitArgs& args) {
  const EnterOrSignal waiter;
  OpenOptions options;
  options.access = Access::read_only;
  const Segment segment = Segment::open(args.name, options);
  const std::uint32_t& word = segment.as<const std::uint32_t>();  // throws if under 4 bytes

  // Another process may store to the word at any time: load it atomically.
  const auto print_word = [&word] {
    const std::uint32_t value = __atomic_load_n(&word, __ATOMIC_ACQUIRE);
    fmt::print("first word: 0x{:08x} ({})\n", value, value);
    std::fflush(stdout);
  };
  print_word();
  if (::isatty(STDIN_FILENO)) {
    fmt::print(stderr, "attached to {}; press Enter (or Ctrl-C) to read it again and detach\n",
               args.name);
  }
  waiter.wait();
  print_word();
  return 0;
}

}  // namespace shmkit::cli
