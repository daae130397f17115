// SPDX-License-Identifier: MIT
// The one exception type of the public API, and the hook for errors that destructors meet.
#pragma once

#include <string>
#include <system_error>

#include "shmkit/detail/config.hpp"

namespace shmkit {

/// A failure the caller could not prevent: it carries errno, the object's name and the
/// operation, and what() reads like `open /foo: No such file or directory`. When `detail` is
/// given (bad input caught before any system call) it replaces the errno text.
class SHMKIT_API Error : public std::system_error {
 public:
  Error(int errnum, std::string object, std::string operation, std::string detail = {});

  /// The errno value (EINVAL for input rejected before any system call).
  int errnum() const noexcept { return code().value(); }
  /// The object's name as the caller gave it, e.g. `/foo` or `sysv:0x1234` (a NUL byte in
  /// it is shown as `\0`).
  const std::string& object() const noexcept { return object_; }
  /// What was being done: `open`, `create`, `map`, `grow`, `parse name` …
  const std::string& operation() const noexcept { return operation_; }
  /// The cause alone: `detail` if given, else strerror(errnum).
  const std::string& cause() const noexcept { return cause_; }
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string object_;
  std::string operation_;
  std::string cause_;
  std::string what_;
};

/// Receives failures that cannot be thrown (an unmap or close failing in a destructor).
/// The handler must not throw. The default prints one line to stderr.
using ErrorHandler = void (*)(const Error&) noexcept;

/// Installs `handler` (nullptr restores the default) and returns the previous one.
/// Thread-safe.
SHMKIT_API ErrorHandler set_error_handler(ErrorHandler handler) noexcept;

/// Passes `error` to the installed handler. Used by shmkit's destructors; never throws.
SHMKIT_API void report_error(const Error& error) noexcept;

}  // namespace shmkit
