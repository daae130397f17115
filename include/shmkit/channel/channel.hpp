// SPDX-License-Identifier: MIT
// What every message channel shares: the header (identity, geometry, counters), the table of
// peers (who produces, who consumes, who died), the slots, and how a channel is created,
// opened and found — in a segment of its own or inside an Arena.
//
//   +0     ChannelHeader   5 cache lines: identity + geometry, head, tail, reap lock, counters
//   +320   PeerSlot[max_peers]          64 bytes each: owner pid, start time, claims, cursors
//   +...   slots: SlotHeader {seq, size, flags} + slot_size payload bytes, `stride` apart
//
// Ring, Queue and Broadcast (ring.hpp, queue.hpp, broadcast.hpp) give the slots their
// protocol; docs/layout.md has the byte maps and docs/channels.md the protocols.
#pragma once

#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "shmkit/detail/config.hpp"
#include "shmkit/event.hpp"
#include "shmkit/mutex.hpp"
#include "shmkit/segment.hpp"

namespace shmkit {

class Arena;

/// How a blocking channel call waits for room or for a message.
enum class Wait : std::uint8_t {
  busy_poll,        ///< spin on the counter: lowest latency, one CPU busy while idle
  block,            ///< sleep on an Event at once: an idle peer costs no CPU
  spin_then_block,  ///< spin briefly (50 µs), then sleep (the default)
};

/// What a handle does on a channel. A handle registers as one peer of the channel; the
/// peers are visible to every other (peers(), `shmkit info`) and a dead one is reported.
enum class Role : std::uint8_t {
  none = 0,      ///< not a peer (inspecting, or a forked parent's handle before join())
  producer = 1,  ///< sends
  consumer = 2,  ///< receives (a subscriber of a Broadcast)
  both = 3,      ///< sends and receives (threads of one process sharing a Queue, tests)
};

/// What a Broadcast producer does when the slowest subscriber is `capacity` messages behind.
enum class Overflow : std::uint8_t {
  block = 0,      ///< the producer waits (a dead subscriber is dropped, never waited for)
  overwrite = 1,  ///< the oldest message is overwritten; a lapped subscriber is told how many it lost
};

/// The shape of a channel, fixed when it is created and stored in its header.
struct ChannelConfig {
  std::size_t slot_size = 240;   ///< payload bytes per slot (1 .. 4 GiB - 16)
  std::size_t capacity = 1024;   ///< slots, a power of two (1 .. 2^32)
  std::uint32_t max_peers = 16;  ///< handles that may be joined at once (1 .. 65536)
  Overflow overflow = Overflow::block;  ///< Broadcast only
};

/// One registered handle of a channel, as peers() reports it.
struct ChannelPeer {
  std::int32_t pid = 0;
  Role role = Role::none;
  bool alive = false;         ///< its process still runs (a dead one is dropped by reap())
  bool self = false;          ///< this handle
  /// Sent or received through this handle (Queue and Broadcast; a Ring keeps its hot path
  /// lean: its head and tail say how many)
  std::uint64_t messages = 0;
  std::uint64_t lost = 0;     ///< Broadcast: messages this subscriber lost to overwriting
};

/// Counters of a channel since it was created (a snapshot).
struct ChannelStats {
  std::uint64_t published = 0;    ///< messages sent
  std::uint64_t peer_deaths = 0;  ///< peers found dead and dropped
  std::uint64_t lost = 0;         ///< messages lost with a consumer that died holding them
  std::uint32_t producers = 0;    ///< producers joined now
  std::uint32_t consumers = 0;    ///< consumers joined now
};

namespace detail {

enum class ChannelKind : std::uint32_t { ring = 1, queue = 2, broadcast = 3 };

inline constexpr std::uint64_t kChannelMagic = 0x4e4148434b4d4853ull;  // "SHMKCHAN" little-endian
inline constexpr std::uint32_t kChannelVersion = 1;
inline constexpr std::size_t kChannelLine = 64;

// INV-CHAN-1: the identity line is written by the creator before `magic` (release) and is
// read-only afterwards; everything an opener derives from it is validated, never trusted.
// INV-CHAN-2: producers/consumers count the joined peers of each role; a peer slot is owned
// by the process whose pid is in `owner` until it leaves or a reaper (holding reap_lock)
// has dropped it and repaired what it held.
struct ChannelHeader {
  // ---- line 0: identity and geometry (creator, then read-only) ----
  std::atomic<std::uint64_t> magic;  // kChannelMagic, stored last (release)
  std::uint32_t version;             // kChannelVersion
  std::uint32_t fingerprint;         // kChannelFingerprint
  std::uint32_t kind;                // ChannelKind
  std::uint32_t overflow;            // Overflow (Broadcast)
  std::uint64_t slot_size;           // payload bytes per slot
  std::uint64_t capacity;            // slots, a power of two
  std::uint64_t stride;              // bytes from one slot to the next
  std::uint32_t max_peers;           // PeerSlots after the header
  std::uint32_t reserved0;
  std::uint64_t bytes;               // header + peers + slots
  // ---- line 1: the producers' counter, and the Event consumers sleep on ----
  alignas(kChannelLine) std::atomic<std::uint64_t> head;
  Event not_empty;
  // ---- line 2: the consumers' counter, and the Event producers sleep on ----
  alignas(kChannelLine) std::atomic<std::uint64_t> tail;
  Event not_full;
  // ---- line 3: serialises joining and reaping (robust: a dead reaper is survived) ----
  alignas(kChannelLine) Mutex peers_lock;
  // ---- line 4: counters ----
  alignas(kChannelLine) std::atomic<std::uint32_t> producers;  // joined now
  std::atomic<std::uint32_t> consumers;                          // joined now
  std::atomic<std::uint32_t> producers_seen;                     // ever joined
  std::atomic<std::uint32_t> consumers_seen;                     // ever joined
  std::atomic<std::uint64_t> peer_deaths;
  std::atomic<std::uint64_t> lost;
  std::atomic<std::uint64_t> min_tail;  // Broadcast: the slowest subscriber's cursor, cached
  std::uint64_t reserved1[3];
};
static_assert(std::is_standard_layout_v<ChannelHeader>);
static_assert(kChannelMagic != 0 && kChannelMagic != ~std::uint64_t{0});
static_assert(alignof(ChannelHeader) == kChannelLine);
static_assert(offsetof(ChannelHeader, bytes) == 56);
static_assert(offsetof(ChannelHeader, head) == 64 && offsetof(ChannelHeader, not_empty) == 72);
static_assert(offsetof(ChannelHeader, tail) == 128 && offsetof(ChannelHeader, not_full) == 136);
static_assert(offsetof(ChannelHeader, peers_lock) == 192 && sizeof(Mutex) == 64);
static_assert(offsetof(ChannelHeader, producers) == 256 && offsetof(ChannelHeader, lost) == 280);
static_assert(sizeof(ChannelHeader) == 320);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// A peer: one joined handle. `owner` is the pid (0: free). The claims say which position a
// Queue producer / consumer is taking (position + 1; 0: none): a reaper reads them to repair
// a slot its dead owner left half-done. A Broadcast subscriber's cursor is `consume`.
struct PeerSlot {
  std::atomic<std::uint32_t> owner;        // pid; 0 free
  std::uint32_t role;                      // Role
  std::atomic<std::uint64_t> start_time;   // of `owner` (os::process_start_time); 0 = joining
  std::atomic<std::uint64_t> produce;      // Queue: claim (pos + 1) while taking a slot
  std::atomic<std::uint64_t> consume;      // Queue: claim (pos + 1); Broadcast: next position
  std::atomic<std::uint64_t> messages;     // sent or received by this peer
  std::atomic<std::uint64_t> lost;         // Broadcast: lapped messages
  std::uint64_t reserved[2];
};
static_assert(sizeof(PeerSlot) == 64 && std::is_standard_layout_v<PeerSlot>);
static_assert(offsetof(PeerSlot, produce) == 16 && offsetof(PeerSlot, consume) == 24);

// The bytes before each slot's payload.
struct SlotHeader {
  std::atomic<std::uint64_t> seq;  // Queue: Vyukov sequence; Broadcast: seqlock; Ring: n + 1
  std::uint32_t size;              // payload bytes (a block message: sizeof(BlockRef))
  std::uint32_t flags;             // kSlotBlock, kSlotVoid
};
static_assert(sizeof(SlotHeader) == 16 && std::is_standard_layout_v<SlotHeader>);

inline constexpr std::uint32_t kSlotBlock = 1;  // the payload is a BlockRef into the arena
inline constexpr std::uint32_t kSlotVoid = 2;   // no message: a dead producer's claimed slot

// A message larger than a slot, sent as a block of the arena the channel lives in.
struct BlockRef {
  std::uint64_t offset;  // Arena::offset_of the block
  std::uint64_t size;    // message bytes
};
static_assert(sizeof(BlockRef) == 16 && std::is_trivially_copyable_v<BlockRef>);

inline constexpr std::size_t kPeersOffset = sizeof(ChannelHeader);

// What an Arena's directory holds under a channel's name: where its bytes are.
struct ChannelAnchor {
  std::uint64_t offset;  // Arena::offset_of the channel's header
  std::uint64_t bytes;   // its size
};
static_assert(sizeof(ChannelAnchor) == 16 && std::is_trivially_copyable_v<ChannelAnchor>);

inline constexpr std::uint32_t kChannelFingerprint =
    static_cast<std::uint32_t>(sizeof(ChannelHeader) << 16 | sizeof(PeerSlot) << 8 |
                               sizeof(SlotHeader) << 1 |
                               (std::endian::native == std::endian::little));

}  // namespace detail

/// The part every channel shares: where it lives, its peers, its counters, waiting. Not used
/// on its own (Ring, Queue and Broadcast derive from it). A handle is not thread-safe: give
/// each thread its own (they may all be in one process). Move-only; destroying a handle
/// leaves the channel (its peer slot is freed) and unmaps it.
class SHMKIT_API ChannelBase {
 public:
  using Clock = std::chrono::steady_clock;
  /// The timeout of a call that should wait as long as it takes.
  static constexpr std::chrono::nanoseconds kForever = std::chrono::nanoseconds::max();

