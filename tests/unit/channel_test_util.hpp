// SPDX-License-Identifier: MIT
// What the channel tests (ring_test, queue_test, broadcast_test) share: self-checking
// messages, a block of shared memory children report into, and errno expectations.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <string>

#include "shmkit/error.hpp"
#include "shmkit/segment.hpp"

namespace shmkit::test {

// A message: a sequence number, then (seq % 9) filler bytes equal to the low byte of seq.
inline std::size_t fill(std::span<std::byte> out, std::uint64_t seq) {
  std::memcpy(out.data(), &seq, sizeof seq);
  const std::size_t extra = seq % 9;
  std::memset(out.data() + sizeof seq, static_cast<int>(seq & 0xff), extra);
  return sizeof seq + extra;
}

// True if `msg` is message `seq` as fill() wrote it.
inline bool matches(std::span<const std::byte> msg, std::uint64_t seq) {
  if (msg.size() != sizeof seq + seq % 9) return false;
  std::uint64_t got = 0;
  std::memcpy(&got, msg.data(), sizeof got);
  if (got != seq) return false;
  for (std::size_t i = sizeof seq; i < msg.size(); ++i) {
    if (msg[i] != static_cast<std::byte>(seq & 0xff)) return false;
  }
  return true;
}

inline std::span<const std::byte> as_bytes(const std::uint64_t& v) {
  return {reinterpret_cast<const std::byte*>(&v), sizeof v};
}

inline std::uint64_t first_word(std::span<const std::byte> msg) {
  std::uint64_t v = ~std::uint64_t{0};
  if (msg.size() >= sizeof v) std::memcpy(&v, msg.data(), sizeof v);
  return v;
}

// Runs `f`, which must throw Error(errnum); `says`, when given, must be part of what().
template <class F>
void expect_errno(int errnum, F f, const std::string& says = "") {
  try {
    f();
    ADD_FAILURE() << "no Error thrown (expected errno " << errnum << ")";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), errnum) << e.what();
    if (!says.empty()) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  }
}

// A T in anonymous shared memory, made before fork(): parent and children see the same one.
// T must be valid as zero bytes or default-constructible in place.
template <class T>
class Shared {
 public:
  Shared() : seg_(Segment::create_anonymous(sizeof(T))) { new (seg_.data()) T(); }
  T& operator*() const { return *static_cast<T*>(seg_.data()); }
  T* operator->() const { return static_cast<T*>(seg_.data()); }

 private:
  Segment seg_;
};

// An array of counters in anonymous shared memory, for children to count into.
template <class T>
class SharedArray {
 public:
  explicit SharedArray(std::size_t n)
      : n_(n), seg_(Segment::create_anonymous(n * sizeof(std::atomic<T>) + 1)) {
    static_assert(std::atomic<T>::is_always_lock_free);
    for (std::size_t i = 0; i < n; ++i) new (data() + i) std::atomic<T>(0);
  }
  std::atomic<T>& operator[](std::size_t i) const { return data()[i]; }
  std::size_t size() const { return n_; }

 private:
  std::atomic<T>* data() const { return static_cast<std::atomic<T>*>(seg_.data()); }
  std::size_t n_;
  Segment seg_;
};

}  // namespace shmkit::test
