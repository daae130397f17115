// SPDX-License-Identifier: MIT
// A stable identity for a type, the same in every process built by the same compiler (32- or
// 64-bit): a hash of the type's name as the compiler spells it, with its size. Integers are
// named by size and signedness, since 32- and 64-bit builds spell std::uint64_t differently
// ("long long unsigned int" / "long unsigned int"); a template argument spelled differently
// (std::vector<std::uint64_t>) still makes a different identity.
#pragma once

#include <cstdint>
#include <string_view>
#include <type_traits>

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
  using U = std::remove_cv_t<T>;
  std::uint64_t base = 0;
  if constexpr (std::is_same_v<U, bool>) {
    base = fnv1a("bool");
  } else if constexpr (std::is_integral_v<U>) {
    base = fnv1a(std::is_signed_v<U> ? "signed integer" : "unsigned integer");
  } else if constexpr (std::is_floating_point_v<U>) {
    base = fnv1a("floating point");
  } else {
    base = fnv1a(type_name<U>());
  }
  const std::uint64_t h = base ^ (sizeof(T) * 0x9e3779b97f4a7c15ull);
  return h == 0 ? 1 : h;
}

}  // namespace shmkit::detail
