// SPDX-License-Identifier: MIT
// A stable identity for a type, the same in every process built by the same compiler (32- or
// 64-bit): a hash of the type's name as the compiler spells it, with its size.
#pragma once

#include <cstdint>
#include <string_view>

namespace shmkit::detail {

template <class T>
constexpr std::string_view type_name() noexcept {
  return __PRETTY_FUNCTION__;  // "... [with T = Foo; ...]": contains the type's spelling
}

constexpr std::uint64_t fnv1a(std::string_view text, std::uint64_t h = 14695981039346656037ull) {
  for (char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

/// The identity of T: its name and its size, hashed. Never 0.
template <class T>
constexpr std::uint64_t type_id() noexcept {
  const std::uint64_t h = fnv1a(type_name<T>()) ^ (sizeof(T) * 0x9e3779b97f4a7c15ull);
  return h == 0 ? 1 : h;
}

}  // namespace shmkit::detail
