// SPDX-License-Identifier: MIT
// Ring: a single-producer single-consumer ring of fixed-size slots in a segment of its own.
//
// The producer owns `head` (messages published), the consumer owns `tail` (messages
// released); each lives on its own cache line beside the Event its owner notifies, and each
// side keeps a private copy of the other's counter (rigtorp's SPSCQueue), so a send or a
// receive reads the peer's line only when the cached copy says "full" or "empty".
// Zero-copy: loan() a slot, write in place, publish(); receive() a view, read, release().
#pragma once

#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "shmkit/detail/config.hpp"
#include "shmkit/detail/robust.hpp"
#include "shmkit/event.hpp"
#include "shmkit/segment.hpp"

namespace shmkit {

/// How a blocking Ring call waits for room or for a message.
enum class Wait : std::uint8_t {
  busy_poll,        ///< spin on the counter: lowest latency, one CPU busy while idle
  block,            ///< sleep on the Event at once: an idle peer costs no CPU
  spin_then_block,  ///< spin briefly (50 µs), then sleep (the default)
};

namespace detail {

// ---- Shared layout ----
//
//   +0    RingHeader line 0: magic, version, fingerprint, slot_size, capacity, stride
//   +64   line 1: head  + not_empty   (written by the producer; consumer sleeps here)
//   +128  line 2: tail  + not_full    (written by the consumer; producer sleeps here)
//   +192  slot 0: RingSlot {size, reserved} then slot_size payload bytes, `stride` in all
//   ...   slot capacity-1
//
// INV-RING-1: tail <= head <= tail + capacity. Slot (n & (capacity-1)) belongs to the
// producer while n >= head, to the consumer while tail <= n < head.
// INV-RING-2: a slot's bytes are written before head passes it (release/acquire on head)
// and read before tail passes it (release/acquire on tail).
// The counters are 64-bit and never wrap in practice (2^64 messages).
inline constexpr std::uint64_t kRingMagic = 0x474e49524b4d4853ull;  // "SHMKRING" little-endian
inline constexpr std::uint32_t kRingVersion = 1;

struct RingHeader {
  std::atomic<std::uint64_t> magic;  // kRingMagic; stored last by the creator (release)
  std::uint32_t version;             // kRingVersion
  std::uint32_t fingerprint;         // kRingFingerprint: sizes of the shared types, endianness
  std::uint64_t slot_size;           // payload bytes per slot; creator, then read-only
  std::uint64_t capacity;            // slots, a power of two; creator, then read-only
  std::uint64_t stride;              // bytes from one slot to the next; creator, then read-only
  std::uint64_t reserved[3];         // zero
  alignas(kCacheLine) std::atomic<std::uint64_t> head;  // published count; producer (release)
  Event not_empty;                   // notified by the producer after each publish
  alignas(kCacheLine) std::atomic<std::uint64_t> tail;  // released count; consumer (release)
  Event not_full;                    // notified by the consumer after each release
};
// Not trivially copyable (atomics, Events): it is only ever used in place, never copied.
static_assert(std::is_standard_layout_v<RingHeader>);
static_assert(kRingMagic != 0 && kRingMagic != ~std::uint64_t{0});  // zero or 0xff.. is no ring
static_assert(alignof(RingHeader) == kCacheLine);
static_assert(offsetof(RingHeader, head) == 64 && offsetof(RingHeader, not_empty) == 72);
static_assert(offsetof(RingHeader, tail) == 128 && offsetof(RingHeader, not_full) == 136);
static_assert(sizeof(RingHeader) == 192);  // the slots start right after it
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
inline constexpr std::size_t kRingSlotsOffset = sizeof(RingHeader);

/// The bytes before each slot's payload.
struct RingSlot {
  std::uint64_t size;      // payload bytes of the message; producer, before head passes it
  std::uint64_t reserved;  // zero; keeps the payload 16-byte aligned
};
static_assert(sizeof(RingSlot) == 16 && std::is_standard_layout_v<RingSlot> &&
              std::is_trivially_copyable_v<RingSlot>);

inline constexpr std::uint32_t kRingFingerprint =
    static_cast<std::uint32_t>(kRingSlotsOffset << 16 | sizeof(Event) << 8 |
                               sizeof(RingSlot) << 1 | (std::endian::native == std::endian::little));

}  // namespace detail

/// A single-producer single-consumer ring of fixed-size messages. At most one process (or
/// thread) produces and at most one consumes at a time; either may be the same as the
/// other. A Ring object is not itself thread-safe. Move-only; destroying it unmaps.
class SHMKIT_API Ring {
 public:
  using Clock = std::chrono::steady_clock;
  /// The timeout of a call that should wait as long as it takes.
  static constexpr std::chrono::nanoseconds kForever = std::chrono::nanoseconds::max();

