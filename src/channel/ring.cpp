// SPDX-License-Identifier: MIT
// Ring slow paths: creating, opening (the header is foreign bytes: validated, never
// trusted), and waiting for room or for a message in one of the three Wait modes.
#include "shmkit/ring.hpp"

#include <cerrno>
#include <string>

#include "shmkit/error.hpp"

namespace shmkit {
namespace {

using detail::RingHeader;
using detail::RingSlot;

constexpr std::uint64_t kMaxSlotSize = (std::uint64_t{1} << 32) - sizeof(RingSlot);
constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 32;
// Long enough for a partner on another core to answer (a wake-up costs 35-45 µs on small
// VMs, docs/sync.md), short enough that an idle peer stops burning CPU at once.
constexpr std::chrono::microseconds kSpin{50};

std::uint64_t stride_of(std::uint64_t slot_size) {
  return (sizeof(RingSlot) + slot_size + 15) & ~std::uint64_t{15};
}

// Returns why (slot_size, capacity) cannot make a ring, or "" with the segment size in `bytes`.
std::string geometry(std::uint64_t slot_size, std::uint64_t capacity, std::uint64_t& bytes) {
  if (slot_size == 0 || slot_size > kMaxSlotSize) return "slot size must be 1 byte .. 4 GiB";
  if (capacity == 0 || capacity > kMaxCapacity || (capacity & (capacity - 1)) != 0) {
    return "capacity must be a power of two, at most 2^32";
  }
  if (__builtin_mul_overflow(capacity, stride_of(slot_size), &bytes) ||
      __builtin_add_overflow(bytes, detail::kRingSlotsOffset, &bytes)) {
    return "ring too large";
  }
  return "";
}

// Returns what is wrong with the header of a mapping of `size` bytes ("" if it is a ring).
std::string header_problem(const void* base, std::size_t size) {
  if (size < detail::kRingSlotsOffset) return "too small to be a ring";
  const auto* h = static_cast<const RingHeader*>(base);
  if (h->magic.load(std::memory_order_acquire) != detail::kRingMagic) return "not a ring (bad magic)";
  if (h->version != detail::kRingVersion) {
    return "ring format version " + std::to_string(h->version) + ", expected " +
           std::to_string(detail::kRingVersion);
  }
  if (h->fingerprint != detail::kRingFingerprint) return "ring built with another layout (ABI fingerprint)";
  std::uint64_t bytes = 0;
  if (std::string why = geometry(h->slot_size, h->capacity, bytes); !why.empty()) return why;
  if (h->stride != stride_of(h->slot_size)) return "bad slot stride";
  if (bytes > size) return "segment smaller than its ring";
  return "";
}

Ring::Clock::time_point deadline_after(std::chrono::nanoseconds timeout) {
  // Anything beyond a century is forever, and now() + it would overflow.
  if (timeout >= std::chrono::hours(24 * 365 * 100)) return Ring::Clock::time_point::max();
  return Ring::Clock::now() + timeout;
}

template <class Ready>
bool wait_ready(Wait mode, Event& event, Ready ready, Ring::Clock::time_point deadline) {
  switch (mode) {
    case Wait::busy_poll: {
      const bool timed = deadline != Ring::Clock::time_point::max();
      for (unsigned i = 1;; ++i) {
        if (ready()) return true;
        detail::cpu_relax();
        if (timed && (i & 255) == 0 && Ring::Clock::now() >= deadline) return ready();
      }
    }
    case Wait::block:
      for (;;) {
        const std::uint32_t key = event.prepare_wait();
        if (ready()) {
          event.cancel_wait();
          return true;
        }
        if (!event.wait_until(key, deadline)) return ready();
      }
    case Wait::spin_then_block:
      break;
  }
  return event.wait_for_condition(ready, deadline, kSpin);
}

}  // namespace

// ---- Creating and opening ----

Ring Ring::create(std::string_view name, std::size_t slot_size, std::size_t capacity,
                  const CreateOptions& options) {
  std::uint64_t bytes = 0;
  if (std::string why = geometry(slot_size, capacity, bytes); !why.empty()) {
    throw Error(EINVAL, std::string(name), "create ring", why);
  }
  return make(Segment::create(name, static_cast<std::size_t>(bytes), options), slot_size,
              capacity);
}

Ring Ring::create_anonymous(std::size_t slot_size, std::size_t capacity) {
  std::uint64_t bytes = 0;
  if (std::string why = geometry(slot_size, capacity, bytes); !why.empty()) {
    throw Error(EINVAL, "anonymous", "create ring", why);
  }
  return make(Segment::create_anonymous(static_cast<std::size_t>(bytes)), slot_size, capacity);
}

Ring Ring::make(Segment seg, std::size_t slot_size, std::size_t capacity) {
  // The segment is fresh and zero-filled: zero counters and Events are their initial state.
  auto* h = static_cast<RingHeader*>(seg.data());
  h->version = detail::kRingVersion;
  h->fingerprint = detail::kRingFingerprint;
  h->slot_size = slot_size;
  h->capacity = capacity;
  h->stride = stride_of(slot_size);
  // Release: an opener that sees the magic sees the fields above.
  h->magic.store(detail::kRingMagic, std::memory_order_release);
  const std::string label = seg.name().str();
  return attach(std::move(seg), label);
}

Ring Ring::open(std::string_view name) { return attach(Segment::open(name), name); }

Ring Ring::attach(Segment seg, std::string_view name) {
  if (std::string why = header_problem(seg.data(), seg.size()); !why.empty()) {
    throw Error(EINVAL, std::string(name), "open ring", why);
  }
  Ring r;
  r.hdr_ = static_cast<RingHeader*>(seg.data());
  r.slots_ = static_cast<std::byte*>(seg.data()) + detail::kRingSlotsOffset;
  r.mask_ = r.hdr_->capacity - 1;
  r.stride_ = static_cast<std::size_t>(r.hdr_->stride);
  r.slot_size_ = static_cast<std::size_t>(r.hdr_->slot_size);
  r.tail_cache_ = r.hdr_->tail.load(std::memory_order_acquire);
  r.head_cache_ = r.hdr_->head.load(std::memory_order_acquire);
  r.seg_ = std::move(seg);
  return r;
}

Ring& Ring::operator=(Ring&& other) noexcept {
  if (this != &other) {
    seg_ = std::move(other.seg_);
    hdr_ = std::exchange(other.hdr_, nullptr);
    slots_ = std::exchange(other.slots_, nullptr);
    mask_ = std::exchange(other.mask_, 0);
    stride_ = std::exchange(other.stride_, 0);
    slot_size_ = std::exchange(other.slot_size_, 0);
    tail_cache_ = std::exchange(other.tail_cache_, 0);
    head_cache_ = std::exchange(other.head_cache_, 0);
    wait_ = other.wait_;
  }
  return *this;
}

std::string Ring::check() const {
  if (hdr_ == nullptr) return "no ring";
  if (std::string why = header_problem(seg_.data(), seg_.size()); !why.empty()) return why;
  const std::uint64_t tail = hdr_->tail.load(std::memory_order_acquire);
  const std::uint64_t head = hdr_->head.load(std::memory_order_acquire);
  if (tail > head || head - tail > hdr_->capacity) {  // INV-RING-1
    return "counters out of range: head " + std::to_string(head) + ", tail " +
           std::to_string(tail);
  }
  return "";
}

// ---- Waiting ----

std::span<std::byte> Ring::loan(std::chrono::nanoseconds timeout) {
  if (std::span<std::byte> s = try_loan(); !s.empty()) return s;
  const std::uint64_t head = hdr_->head.load(std::memory_order_relaxed);
  auto room = [&] {
    tail_cache_ = hdr_->tail.load(std::memory_order_acquire);
    return head - tail_cache_ <= mask_;
  };
  if (!wait_ready(wait_, hdr_->not_full, room, deadline_after(timeout))) return {};
  return try_loan();
}

bool Ring::send(std::span<const std::byte> message, std::chrono::nanoseconds timeout) {
  if (message.size() > slot_size_) [[unlikely]] throw_too_big(message.size());
  const std::span<std::byte> s = loan(timeout);
  if (s.empty()) return false;
  if (!message.empty()) std::memcpy(s.data(), message.data(), message.size());
  publish(message.size());
  return true;
}

Ring::View Ring::receive(std::chrono::nanoseconds timeout) {
  if (View v = try_receive()) return v;
  const std::uint64_t tail = hdr_->tail.load(std::memory_order_relaxed);
  auto ready = [&] {
    head_cache_ = hdr_->head.load(std::memory_order_acquire);
    return head_cache_ > tail;
  };
  if (!wait_ready(wait_, hdr_->not_empty, ready, deadline_after(timeout))) return {};
  return try_receive();
}

std::optional<std::size_t> Ring::receive(std::span<std::byte> buffer,
                                         std::chrono::nanoseconds timeout) {
  const View v = receive(timeout);
  if (!v) return std::nullopt;
  return copy_out(v, buffer);
}

std::size_t Ring::copy_out(View v, std::span<std::byte> buffer) {
  if (v.size > buffer.size()) {
    throw Error(EMSGSIZE, seg_.name().str(), "receive",
                "message of " + std::to_string(v.size) + " bytes, buffer of " +
                    std::to_string(buffer.size()));
  }
  if (v.size != 0) std::memcpy(buffer.data(), v.data, v.size);
  release();
  return v.size;
}

void Ring::throw_too_big(std::size_t bytes) const {
  throw Error(EMSGSIZE, seg_.name().str(), "send",
              "message of " + std::to_string(bytes) + " bytes, slots of " +
                  std::to_string(slot_size_));
}

}  // namespace shmkit
