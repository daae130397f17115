// SPDX-License-Identifier: MIT
// Pointers that mean the same in every process.
//
//   Offset<T>  an arena-relative handle: the distance from the arena's base. Store it
//              anywhere (even send it in a message); arena.get(o) turns it into a T*.
//
//   Ptr<T>     a self-relative pointer: the distance from the Ptr's own address to the
//              target. Valid wherever both live in the same mapping, at any base address,
//              so containers built with shmkit::Allocator<T> work from every process.
//
//        Ptr<T> at address A, target at address B:   stored = B - A   (null: stored == 1)
//        +---------+                    +--------+
//        |  B - A  |------------------->| T ...  |
//        +---------+                    +--------+
//
// A Ptr's copy constructor and assignment recompute the distance for the new location.
// Zero bytes are not a null Ptr (they point at the Ptr itself): construct Ptrs.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <type_traits>

namespace shmkit {

/// An arena-relative handle to a T: an offset from the arena's base, 0 meaning none.
/// Trivially copyable, the same in 32- and 64-bit processes.
template <class T>
class Offset {
 public:
  constexpr Offset() noexcept = default;
  constexpr explicit Offset(std::uint64_t value) noexcept : value_(value) {}
  constexpr std::uint64_t value() const noexcept { return value_; }
  constexpr explicit operator bool() const noexcept { return value_ != 0; }
  friend constexpr auto operator<=>(const Offset&, const Offset&) = default;

 private:
  std::uint64_t value_ = 0;
};
static_assert(sizeof(Offset<int>) == 8 && std::is_trivially_copyable_v<Offset<int>>);

/// A self-relative pointer to T, usable as an allocator's `pointer` type (random access,
/// contiguous). Not thread-safe beyond what a raw pointer is.
template <class T>
class Ptr {
  static constexpr std::int64_t kNull = 1;

 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using difference_type = std::ptrdiff_t;
  using pointer = Ptr;
  using reference = std::add_lvalue_reference_t<T>;
  using iterator_category = std::random_access_iterator_tag;
  using iterator_concept = std::contiguous_iterator_tag;

  Ptr() noexcept : d_(kNull) {}
  Ptr(std::nullptr_t) noexcept : d_(kNull) {}  // NOLINT(google-explicit-constructor)
  Ptr(T* p) noexcept { set(p); }                // NOLINT(google-explicit-constructor)
  Ptr(const Ptr& other) noexcept { set(other.get()); }
  template <class U, class = std::enable_if_t<std::is_convertible_v<U*, T*>>>
  Ptr(const Ptr<U>& other) noexcept {  // NOLINT(google-explicit-constructor)
    set(static_cast<T*>(other.get()));
  }
  Ptr& operator=(const Ptr& other) noexcept {
    set(other.get());
    return *this;
  }
  Ptr& operator=(T* p) noexcept {
    set(p);
    return *this;
  }

  /// The target in this process, or nullptr.
  T* get() const noexcept {
    return d_ == kNull ? nullptr
                       : reinterpret_cast<T*>(reinterpret_cast<std::intptr_t>(this) +
                                              static_cast<std::intptr_t>(d_));
  }
  explicit operator bool() const noexcept { return d_ != kNull; }
  template <class U = T, class = std::enable_if_t<!std::is_void_v<U>>>
  U& operator*() const noexcept {
    return *get();
  }
  T* operator->() const noexcept { return get(); }
  template <class U = T, class = std::enable_if_t<!std::is_void_v<U>>>
  U& operator[](std::ptrdiff_t i) const noexcept {
    return get()[i];
  }

  /// pointer_traits::pointer_to
  template <class U = T, class = std::enable_if_t<!std::is_void_v<U>>>
  static Ptr pointer_to(U& r) noexcept {
    return Ptr(std::addressof(r));
  }
  /// Conversions containers use: Ptr<void> -> Ptr<T>, and const-casts.
  template <class U>
  static Ptr from(const Ptr<U>& p) noexcept {
    return Ptr(static_cast<T*>(const_cast<std::remove_const_t<U>*>(p.get())));
  }
  template <class U>
  explicit operator Ptr<U>() const noexcept {
    return Ptr<U>(static_cast<U*>(get()));
  }

  Ptr& operator++() noexcept { return *this += 1; }
  Ptr operator++(int) noexcept {
    Ptr old(*this);
    ++*this;
    return old;
  }
  Ptr& operator--() noexcept { return *this -= 1; }
  Ptr operator--(int) noexcept {
    Ptr old(*this);
    --*this;
    return old;
  }
  Ptr& operator+=(std::ptrdiff_t n) noexcept {
    set(get() + n);
    return *this;
  }
  Ptr& operator-=(std::ptrdiff_t n) noexcept {
    set(get() - n);
    return *this;
  }
  friend Ptr operator+(Ptr p, std::ptrdiff_t n) noexcept { return p += n; }
  friend Ptr operator+(std::ptrdiff_t n, Ptr p) noexcept { return p += n; }
  friend Ptr operator-(Ptr p, std::ptrdiff_t n) noexcept { return p -= n; }
  friend std::ptrdiff_t operator-(const Ptr& a, const Ptr& b) noexcept { return a.get() - b.get(); }
  friend bool operator==(const Ptr& a, const Ptr& b) noexcept { return a.get() == b.get(); }
  friend bool operator==(const Ptr& a, std::nullptr_t) noexcept { return !a; }
  friend std::strong_ordering operator<=>(const Ptr& a, const Ptr& b) noexcept {
    return std::compare_three_way{}(a.get(), b.get());
  }

 private:
  void set(T* p) noexcept {
    d_ = p == nullptr ? kNull
                      : static_cast<std::int64_t>(reinterpret_cast<std::intptr_t>(p) -
                                                  reinterpret_cast<std::intptr_t>(this));
  }
  std::int64_t d_;  // target - this, or kNull
};
static_assert(sizeof(Ptr<int>) == 8 && std::is_standard_layout_v<Ptr<int>>);

}  // namespace shmkit

template <class T>
struct std::pointer_traits<shmkit::Ptr<T>> {
  using pointer = shmkit::Ptr<T>;
  using element_type = T;
  using difference_type = std::ptrdiff_t;
  template <class U>
  using rebind = shmkit::Ptr<U>;
  template <class U = T, class = std::enable_if_t<!std::is_void_v<U>>>
  static pointer pointer_to(U& r) noexcept {
    return pointer(std::addressof(r));
  }
  static T* to_address(const pointer& p) noexcept { return p.get(); }
};
