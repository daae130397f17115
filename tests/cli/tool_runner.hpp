// SPDX-License-Identifier: MIT
// Runs the built `shmkit` binary (path in SHMKIT_TOOL) as a real process with pipes on
// stdin, stdout and stderr, so the CLI tests see exactly what an operator would: output,
// error lines and the exit status.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace shmkit::test {

/// What a finished run of the tool produced.
struct ToolResult {
  int status = -1;  ///< exit code, 128+N if killed by signal N, -1 if it could not run
  std::string out;
  std::string err;
  pid_t pid = -1;  ///< the tool's pid (what System V records as creator)
};

/// A running `shmkit` process. Destroying it kills and reaps the process if still running.
class Tool {
 public:
  explicit Tool(const std::vector<std::string>& args);
  ~Tool();
  Tool(const Tool&) = delete;
  Tool& operator=(const Tool&) = delete;

  pid_t pid() const { return pid_; }
  /// Writes `data` to the tool's stdin (blocking).
  void write_input(const std::string& data);
  /// Closes the tool's stdin (it then sees end of input).
  void close_input();
  /// Reads stdout until it holds a full line and returns that line (without '\n'), or
  /// returns what came before end of output or the timeout.
  std::string read_line(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// Sends `signal` to the tool.
  void send(int signal);
  /// Closes stdin, collects the rest of stdout and stderr and waits for the exit status.
  /// Kills the tool if it has not exited within `timeout`.
  ToolResult finish(std::chrono::milliseconds timeout = std::chrono::seconds(60));

 private:
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1;
  std::string out_buf_;
  std::string err_buf_;
};

/// Runs `shmkit ARGS...` with `input` on stdin and returns what it did.
ToolResult run_tool(const std::vector<std::string>& args, const std::string& input = {});

/// Number of '\n'-terminated lines in `text`.
int count_lines(const std::string& text);

}  // namespace shmkit::test