  /// A received message, valid until release(). Empty (false) when nothing was received.
  struct View {
    const std::byte* data = nullptr;
    std::size_t size = 0;
    explicit operator bool() const noexcept { return data != nullptr; }
    std::span<const std::byte> bytes() const noexcept { return {data, size}; }
  };

  /// Creates the segment `name` holding a ring of `capacity` slots of `slot_size` bytes.
  /// Throws Error: EINVAL when slot_size is 0 or above 4 GiB, or capacity is not a power
  /// of two (or above 2^32); whatever Segment::create throws (EEXIST, ENOSPC …).
  static Ring create(std::string_view name, std::size_t slot_size, std::size_t capacity,
                     const CreateOptions& options = {});
  /// Creates a nameless ring (memfd) shared with children across fork().
  static Ring create_anonymous(std::size_t slot_size, std::size_t capacity);
  /// Opens the ring `name`. Throws Error: EINVAL when the segment is not a ring of this
  /// version (bad magic, version, fingerprint or sizes), ENOENT when missing …
  static Ring open(std::string_view name);
  /// Removes the name (Segment::remove). Throws Error.
  static void remove(std::string_view name) { Segment::remove(name); }

  Ring() noexcept = default;
  Ring(Ring&& other) noexcept { *this = std::move(other); }
  Ring& operator=(Ring&& other) noexcept;

  explicit operator bool() const noexcept { return hdr_ != nullptr; }
  std::size_t slot_size() const noexcept { return slot_size_; }
  std::size_t capacity() const noexcept { return mask_ + 1; }
  /// Messages published and not yet released (a snapshot).
  std::size_t size() const noexcept {
    return static_cast<std::size_t>(hdr_->head.load(std::memory_order_acquire) -
                                    hdr_->tail.load(std::memory_order_acquire));
  }
  const Segment& segment() const noexcept { return seg_; }

  /// How this object's blocking calls wait (default Wait::spin_then_block).
  void set_wait(Wait mode) noexcept { wait_ = mode; }
  Wait wait_mode() const noexcept { return wait_; }

  // ---- Producer ----

  /// Returns the next free slot (slot_size() bytes) to write in place, or an empty span when
  /// the ring is full. Call publish() to send it. Never throws.
  [[nodiscard]] std::span<std::byte> try_loan() noexcept {
    const std::uint64_t head = hdr_->head.load(std::memory_order_relaxed);  // ours
    if (head - tail_cache_ > mask_) {
      // Acquire: the consumer's reads of the slot happen before we write it (INV-RING-2).
      tail_cache_ = hdr_->tail.load(std::memory_order_acquire);
      if (head - tail_cache_ > mask_) return {};
    }
    return {payload(head), slot_size_};
  }
  /// As try_loan(), waiting up to `timeout` for room; empty on timeout.
  [[nodiscard]] std::span<std::byte> loan(std::chrono::nanoseconds timeout = kForever);

  /// Sends the loaned slot holding `bytes` bytes and wakes a sleeping consumer. Throws
  /// Error(EMSGSIZE) when bytes > slot_size() (the slot stays loaned).
  void publish(std::size_t bytes) {
    if (bytes > slot_size_) [[unlikely]] throw_too_big(bytes);
    const std::uint64_t head = hdr_->head.load(std::memory_order_relaxed);
    SHMKIT_ASSERT(head - tail_cache_ <= mask_);  // a slot was loaned
    slot(head)->size = bytes;
    hdr_->head.store(head + 1, std::memory_order_release);  // INV-RING-2
    hdr_->not_empty.notify_one();
  }

