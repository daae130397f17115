// SPDX-License-Identifier: MIT
// What the three channel kinds share: the shape and its validation (the header is foreign
// bytes: checked, never trusted), creating and opening in a segment or an arena, the peer
// table (join, leave, reap and the repair of what a dead peer held), counters and checks.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include "channel/internal.hpp"
#include "os/os.hpp"
#include "shmkit/arena.hpp"
#include "shmkit/channel/channel.hpp"
#include "shmkit/error.hpp"

namespace shmkit {
namespace {

using detail::ChannelHeader;
using detail::ChannelKind;
using detail::PeerSlot;
using detail::SlotHeader;

constexpr std::uint64_t kMaxSlotSize = (std::uint64_t{1} << 32) - sizeof(SlotHeader);
constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 32;
constexpr std::uint32_t kMaxPeers = 65536;
// How long open() waits for a creator that has made the segment but not yet its header.
constexpr std::chrono::milliseconds kFormatWait{1000};

// A Ring packs its slots (16-byte granularity): its one consumer reads them in order, so
// neighbours sharing a line cost little, and a stream touches fewer lines a message (1.25 for
// 64 bytes, against 2): 64-byte streams run at ~100 M msgs/s, against ~60 M line-aligned.
// Queue and Broadcast slots own whole cache lines: several consumers take neighbouring slots
// at once, and a line two of them share would bounce (a 64-byte Queue round trip: 150 ns,
// against 205 ns packed).
std::uint64_t stride_of(ChannelKind kind, std::uint64_t slot_size) {
  const std::uint64_t align = kind == ChannelKind::ring ? 16 : detail::kChannelLine;
  return (sizeof(SlotHeader) + slot_size + align - 1) & ~(align - 1);
}

// Returns why the shape cannot make a channel, or "" with its size in `bytes`.
std::string shape_problem(ChannelKind kind, std::uint64_t slot_size, std::uint64_t capacity,
                          std::uint64_t max_peers, std::uint64_t& bytes) {
  if (slot_size == 0 || slot_size > kMaxSlotSize) return "slot size must be 1 byte .. 4 GiB - 16";
  if (capacity == 0 || capacity > kMaxCapacity || (capacity & (capacity - 1)) != 0) {
    return "capacity must be a power of two, at most 2^32";
  }
  if (max_peers == 0 || max_peers > kMaxPeers) return "max_peers must be 1 .. 65536";
  std::uint64_t slots = 0;
  if (__builtin_mul_overflow(capacity, stride_of(kind, slot_size), &slots) ||
      __builtin_add_overflow(slots, detail::kPeersOffset + max_peers * sizeof(PeerSlot), &bytes) ||
      bytes > std::uint64_t{SIZE_MAX}) {
    return "channel too large";
  }
  return "";
}

bool has(Role role, Role part) {
  return (static_cast<unsigned>(role) & static_cast<unsigned>(part)) != 0;
}

bool valid_role(Role role) { return static_cast<unsigned>(role) <= 3; }

// Throws Error(EINVAL) unless a handle of a `kind` channel may have `role` (Role::none too).
void check_role(ChannelKind kind, Role role, const std::string& name, const char* op) {
  if (!valid_role(role) || (kind == ChannelKind::broadcast && role == Role::both)) {
    throw Error(EINVAL, name, op, "a role this channel does not have");
  }
}

// Is the process that owns `p` (pid `pid`) still running? Zombies count as dead.
bool owner_alive(const PeerSlot& p, std::int32_t pid, std::int32_t self) {
  if (pid == self) return true;
  const std::uint64_t started = os::process_start_time(pid);
  if (started == 0) return false;
  const std::uint64_t recorded = p.start_time.load(std::memory_order_acquire);
  return recorded == 0 || recorded == started;  // 0: it is still joining
}

// peers_lock, held for a scope. A holder that died may have left the counters half-updated:
// they are recounted from the table before the lock is marked consistent.
class PeersLock {
 public:
  PeersLock(ChannelHeader& h, PeerSlot* peers, const std::string& name) : h_(h) {
    const LockStatus status = h.peers_lock.acquire();
    if (status == LockStatus::owner_died) {
      recount(peers);
      h.peers_lock.mark_consistent();
    } else if (status != LockStatus::acquired) {
      throw Error(ENOTRECOVERABLE, name, "lock the peer table", to_string(status));
    }
  }
  ~PeersLock() { h_.peers_lock.unlock(); }
  PeersLock(const PeersLock&) = delete;
  PeersLock& operator=(const PeersLock&) = delete;