  /// A received message, valid until release(). Empty (false) when nothing was received:
  /// on timeout, or when closed() (no producer left).
  struct View {
    const std::byte* data = nullptr;
    std::size_t size = 0;
    std::uint64_t lost = 0;  ///< Broadcast: messages this subscriber lost just before this one
    explicit operator bool() const noexcept { return data != nullptr; }
    std::span<const std::byte> bytes() const noexcept { return {data, size}; }
    std::string_view text() const noexcept {
      return {reinterpret_cast<const char*>(data), size};
    }
  };

  explicit operator bool() const noexcept { return hdr_ != nullptr; }
  std::size_t slot_size() const noexcept { return slot_size_; }
  std::size_t capacity() const noexcept { return mask_ + 1; }
  std::uint32_t max_peers() const noexcept { return max_peers_; }
  /// This handle's role (Role::none before join()).
  Role role() const noexcept { return role_; }
  /// The arena the channel lives in, or nullptr for a segment of its own.
  Arena* arena() const noexcept { return arena_; }
  /// The segment the channel lives in (the arena's, for a channel in an arena).
  const Segment& segment() const noexcept;
  /// The channel's bytes (header first) and their size.
  void* data() const noexcept { return hdr_; }
  std::size_t bytes() const noexcept { return bytes_; }