  /// Copies `message` into a slot and publishes it; false when full. Throws
  /// Error(EMSGSIZE) when the message is larger than slot_size().
  [[nodiscard]] bool try_send(std::span<const std::byte> message) {
    if (message.size() > slot_size_) [[unlikely]] throw_too_big(message.size());
    const std::span<std::byte> s = try_loan();
    if (s.empty()) return false;
    if (!message.empty()) std::memcpy(s.data(), message.data(), message.size());
    publish(message.size());
    return true;
  }
  /// As try_send(), waiting up to `timeout` for room; false on timeout.
  bool send(std::span<const std::byte> message, std::chrono::nanoseconds timeout = kForever);

  // ---- Consumer ----

  /// Returns the oldest message in place, or an empty View when the ring is empty. Call
  /// release() when done with it; until then the same message is returned again.
  [[nodiscard]] View try_receive() noexcept {
    const std::uint64_t tail = hdr_->tail.load(std::memory_order_relaxed);  // ours
    if (head_cache_ <= tail) {
      // Acquire: the producer's writes of the slot happen before we read it (INV-RING-2).
      head_cache_ = hdr_->head.load(std::memory_order_acquire);
      if (head_cache_ <= tail) return {};
    }
    // The size was written by another process: clamp it rather than trust it.
    const std::uint64_t size = slot(tail)->size;
    return {payload(tail), size < slot_size_ ? static_cast<std::size_t>(size) : slot_size_};
  }
  /// As try_receive(), waiting up to `timeout` for a message; empty on timeout.
  [[nodiscard]] View receive(std::chrono::nanoseconds timeout = kForever);

  /// Frees the message returned by receive()/try_receive() and wakes a sleeping producer.
  void release() noexcept {
    const std::uint64_t tail = hdr_->tail.load(std::memory_order_relaxed);
    SHMKIT_ASSERT(tail < head_cache_);  // a message was received
    hdr_->tail.store(tail + 1, std::memory_order_release);  // INV-RING-2
    hdr_->not_full.notify_one();
  }

  /// Copies the oldest message into `buffer`, releases it and returns its size; nullopt when
  /// empty. Throws Error(EMSGSIZE) when `buffer` is too small (the message stays queued).
  [[nodiscard]] std::optional<std::size_t> try_receive(std::span<std::byte> buffer) {
    const View v = try_receive();
    if (!v) return std::nullopt;
    return copy_out(v, buffer);
  }
  /// As try_receive(buffer), waiting up to `timeout`; nullopt on timeout.
  [[nodiscard]] std::optional<std::size_t> receive(std::span<std::byte> buffer,
                                                   std::chrono::nanoseconds timeout = kForever);

  /// Describes what is wrong with the shared state ("" when consistent): the header and
  /// INV-RING-1. Meant for tests and `shmkit info --check`.
  std::string check() const;

 private:
  static Ring attach(Segment seg, std::string_view name);
  static Ring make(Segment seg, std::size_t slot_size, std::size_t capacity);
  [[noreturn]] void throw_too_big(std::size_t bytes) const;
  std::size_t copy_out(View v, std::span<std::byte> buffer);

  detail::RingSlot* slot(std::uint64_t n) const noexcept {
    return reinterpret_cast<detail::RingSlot*>(slots_ + (n & mask_) * stride_);
  }
  std::byte* payload(std::uint64_t n) const noexcept {
    return slots_ + (n & mask_) * stride_ + sizeof(detail::RingSlot);
  }

  Segment seg_;
  detail::RingHeader* hdr_ = nullptr;
  std::byte* slots_ = nullptr;
  std::uint64_t mask_ = 0;         // capacity - 1
  std::size_t stride_ = 0;
  std::size_t slot_size_ = 0;
  std::uint64_t tail_cache_ = 0;   // producer: last tail seen (never ahead of the real one)
  std::uint64_t head_cache_ = 0;   // consumer: last head seen (never ahead of the real one)
  Wait wait_ = Wait::spin_then_block;
};

}  // namespace shmkit