 private:
  void recount(PeerSlot* peers) {
    std::uint32_t producers = 0, consumers = 0;
    for (std::uint32_t i = 0; i < h_.max_peers; ++i) {
      if (peers[i].owner.load(std::memory_order_acquire) == 0) continue;
      producers += has(static_cast<Role>(peers[i].role), Role::producer) ? 1 : 0;
      consumers += has(static_cast<Role>(peers[i].role), Role::consumer) ? 1 : 0;
    }
    h_.producers.store(producers, std::memory_order_release);
    h_.consumers.store(consumers, std::memory_order_release);
  }
  ChannelHeader& h_;
};

}  // namespace

namespace detail {

const char* kind_name(ChannelKind kind) {
  switch (kind) {
    case ChannelKind::ring: return "ring";
    case ChannelKind::queue: return "queue";
    case ChannelKind::broadcast: return "broadcast";
  }
  return "channel";
}

std::string channel_header_problem(const void* base, std::size_t available, ChannelKind kind) {
  if (available < sizeof(ChannelHeader)) return "too small to be a channel";
  const auto* h = static_cast<const ChannelHeader*>(base);
  if (h->magic.load(std::memory_order_acquire) != detail::kChannelMagic) {
    return "not a channel (bad magic)";
  }
  if (h->version != detail::kChannelVersion) {
    return "channel format version " + std::to_string(h->version) + ", expected " +
           std::to_string(detail::kChannelVersion);
  }
  if (h->fingerprint != detail::kChannelFingerprint) {
    return "channel built with another layout (ABI fingerprint)";
  }
  if (h->kind != static_cast<std::uint32_t>(kind)) {
    const auto other = static_cast<ChannelKind>(h->kind);
    const bool known = other == ChannelKind::ring || other == ChannelKind::queue ||
                       other == ChannelKind::broadcast;
    return std::string("a ") + (known ? kind_name(other) : "channel of unknown kind") +
           ", not a " + kind_name(kind);
  }
  if (h->overflow > static_cast<std::uint32_t>(Overflow::overwrite)) return "bad overflow policy";
  std::uint64_t bytes = 0;
  if (std::string why = shape_problem(kind, h->slot_size, h->capacity, h->max_peers, bytes);
      !why.empty()) {
    return why;
  }
  if (h->stride != stride_of(kind, h->slot_size)) return "bad slot stride";
  if (h->bytes != bytes) return "bad size in the header";
  if (bytes > available) return "segment smaller than its channel";
  return "";
}

}  // namespace detail

using detail::channel_header_problem;
using detail::kind_name;

std::size_t ChannelBase::bytes_for(ChannelKind kind, const ChannelConfig& config) {
  std::uint64_t bytes = 0;
  if (std::string why = shape_problem(kind, config.slot_size, config.capacity, config.max_peers, bytes);
      !why.empty()) {
    throw Error(EINVAL, "", std::string("size a ") + kind_name(kind), why);
  }
  return static_cast<std::size_t>(bytes);
}

// ---- Creating and opening ----

void ChannelBase::format(void* base, ChannelKind kind, const ChannelConfig& config,
                         std::size_t bytes) noexcept {
  // The memory is fresh and zero-filled: zero counters, Events, Mutex and peers are their
  // initial state.
  auto* h = static_cast<ChannelHeader*>(base);
  h->version = detail::kChannelVersion;
  h->fingerprint = detail::kChannelFingerprint;
  h->kind = static_cast<std::uint32_t>(kind);
  h->overflow = static_cast<std::uint32_t>(config.overflow);
  h->slot_size = config.slot_size;
  h->capacity = config.capacity;
  h->stride = stride_of(kind, config.slot_size);
  h->max_peers = config.max_peers;
  h->bytes = bytes;
  if (kind == ChannelKind::queue) {  // slot i is free for position i (Vyukov)
    auto* slots = static_cast<std::byte*>(base) + detail::kPeersOffset +
                  std::size_t{config.max_peers} * sizeof(PeerSlot);
    for (std::uint64_t i = 0; i < config.capacity; ++i) {
      reinterpret_cast<SlotHeader*>(slots + i * h->stride)->seq.store(i, std::memory_order_relaxed);
    }
  }
  // Release: an opener that sees the magic sees everything above (INV-CHAN-1).
  h->magic.store(detail::kChannelMagic, std::memory_order_release);
}

void ChannelBase::attach(ChannelKind kind, void* base, std::size_t available, Role role) {
  if (std::string why = channel_header_problem(base, available, kind); !why.empty()) {
    throw Error(EINVAL, name_, std::string("open ") + kind_name(kind), why);
  }
  hdr_ = static_cast<ChannelHeader*>(base);
  kind_ = kind;
  peers_ = reinterpret_cast<PeerSlot*>(static_cast<std::byte*>(base) + detail::kPeersOffset);
  max_peers_ = hdr_->max_peers;
  slots_ = reinterpret_cast<std::byte*>(peers_ + max_peers_);
  mask_ = hdr_->capacity - 1;
  stride_ = static_cast<std::size_t>(hdr_->stride);
  slot_size_ = static_cast<std::size_t>(hdr_->slot_size);
  bytes_ = static_cast<std::size_t>(hdr_->bytes);
  if (role != Role::none) join(role);
}

void ChannelBase::create_in_segment(ChannelKind kind, std::string_view name,
                                    const ChannelConfig& config, Role role,
                                    const CreateOptions& options) {
  std::uint64_t bytes = 0;
  if (std::string why = shape_problem(kind, config.slot_size, config.capacity, config.max_peers, bytes);
      !why.empty()) {
    throw Error(EINVAL, std::string(name), std::string("create ") + kind_name(kind), why);
  }
  // Before anything is made: a create that fails leaves no name behind.
  check_role(kind, role, std::string(name), "create");
  Segment seg = Segment::create(name, static_cast<std::size_t>(bytes), options);
  format(seg.data(), kind, config, static_cast<std::size_t>(bytes));
  name_ = seg.name().str();
  seg_ = std::move(seg);
  attach(kind, seg_.data(), seg_.size(), role);
}

void ChannelBase::open_segment(ChannelKind kind, std::string_view name, Role role) {
  // A creator makes the object, sizes it, then writes the header: give it a moment before
  // calling the bytes foreign (a creator that died in between leaves a segment that never
  // becomes one). An object still empty has not been sized yet: open it again.
  const auto give_up = Clock::now() + kFormatWait;
  seg_ = Segment::open(name);
  while (seg_.size() == 0 && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    seg_ = Segment::open(name);
  }
  name_ = seg_.name().str();
  const auto* h = static_cast<const ChannelHeader*>(seg_.data());
  while (seg_.size() >= sizeof(ChannelHeader) && h->magic.load(std::memory_order_acquire) == 0 &&
         Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  attach(kind, seg_.data(), seg_.size(), role);
}

void ChannelBase::open_or_create_segment(ChannelKind kind, std::string_view name,
                                         const ChannelConfig& config, Role role,
                                         const CreateOptions& options) {
  CreateOptions exclusive = options;
  exclusive.exclusive = true;  // exactly one process formats it
  for (int attempt = 0;; ++attempt) {
    try {
      create_in_segment(kind, name, config, role, exclusive);
      return;
    } catch (const Error& e) {
      if (e.errnum() != EEXIST) throw;
    }
    try {
      open_segment(kind, name, role);
      return;
    } catch (const Error& e) {
      if (e.errnum() != ENOENT || attempt == 3) throw;  // removed in between: create again
    }
  }
}

void ChannelBase::create_anonymous_segment(ChannelKind kind, const ChannelConfig& config) {
  std::uint64_t bytes = 0;
  if (std::string why = shape_problem(kind, config.slot_size, config.capacity, config.max_peers, bytes);
      !why.empty()) {
    throw Error(EINVAL, "anonymous", std::string("create ") + kind_name(kind), why);
  }
  seg_ = Segment::create_anonymous(static_cast<std::size_t>(bytes));
  format(seg_.data(), kind, config, static_cast<std::size_t>(bytes));
  name_ = "anonymous " + std::string(kind_name(kind));
  attach(kind, seg_.data(), seg_.size(), Role::none);
}

void ChannelBase::create_in_arena(ChannelKind kind, Arena& arena, std::string_view name,
                                  const ChannelConfig& config, Role role) {
  std::uint64_t bytes = 0;
  if (std::string why = shape_problem(kind, config.slot_size, config.capacity, config.max_peers, bytes);
      !why.empty()) {
    throw Error(EINVAL, std::string(name), std::string("create ") + kind_name(kind), why);
  }
  check_role(kind, role, std::string(name), "create");
  void* base = arena.allocate_zeroed(static_cast<std::size_t>(bytes), detail::kChannelLine);
  format(base, kind, config, static_cast<std::size_t>(bytes));
  try {
    arena.construct<detail::ChannelAnchor>(name, detail::ChannelAnchor{arena.offset_of(base), bytes});
  } catch (...) {
    arena.deallocate(base);  // the name was taken (EEXIST) or the directory is full
    throw;
  }
  arena_ = &arena;
  name_ = std::string(name);
  attach(kind, base, static_cast<std::size_t>(bytes), role);
}

void ChannelBase::open_in_arena(ChannelKind kind, Arena& arena, std::string_view name, Role role) {
  const auto* anchor = arena.find<detail::ChannelAnchor>(name);
  if (anchor == nullptr) {
    throw Error(ENOENT, std::string(name), std::string("open ") + kind_name(kind),
                "no such channel in the arena");
  }
  const std::uint64_t offset = anchor->offset, bytes = anchor->bytes;
  if (offset == 0 || offset > arena.size() || bytes > arena.size() - offset) {
    throw Error(EINVAL, std::string(name), std::string("open ") + kind_name(kind),
                "the arena's entry points outside the arena");
  }
  arena_ = &arena;
  name_ = std::string(name);
  attach(kind, arena.at(offset), static_cast<std::size_t>(bytes), role);
}

void ChannelBase::open_or_create_in_arena(ChannelKind kind, Arena& arena, std::string_view name,
                                          const ChannelConfig& config, Role role) {
  for (int attempt = 0;; ++attempt) {
    try {
      open_in_arena(kind, arena, name, role);
      return;
    } catch (const Error& e) {
      if (e.errnum() != ENOENT) throw;
    }
    try {
      create_in_arena(kind, arena, name, config, role);
      return;
    } catch (const Error& e) {
      if (e.errnum() != EEXIST || attempt == 3) throw;  // another process won: open its
    }
  }
}

void ChannelBase::remove_from_arena(Arena& arena, std::string_view name) {
  const auto* anchor = arena.find<detail::ChannelAnchor>(name);
  if (anchor == nullptr) {
    throw Error(ENOENT, std::string(name), "remove channel", "no such channel in the arena");
  }
  const std::uint64_t offset = anchor->offset;
  if (offset == 0 || offset >= arena.size()) {
    throw Error(EINVAL, std::string(name), "remove channel", "the entry points outside the arena");
  }
  const auto* h = static_cast<const ChannelHeader*>(arena.at(offset));
  if (h->producers.load(std::memory_order_acquire) + h->consumers.load(std::memory_order_acquire) != 0) {
    throw Error(EBUSY, std::string(name), "remove channel", "peers are still joined");
  }
  if (arena.destroy<detail::ChannelAnchor>(name)) arena.deallocate(arena.at(offset));
}

ChannelBase& ChannelBase::operator=(ChannelBase&& other) noexcept {
  if (this != &other) {
    leave();
    hdr_ = std::exchange(other.hdr_, nullptr);
    peers_ = std::exchange(other.peers_, nullptr);
    me_ = std::exchange(other.me_, nullptr);
    slots_ = std::exchange(other.slots_, nullptr);
    mask_ = std::exchange(other.mask_, 0);
    stride_ = std::exchange(other.stride_, 0);
    slot_size_ = std::exchange(other.slot_size_, 0);
    bytes_ = std::exchange(other.bytes_, 0);
    max_peers_ = std::exchange(other.max_peers_, 0);
    kind_ = other.kind_;
    role_ = std::exchange(other.role_, Role::none);
    wait_ = other.wait_;
    seg_ = std::move(other.seg_);
    arena_ = std::exchange(other.arena_, nullptr);
    name_ = std::move(other.name_);
    pid_ = std::exchange(other.pid_, 0);
  }
  return *this;
}

const Segment& ChannelBase::segment() const noexcept {
  return arena_ != nullptr ? arena_->segment() : seg_;
}

// ---- Peers ----

void ChannelBase::join(Role role) {
  if (hdr_ == nullptr) throw Error(EINVAL, name_, "join", "no channel");
  check_role(kind(), role, name_, "join");
  if (role == Role::none) throw Error(EINVAL, name_, "join", "Role::none is no peer");
  leave();
  const std::int32_t self = os::getpid();
  PeersLock lock(*hdr_, peers_, name_);
  // One producer at a time in a Ring and a Broadcast, one consumer in a Ring: a dead one
  // is dropped first, a live one refuses the newcomer.
  auto taken = [&] {
    const bool one_producer = kind() != ChannelKind::queue;
    const bool one_consumer = kind() == ChannelKind::ring;
    return (one_producer && has(role, Role::producer) && hdr_->producers.load() != 0) ||
           (one_consumer && has(role, Role::consumer) && hdr_->consumers.load() != 0);
  };
  if (taken()) reap_locked();
  if (taken()) {
    throw Error(EBUSY, name_, "join",
                std::string("this ") + kind_name(kind()) + " already has a live " +
                    (has(role, Role::producer) && hdr_->producers.load() != 0 ? "producer"
                                                                              : "consumer"));
  }
  if (kind() == ChannelKind::ring && has(role, Role::producer)) settle_ring_head();
  PeerSlot* slot = nullptr;
  for (int pass = 0; pass < 2 && slot == nullptr; ++pass) {
    for (std::uint32_t i = 0; i < max_peers_; ++i) {
      if (peers_[i].owner.load(std::memory_order_acquire) == 0) {
        slot = &peers_[i];
        break;
      }
    }
    if (slot == nullptr && pass == 0) reap_locked();
  }
  if (slot == nullptr) {
    throw Error(EBUSY, name_, "join", "all " + std::to_string(max_peers_) + " peer slots are taken");
  }
  slot->role = static_cast<std::uint32_t>(role);
  slot->produce.store(0, std::memory_order_relaxed);
  // A subscriber starts with the next message published.
  slot->consume.store(kind() == ChannelKind::broadcast ? hdr_->head.load(std::memory_order_acquire)
                                                       : 0,
                      std::memory_order_relaxed);
  slot->messages.store(0, std::memory_order_relaxed);
  slot->lost.store(0, std::memory_order_relaxed);
  slot->start_time.store(0, std::memory_order_relaxed);
  slot->owner.store(static_cast<std::uint32_t>(self), std::memory_order_release);
  if (kind() == ChannelKind::broadcast) {
    // A producer's scan that missed the owner above may let it run up to `capacity` past
    // the head that scan saw, which can be later than the one read above: start at a head
    // read after the owner is visible. With the fence in Broadcast::room(), either the scan
    // sees this slot or this load sees the head it scanned at.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    slot->consume.store(hdr_->head.load(std::memory_order_relaxed), std::memory_order_release);
  }
  slot->start_time.store(os::process_start_time(self), std::memory_order_release);
  if (has(role, Role::producer)) {
    hdr_->producers.fetch_add(1);
    hdr_->producers_seen.fetch_add(1);
  }
  if (has(role, Role::consumer)) {
    hdr_->consumers.fetch_add(1);
    hdr_->consumers_seen.fetch_add(1);
  }
  me_ = slot;
  role_ = role;
  pid_ = self;
}

// A Ring's consumer takes position n when its slot's seq says n + 1, before the producer
// moves head past it; a producer that died in between left head short. Counting such slots
// keeps tail <= head (INV-RING-1) and the next message out of a slot already read.
void ChannelBase::settle_ring_head() noexcept {
  const std::uint64_t tail = hdr_->tail.load(std::memory_order_acquire);
  std::uint64_t head = std::max(hdr_->head.load(std::memory_order_acquire), tail);
  while (head - tail < capacity() && slot(head)->seq.load(std::memory_order_acquire) == head + 1) {
    ++head;
  }
  hdr_->head.store(head, std::memory_order_release);
}

void ChannelBase::leave() noexcept {
  if (me_ == nullptr) return;
  PeerSlot* slot = std::exchange(me_, nullptr);
  if (pid_ != os::getpid()) return;  // a forked child's copy: the slot is the parent's
  try {
    PeersLock lock(*hdr_, peers_, name_);
    repair(*slot, static_cast<Role>(slot->role), true);  // what this handle still held
    drop(*slot);
  } catch (const Error&) {
    // The table's lock is unusable: the slot stays; peers see a live process until it exits.
  }
  hdr_->not_empty.notify_all();  // waiters re-check closed()
  hdr_->not_full.notify_all();
}

std::uint32_t ChannelBase::reap() {
  if (hdr_ == nullptr) return 0;
  std::uint32_t dropped = 0;
  {
    PeersLock lock(*hdr_, peers_, name_);
    dropped = reap_locked();
  }
  if (dropped != 0) {
    hdr_->not_empty.notify_all();
    hdr_->not_full.notify_all();
  }
  return dropped;
}

std::uint32_t ChannelBase::reap_for_waiter(Role other) {
  if (hdr_ == nullptr) return 0;
  // In a Broadcast only the other side can hold a waiter up (a subscriber waits for the
  // producer, the producer for subscribers): with hundreds of subscribers, each looking at
  // all the others every 100 ms would cost subscribers² reads of /proc and queue them all on
  // peers_lock. In a Ring or a Queue a dead peer of either side can (a Queue slot a dead
  // producer left stops the consumers, then the producers). Looking needs no lock; a slot
  // that changes meanwhile is looked at again in 100 ms.
  const Role side = kind() == ChannelKind::broadcast ? other : Role::both;
  const std::int32_t self = os::getpid();
  for (std::uint32_t i = 0; i < max_peers_; ++i) {
    const PeerSlot& p = peers_[i];
    const auto pid = static_cast<std::int32_t>(p.owner.load(std::memory_order_acquire));
    if (pid != 0 && has(static_cast<Role>(p.role), side) && !owner_alive(p, pid, self)) {
      return reap();
    }
  }
  return 0;
}

std::uint32_t ChannelBase::reap_locked() {
  const std::int32_t self = os::getpid();
  std::uint32_t dropped = 0;
  for (std::uint32_t i = 0; i < max_peers_; ++i) {
    PeerSlot& p = peers_[i];
    const auto pid = static_cast<std::int32_t>(p.owner.load(std::memory_order_acquire));
    if (pid == 0 || owner_alive(p, pid, self)) continue;
    // A slot half-done by the dead peer whose repair must wait for a live peer to move on
    // keeps the dead one in the table for the next reap.
    if (!repair(p, static_cast<Role>(p.role), false)) continue;
    drop(p);
    hdr_->peer_deaths.fetch_add(1);
    ++dropped;
  }
  return dropped;
}

void ChannelBase::drop(PeerSlot& p) noexcept {
  const auto role = static_cast<Role>(p.role);
  if (has(role, Role::producer)) hdr_->producers.fetch_sub(1);
  if (has(role, Role::consumer)) hdr_->consumers.fetch_sub(1);
  p.owner.store(0, std::memory_order_release);
}

// Is position `claim` - 1 claimed by a live peer other than `dead`, through `field`?
bool ChannelBase::claimed_by_other(const PeerSlot& dead, std::atomic<std::uint64_t> PeerSlot::*field,
                                   std::uint64_t claim) const noexcept {
  const std::int32_t self = os::getpid();
  for (std::uint32_t i = 0; i < max_peers_; ++i) {
    const PeerSlot& p = peers_[i];
    if (&p == &dead) continue;
    const auto pid = static_cast<std::int32_t>(p.owner.load(std::memory_order_acquire));
    if (pid != 0 && (p.*field).load(std::memory_order_seq_cst) == claim && owner_alive(p, pid, self)) {
      return true;
    }
  }
  return false;
}

bool ChannelBase::repair(PeerSlot& p, Role role, bool own) {
  if (kind() != ChannelKind::queue) return true;  // Ring and Broadcast: nothing half-done to undo
  // A leaving handle's claims are positions it holds (a lost CAS is cleared before try_loan
  // and try_receive return): another peer showing the same claim lost that CAS just now,
  // and once this slot is dropped nobody would come back to repair it.
  if (has(role, Role::producer)) {
    // A position the peer took (head passed it) and never published: void it, so consumers
    // skip it. Another live claimant of the same position may be its real owner: wait.
    const std::uint64_t claim = p.produce.load(std::memory_order_seq_cst);
    if (claim != 0 && hdr_->head.load(std::memory_order_seq_cst) >= claim) {
      if (!own && claimed_by_other(p, &PeerSlot::produce, claim)) return false;
      const std::uint64_t pos = claim - 1;
      SlotHeader* s = slot(pos);
      if (s->seq.load(std::memory_order_acquire) == pos) {
        s->size = 0;
        s->flags = detail::kSlotVoid;
        s->seq.store(pos + 1, std::memory_order_release);
        hdr_->not_empty.notify_all();
      }
    }
    p.produce.store(0, std::memory_order_release);
  }
  if (has(role, Role::consumer)) {
    // A message the peer took (tail passed it) and never released: free its slot; the
    // message is lost with the peer.
    const std::uint64_t claim = p.consume.load(std::memory_order_seq_cst);
    if (claim != 0 && hdr_->tail.load(std::memory_order_seq_cst) >= claim) {
      if (!own && claimed_by_other(p, &PeerSlot::consume, claim)) return false;
      const std::uint64_t pos = claim - 1;
      SlotHeader* s = slot(pos);
      if (s->seq.load(std::memory_order_acquire) == pos + 1) {
        if ((s->flags & detail::kSlotBlock) != 0) free_block(payload(pos));
        const bool message = (s->flags & detail::kSlotVoid) == 0;
        s->seq.store(pos + capacity(), std::memory_order_release);
        if (message) hdr_->lost.fetch_add(1);
        hdr_->not_full.notify_all();
      }
    }
    p.consume.store(0, std::memory_order_release);
  }
  return true;
}

bool ChannelBase::closed() const noexcept {
  if (hdr_ == nullptr) return true;
  if (role_ == Role::consumer) {
    if (hdr_->producers_seen.load(std::memory_order_acquire) == 0 ||
        hdr_->producers.load(std::memory_order_acquire) != 0) {
      return false;
    }
    const std::uint64_t head = hdr_->head.load(std::memory_order_acquire);
    const std::uint64_t next = kind() == ChannelKind::broadcast && me_ != nullptr
                                   ? me_->consume.load(std::memory_order_relaxed)
                                   : hdr_->tail.load(std::memory_order_acquire);
    return next >= head;
  }
  if (role_ == Role::producer && kind() != ChannelKind::broadcast) {
    return hdr_->consumers_seen.load(std::memory_order_acquire) != 0 &&
           hdr_->consumers.load(std::memory_order_acquire) == 0;
  }
  return false;
}

namespace detail {

std::vector<ChannelPeer> peers_of(const ChannelHeader& h, const PeerSlot* peers,
                                  const PeerSlot* me) {
  std::vector<ChannelPeer> out;
  const std::int32_t self = os::getpid();
  for (std::uint32_t i = 0; i < h.max_peers; ++i) {
    const PeerSlot& p = peers[i];
    const auto pid = static_cast<std::int32_t>(p.owner.load(std::memory_order_acquire));
    if (pid == 0) continue;
    ChannelPeer c;
    c.pid = pid;
    c.role = valid_role(static_cast<Role>(p.role)) ? static_cast<Role>(p.role) : Role::none;
    c.alive = owner_alive(p, pid, self);
    c.self = &p == me;
    c.messages = p.messages.load(std::memory_order_relaxed);
    c.lost = p.lost.load(std::memory_order_relaxed);
    out.push_back(c);
  }
  return out;
}

ChannelStats stats_of(const ChannelHeader& h) noexcept {
  ChannelStats s;
  s.published = h.head.load(std::memory_order_acquire);
  s.peer_deaths = h.peer_deaths.load(std::memory_order_acquire);
  s.lost = h.lost.load(std::memory_order_acquire);
  s.producers = h.producers.load(std::memory_order_acquire);
  s.consumers = h.consumers.load(std::memory_order_acquire);
  return s;
}

}  // namespace detail

std::vector<ChannelPeer> ChannelBase::peers() const {
  if (hdr_ == nullptr) return {};
  return detail::peers_of(*hdr_, peers_, me_);
}

ChannelStats ChannelBase::stats() const noexcept {
  return hdr_ != nullptr ? detail::stats_of(*hdr_) : ChannelStats{};
}

std::size_t ChannelBase::size() const noexcept {
  if (hdr_ == nullptr) return 0;
  const std::uint64_t head = hdr_->head.load(std::memory_order_acquire);
  const std::uint64_t tail = kind() == ChannelKind::broadcast
                                 ? hdr_->min_tail.load(std::memory_order_acquire)
                                 : hdr_->tail.load(std::memory_order_acquire);
  return head > tail ? static_cast<std::size_t>(std::min<std::uint64_t>(head - tail, capacity())) : 0;
}

std::string ChannelBase::check() const {
  if (hdr_ == nullptr) return "no channel";
  if (std::string why = channel_header_problem(hdr_, bytes_, kind()); !why.empty()) return why;
  const std::uint64_t tail = hdr_->tail.load(std::memory_order_acquire);
  const std::uint64_t head = hdr_->head.load(std::memory_order_acquire);
  if (kind() != ChannelKind::broadcast && (tail > head || head - tail > capacity())) {
    return "counters out of range: head " + std::to_string(head) + ", tail " + std::to_string(tail);
  }
  std::uint32_t producers = 0, consumers = 0;
  for (std::uint32_t i = 0; i < max_peers_; ++i) {
    const PeerSlot& p = peers_[i];
    if (p.owner.load(std::memory_order_acquire) == 0) continue;
    if (!valid_role(static_cast<Role>(p.role))) return "peer " + std::to_string(i) + " has a bad role";
    producers += has(static_cast<Role>(p.role), Role::producer) ? 1 : 0;
    consumers += has(static_cast<Role>(p.role), Role::consumer) ? 1 : 0;
    if (kind() == ChannelKind::broadcast && p.consume.load() > head) {
      return "subscriber " + std::to_string(i) + " is ahead of the producer";
    }
  }
  if (producers != hdr_->producers.load() || consumers != hdr_->consumers.load()) {
    return "peer counts disagree with the table";
  }
  return "";
}

// ---- Waiting, blocks, errors ----

ChannelBase::Clock::time_point ChannelBase::deadline_after(std::chrono::nanoseconds timeout) noexcept {
  // Anything beyond a century is forever, and now() + it would overflow.
  if (timeout >= std::chrono::hours(24 * 365 * 100)) return Clock::time_point::max();
  return Clock::now() + timeout;
}

void ChannelBase::require_blocks(const char* op) const {
  if (arena_ == nullptr) throw Error(EINVAL, name_, op, "the channel is not in an arena");
  if (slot_size_ < sizeof(detail::BlockRef)) {
    throw Error(EINVAL, name_, op, "slots are smaller than 16 bytes");
  }
}

std::span<std::byte> ChannelBase::allocate_block(std::size_t size) {
  require_blocks("allocate a message block");
  return {static_cast<std::byte*>(arena_->allocate(size == 0 ? 1 : size)), size};
}

const std::byte* ChannelBase::resolve_block(const SlotHeader& s, const std::byte* p,
                                            std::size_t& size) const noexcept {
  detail::BlockRef ref{};
  if ((s.flags & detail::kSlotBlock) == 0 || arena_ == nullptr || slot_size_ < sizeof ref) {
    size = 0;  // not a block message this handle can read: an empty message, never a crash
    return p;
  }
  std::memcpy(&ref, p, sizeof ref);
  const std::size_t arena_size = arena_->size();
  if (ref.offset == 0 || ref.offset > arena_size || ref.size > arena_size - ref.offset) {
    size = 0;
    return p;
  }
  size = static_cast<std::size_t>(ref.size);
  return static_cast<const std::byte*>(arena_->base()) + ref.offset;
}

void ChannelBase::free_block(const std::byte* payload_bytes) noexcept {
  detail::BlockRef ref{};
  std::memcpy(&ref, payload_bytes, sizeof ref);
  if (arena_ == nullptr || ref.offset == 0 || ref.offset >= arena_->size()) return;
  arena_->deallocate(static_cast<std::byte*>(arena_->base()) + ref.offset);
}

std::size_t ChannelBase::copy_out(View v, std::span<std::byte> buffer) const {
  if (v.size > buffer.size()) {
    throw Error(EMSGSIZE, name_, "receive",
                "message of " + std::to_string(v.size) + " bytes, buffer of " +
                    std::to_string(buffer.size()));
  }
  if (v.size != 0) std::memcpy(buffer.data(), v.data, v.size);
  return v.size;
}

void ChannelBase::throw_too_big(std::size_t bytes) const {
  throw Error(EMSGSIZE, name_, "send",
              "message of " + std::to_string(bytes) + " bytes, slots of " +
                  std::to_string(slot_size_) +
                  (arena_ != nullptr ? "" : " (a channel in an arena sends larger ones as blocks)"));
}

void ChannelBase::throw_no_role(const char* op) const {
  throw Error(EPERM, name_, op,
              hdr_ == nullptr ? "no channel" : "this handle did not join with that role");
}

}  // namespace shmkit