  /// How this handle's blocking calls wait (default Wait::spin_then_block).
  void set_wait(Wait mode) noexcept { wait_ = mode; }
  Wait wait_mode() const noexcept { return wait_; }

  /// Registers this process as a peer with `role`, replacing the handle's registration. Call
  /// it in a child after fork() on an inherited handle (the parent's registration stays the
  /// parent's). Throws Error: EBUSY when the table is full (or, for a Ring, when a live
  /// producer / consumer is already joined); EINVAL for a role the channel does not allow.
  void join(Role role);
  /// Drops this handle's registration (the destructor does it too). Never throws.
  void leave() noexcept;

  /// True when the other side is gone: a consumer's producers have all left or died (after
  /// at least one joined) and nothing is queued; or a producer's consumers have all left or
  /// died (after one joined). Blocking calls return empty when this becomes true.
  bool closed() const noexcept;
  /// Finds peers whose process died, repairs what they held (a Queue slot half-written is
  /// skipped, one half-read is freed and counted as lost) and frees their slots. Returns how
  /// many it dropped. Blocking calls run it after 100 ms without progress when a peer that
  /// may hold them up has died (in a Broadcast: the producer, or for it the subscribers).
  std::uint32_t reap();

  /// The joined peers (a snapshot; each entry's liveness is checked now).
  std::vector<ChannelPeer> peers() const;
  ChannelStats stats() const noexcept;
  /// Messages published and not yet taken (a snapshot; for a Broadcast, the slowest
  /// subscriber's backlog).
  std::size_t size() const noexcept;

