// SPDX-License-Identifier: MIT
// Allocator<T>: a standard allocator that allocates in an Arena and hands out self-relative
// Ptr<T>, so a container built with it can live in the arena and be used from any process.
//
//   using Ints = std::vector<int, shmkit::Allocator<int>>;
//   Ints* v = arena.find_or_construct<Ints>("ints", shmkit::Allocator<int>(arena));
//   v->push_back(42);   // from any process that joined the arena
//
// With g++ 12's libstdc++, std::vector and std::deque keep only the allocator's pointer type
// and work. std::basic_string, std::list, std::map, std::set and the unordered containers
// convert it to raw pointers internally, so they do not compile with this allocator — by
// design: Ptr<T> has no implicit conversion to T*, so a container that would store raw
// pointers in shared memory is a compile error, never a crash in another process.
// The allocator stores where the arena is as a self-relative pointer too: it is valid
// wherever the container lives in the same arena, or in this process's own memory.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>

#include "shmkit/arena.hpp"
#include "shmkit/offset_ptr.hpp"

namespace shmkit {

/// A standard allocator over an Arena. Thread- and process-safe as the arena is; throws
/// std::bad_alloc when the arena is full.
template <class T>
class Allocator {
 public:
  using value_type = T;
  using pointer = Ptr<T>;
  using const_pointer = Ptr<const T>;
  using void_pointer = Ptr<void>;
  using const_void_pointer = Ptr<const void>;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  using is_always_equal = std::false_type;
  template <class U>
  struct rebind {
    using other = Allocator<U>;
  };

  explicit Allocator(const Arena& arena) noexcept : base_(arena.base()) {}
  Allocator(const Allocator& other) noexcept : base_(other.base_.get()) {}
  template <class U>
  Allocator(const Allocator<U>& other) noexcept : base_(other.base()) {}  // NOLINT: rebinding
  Allocator& operator=(const Allocator& other) noexcept {
    base_ = other.base_.get();
    return *this;
  }

  pointer allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    const std::size_t align = alignof(T) < 16 ? 16 : alignof(T);
    return pointer(static_cast<T*>(detail::arena_allocate(base_.get(), n * sizeof(T), align)));
  }
  void deallocate(pointer p, std::size_t) noexcept {
    detail::arena_deallocate(base_.get(), static_cast<void*>(p.get()));
  }

  /// The arena's base address in this process.
  void* base() const noexcept { return base_.get(); }

  template <class U>
  friend bool operator==(const Allocator& a, const Allocator<U>& b) noexcept {
    return a.base() == b.base();
  }

 private:
  Ptr<void> base_;
};

}  // namespace shmkit
