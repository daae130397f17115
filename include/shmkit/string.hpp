// SPDX-License-Identifier: MIT
// String: a byte string whose characters live in an Arena, for use inside shared structures
// (libstdc++'s std::basic_string cannot take a self-relative pointer type).
//
//   auto* name = arena.construct<shmkit::String>("greeting", "hello", shmkit::Allocator<char>(arena));
//   std::string_view v = *name;   // in any process that joined the arena
#pragma once

#include <compare>
#include <cstddef>
#include <string_view>
#include <vector>

#include "shmkit/allocator.hpp"

namespace shmkit {

/// A NUL-terminated byte string stored in an arena. Like std::string, not thread-safe: guard
/// a String shared by several threads or processes with a lock.
class String {
 public:
  using allocator_type = Allocator<char>;

  explicit String(const allocator_type& alloc) : chars_(1, '\0', alloc) {}
  String(std::string_view text, const allocator_type& alloc) : chars_(alloc) { assign(text); }
  String(const String& other) : chars_(other.chars_) {}
  String(String&& other) : chars_(std::move(other.chars_)) { other.chars_.assign(1, '\0'); }
  String& operator=(const String& other) {
    chars_ = other.chars_;
    return *this;
  }
  String& operator=(std::string_view text) {
    assign(text);
    return *this;
  }

  std::size_t size() const noexcept { return chars_.size() - 1; }
  bool empty() const noexcept { return size() == 0; }
  const char* data() const noexcept { return chars_.data(); }
  char* data() noexcept { return chars_.data(); }
  const char* c_str() const noexcept { return data(); }
  std::string_view view() const noexcept { return {data(), size()}; }
  operator std::string_view() const noexcept { return view(); }  // NOLINT: a string is a view
  char operator[](std::size_t i) const noexcept { return data()[i]; }
  allocator_type get_allocator() const { return chars_.get_allocator(); }

  void assign(std::string_view text) {
    chars_.assign(text.begin(), text.end());
    chars_.push_back('\0');
  }
  String& append(std::string_view text) {
    chars_.pop_back();
    chars_.insert(chars_.end(), text.begin(), text.end());
    chars_.push_back('\0');
    return *this;
  }
  String& operator+=(std::string_view text) { return append(text); }
  void clear() { chars_.assign(1, '\0'); }
  void reserve(std::size_t n) { chars_.reserve(n + 1); }

  friend bool operator==(const String& a, std::string_view b) noexcept { return a.view() == b; }
  friend std::strong_ordering operator<=>(const String& a, std::string_view b) noexcept {
    const int c = a.view().compare(b);
    return c < 0 ? std::strong_ordering::less
                 : (c > 0 ? std::strong_ordering::greater : std::strong_ordering::equal);
  }

 private:
  std::vector<char, allocator_type> chars_;  // the characters and a terminating NUL
};

}  // namespace shmkit