  /// Describes what is wrong with the shared state ("" when consistent): header, counters,
  /// peers. Meant for tests and `shmkit info`.
  std::string check() const;

 protected:
  ChannelBase() noexcept = default;
  ~ChannelBase() { leave(); }
  ChannelBase(ChannelBase&& other) noexcept { *this = std::move(other); }
  ChannelBase& operator=(ChannelBase&& other) noexcept;

  // Creating and opening, shared by the three kinds. `self` must be empty.
  void create_in_segment(detail::ChannelKind kind, std::string_view name,
                         const ChannelConfig& config, Role role, const CreateOptions& options);
  void open_segment(detail::ChannelKind kind, std::string_view name, Role role);
  void open_or_create_segment(detail::ChannelKind kind, std::string_view name,
                              const ChannelConfig& config, Role role,
                              const CreateOptions& options);
  void create_anonymous_segment(detail::ChannelKind kind, const ChannelConfig& config);
  void create_in_arena(detail::ChannelKind kind, Arena& arena, std::string_view name,
                       const ChannelConfig& config, Role role);
  void open_in_arena(detail::ChannelKind kind, Arena& arena, std::string_view name, Role role);
  void open_or_create_in_arena(detail::ChannelKind kind, Arena& arena, std::string_view name,
                               const ChannelConfig& config, Role role);
  static void remove_from_arena(Arena& arena, std::string_view name);
  static std::size_t bytes_for(detail::ChannelKind kind, const ChannelConfig& config);

  detail::PeerSlot* peer(std::uint32_t i) const noexcept { return peers_ + i; }
  detail::PeerSlot* me() const noexcept { return me_; }
  detail::SlotHeader* slot(std::uint64_t n) const noexcept {
    return reinterpret_cast<detail::SlotHeader*>(slots_ + (n & mask_) * stride_);
  }
  std::byte* payload(std::uint64_t n) const noexcept {
    return slots_ + (n & mask_) * stride_ + sizeof(detail::SlotHeader);
  }
  // What this handle opened, kept here: the header's copy is foreign bytes.
  detail::ChannelKind kind() const noexcept { return kind_; }
  std::string label() const { return name_; }

  // Waits until `ready()`, `deadline`, or closed() when `closing` says the waiter needs the
  // other side; reaps dead peers every 100 ms without progress. True when ready.
  template <class Ready>
  bool wait_until(Event& event, Ready ready, Clock::time_point deadline, bool closing);
  // What a waiter runs every 100 ms: reap(), if a peer whose death can hold it up has died.
  // `other` is the side it waits for (producers on not_empty, consumers on not_full).
  std::uint32_t reap_for_waiter(Role other);
  static Clock::time_point deadline_after(std::chrono::nanoseconds timeout) noexcept;

