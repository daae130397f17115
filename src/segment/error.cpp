// SPDX-License-Identifier: MIT
// shmkit::Error and the handler for errors met where throwing is not allowed.
#include "shmkit/error.hpp"

#include <atomic>
#include <cstdio>
#include <cstring>

namespace shmkit {
namespace {

void default_handler(const Error& error) noexcept {
  std::fprintf(stderr, "shmkit: %s\n", error.what());
}

std::atomic<ErrorHandler> handler{&default_handler};

std::string errno_text(int errnum) {
  char buf[128];
  // GNU strerror_r returns the message, which may or may not live in buf.
  return ::strerror_r(errnum, buf, sizeof buf);
}

}  // namespace

Error::Error(int errnum, std::string object, std::string operation, std::string detail)
    : std::system_error(errnum, std::generic_category()),
      object_(std::move(object)),
      operation_(std::move(operation)),
      cause_(detail.empty() ? errno_text(errnum) : std::move(detail)) {
  what_ = operation_;
  if (!object_.empty()) what_ += " " + object_;
  what_ += ": " + cause_;
}

ErrorHandler set_error_handler(ErrorHandler h) noexcept {
  return handler.exchange(h != nullptr ? h : &default_handler, std::memory_order_acq_rel);
}

void report_error(const Error& error) noexcept {
  handler.load(std::memory_order_acquire)(error);
}

}  // namespace shmkit
