// SPDX-License-Identifier: MIT
// fork+exec of the shmkit binary with three pipes, read with poll so that neither stdout
// nor stderr can fill up and stall the tool.
#include "tool_runner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace shmkit::test {
namespace {

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

/// Reads what is available on `fd` into `buf`; closes `fd` at end of output.
void drain(int& fd, std::string& buf) {
  std::array<char, 4096> chunk;
  const ssize_t n = ::read(fd, chunk.data(), chunk.size());
  if (n > 0) {
    buf.append(chunk.data(), static_cast<std::size_t>(n));
  } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
    close_fd(fd);
  }
}

}  // namespace

Tool::Tool(const std::vector<std::string>& args) {
  std::array<int, 2> in{}, out{}, err{};
  if (::pipe2(in.data(), O_CLOEXEC) != 0 || ::pipe2(out.data(), O_CLOEXEC) != 0 ||
      ::pipe2(err.data(), O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe2 failed");
  }
  std::fflush(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::dup2(in[0], STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    std::vector<char*> argv;
    std::string tool = SHMKIT_TOOL;
    argv.push_back(tool.data());
    std::vector<std::string> copy = args;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(tool.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  in_ = in[1];
  out_ = out[0];
  err_ = err[0];
  ::signal(SIGPIPE, SIG_IGN);  // a tool that exits early must not kill the test on write
}

Tool::~Tool() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  close_fd(in_);
  close_fd(out_);
  close_fd(err_);
}

void Tool::write_input(const std::string& data) {
  std::size_t done = 0;
  while (done < data.size() && in_ >= 0) {
    const ssize_t n = ::write(in_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;  // the tool closed its stdin (EPIPE): it has what it wanted
    done += static_cast<std::size_t>(n);
  }
}

void Tool::close_input() { close_fd(in_); }

std::string Tool::read_line(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out_buf_.find('\n') == std::string::npos && out_ >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{out_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) > 0) drain(out_, out_buf_);
  }
  const std::size_t nl = out_buf_.find('\n');
  std::string line = out_buf_.substr(0, nl);
  out_buf_.erase(0, nl == std::string::npos ? std::string::npos : nl + 1);
  return line;
}

void Tool::send(int signal) { ::kill(pid_, signal); }

ToolResult Tool::finish(std::chrono::milliseconds timeout) {
  close_input();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out_ >= 0 || err_ >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::kill(pid_, SIGKILL);
      break;
    }
    std::array<pollfd, 2> fds = {pollfd{out_, POLLIN, 0}, pollfd{err_, POLLIN, 0}};
    if (::poll(fds.data(), fds.size(), static_cast<int>(left.count())) <= 0) continue;
    if (fds[0].revents != 0) drain(out_, out_buf_);
    if (fds[1].revents != 0) drain(err_, err_buf_);
  }
  ToolResult result;
  result.pid = pid_;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = std::move(out_buf_);
  result.err = std::move(err_buf_);
  return result;
}

ToolResult run_tool(const std::vector<std::string>& args, const std::string& input) {
  Tool tool(args);
  tool.write_input(input);
  return tool.finish();
}

int count_lines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace shmkit::test