  // A large message as a block of the arena: allocated / resolved / freed. require_blocks
  // throws Error(EINVAL) when the channel cannot carry blocks (not in an arena, tiny slots).
  void require_blocks(const char* op) const;
  std::span<std::byte> allocate_block(std::size_t size);
  const std::byte* resolve_block(const detail::SlotHeader& s, const std::byte* p,
                                 std::size_t& size) const noexcept;
  void free_block(const std::byte* payload) noexcept;

  // send() of every kind: copies `message` into a loaned slot, or, when it is larger than a
  // slot and the kind carries blocks, into an arena block sent by publish_block().
  template <class Channel>
  static bool send_copy(Channel& c, std::span<const std::byte> message,
                        std::chrono::nanoseconds timeout);

  // try_send() of Queue and Broadcast, and publish_block() of Ring and Queue: a slot loaned
  // and published through the kind's own calls.
  template <class Channel>
  static bool try_send_copy(Channel& c, std::span<const std::byte> message);
  template <class Channel>
  static bool publish_block_in(Channel& c, std::span<std::byte> block,
                               std::chrono::nanoseconds timeout);
  // One more message sent or received through this handle (its peer slot's count; only this
  // handle writes it).
  void count_message() noexcept {
    if (me_ != nullptr) {
      me_->messages.store(me_->messages.load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
    }
  }

  [[noreturn]] void throw_too_big(std::size_t bytes) const;
  [[noreturn]] void throw_no_role(const char* op) const;
  std::size_t copy_out(View v, std::span<std::byte> buffer) const;
  // The copying receive of Ring and Queue: copies the message `v` (if any) into `buffer` and
  // releases it. Error(EMSGSIZE), the message kept, when `buffer` is too small.
  template <class Channel>
  static std::optional<std::size_t> take_copy(Channel& c, View v, std::span<std::byte> buffer) {
    if (!v) return std::nullopt;
    const std::size_t n = c.copy_out(v, buffer);
    c.release();
    return n;
  }

  detail::ChannelHeader* hdr_ = nullptr;
  detail::PeerSlot* peers_ = nullptr;
  detail::PeerSlot* me_ = nullptr;  // this handle's slot, or nullptr
  std::byte* slots_ = nullptr;
  std::uint64_t mask_ = 0;           // capacity - 1
  std::size_t stride_ = 0;
  std::size_t slot_size_ = 0;
  std::size_t bytes_ = 0;
  std::uint32_t max_peers_ = 0;
  detail::ChannelKind kind_ = detail::ChannelKind::ring;
  Role role_ = Role::none;
  Wait wait_ = Wait::spin_then_block;

 private:
  void attach(detail::ChannelKind kind, void* base, std::size_t available, Role role);
  static void format(void* base, detail::ChannelKind kind, const ChannelConfig& config,
                     std::size_t bytes) noexcept;
  // With peers_lock held: drops dead peers; repairs what peer `p` held (false: not yet,
  // a live peer claims the same position; `own`: p is this handle's, its claims are its own
  // for certain); frees a slot.
  std::uint32_t reap_locked();
  bool repair(detail::PeerSlot& p, Role role, bool own);
  bool claimed_by_other(const detail::PeerSlot& dead,
                        std::atomic<std::uint64_t> detail::PeerSlot::*field,
                        std::uint64_t claim) const noexcept;
  void drop(detail::PeerSlot& p) noexcept;
  void settle_ring_head() noexcept;

  Segment seg_;
  Arena* arena_ = nullptr;
  std::string name_;
  std::int32_t pid_ = 0;  // the process that joined through me_
};

namespace detail {

/// The ways to create, open and remove a channel of kind K, the same for every kind; Ring,
/// Queue and Broadcast derive from it (CRTP) and return their own type.
template <class Derived, ChannelKind K>
class ChannelOf : public ChannelBase {
 public:
  /// Creates the segment `name` holding a channel of `config`'s shape and joins it as
  /// `role` (Role::none: only look). Throws Error: EINVAL for a bad shape or role (saying
  /// why, nothing created); whatever Segment::create throws (EEXIST, EACCES, ENOSPC …).
  static Derived create(std::string_view name, const ChannelConfig& config, Role role,
                        const CreateOptions& options = {}) {
    return made([&](Derived& d) { d.create_in_segment(K, name, config, role, options); });
  }
  /// Opens the channel `name` and joins it as `role`. Throws Error: ENOENT when missing;
  /// EINVAL when the segment is not a channel of this kind and format; EBUSY when the role
  /// is taken (a Ring's producer or consumer, a Broadcast's producer) or the table is full.
  static Derived open(std::string_view name, Role role) {
    return made([&](Derived& d) { d.open_segment(K, name, role); });
  }
  /// Opens `name`, creating it when missing; among racing processes exactly one creates it.
  /// An existing channel keeps its own shape.
  static Derived open_or_create(std::string_view name, const ChannelConfig& config, Role role,
                                const CreateOptions& options = {}) {
    return made([&](Derived& d) { d.open_or_create_segment(K, name, config, role, options); });
  }
  /// Creates a nameless channel (memfd) for children forked after it. A Ring's or Queue's
  /// handle may produce and consume as inherited; call join() in a process to be seen as a
  /// peer (a Broadcast subscriber must: its cursor is its peer slot).
  static Derived create_anonymous(const ChannelConfig& config) {
    return made([&](Derived& d) {
      d.create_anonymous_segment(K, config);
      if (K != ChannelKind::broadcast) d.role_ = Role::both;  // unregistered
    });
  }
  /// The same as named objects of `arena`, which must outlive the handle.
  static Derived create(Arena& arena, std::string_view name, const ChannelConfig& config,
                        Role role) {
    return made([&](Derived& d) { d.create_in_arena(K, arena, name, config, role); });
  }
  static Derived open(Arena& arena, std::string_view name, Role role) {
    return made([&](Derived& d) { d.open_in_arena(K, arena, name, role); });
  }
  static Derived open_or_create(Arena& arena, std::string_view name, const ChannelConfig& config,
                                Role role) {
    return made([&](Derived& d) { d.open_or_create_in_arena(K, arena, name, config, role); });
  }
  /// Removes the name (Segment::remove), or the channel and its name from `arena` (EBUSY
  /// while peers are joined). Throws Error.
  static void remove(std::string_view name) { Segment::remove(name); }
  static void remove(Arena& arena, std::string_view name) { remove_from_arena(arena, name); }
  /// The bytes a channel of this kind and `config`'s shape takes (header, peers, slots).
  /// Throws Error(EINVAL) for a shape no channel can have, saying why.
  static std::size_t bytes_for(const ChannelConfig& config) { return ChannelBase::bytes_for(K, config); }

 protected:
  ChannelOf() noexcept = default;
  // Called once the handle is attached; a kind with private caches overrides it.
  void after_attach() noexcept {}

 private:
  template <class Make>
  static Derived made(Make make) {
    Derived d;
    make(d);
    d.after_attach();
    return d;
  }
};

}  // namespace detail

/// What a channel's header and peer table say, read without joining it (`shmkit info`).
struct ChannelInfo {
  std::string kind;          ///< "ring", "queue" or "broadcast"
  ChannelConfig config;      ///< its shape
  ChannelStats stats;
  std::uint64_t head = 0;    ///< messages published
  std::uint64_t tail = 0;    ///< Ring and Queue: messages taken
  std::vector<ChannelPeer> peers;
  std::string problem;       ///< "" when the header is valid; then the fields above are set
};

/// Reads the channel whose header is at `data` (`size` readable bytes; a read-only mapping
/// will do). nullopt when the bytes do not start with a channel's magic; a channel with a
/// bad header has only `problem` set. Never writes, never throws but std::bad_alloc.
SHMKIT_API std::optional<ChannelInfo> inspect_channel(const void* data, std::size_t size);


}  // namespace shmkit
