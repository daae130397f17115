// SPDX-License-Identifier: MIT
// Arena lifecycle: create, join, validate, initialise exactly once, users, root datum.
//
// Create-or-join is race-free through init_lock, a robust Mutex at a fixed place in the
// header whose zero bytes are a valid unlocked mutex: whoever holds it and finds the arena not
// ready initialises it; everyone else waits on it. A dead initialiser leaves the lock marked,
// and the next holder initialises again from zero.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>

#include "arena/impl.hpp"
#include "os/os.hpp"

namespace shmkit {

using namespace arena;
using detail::ArenaImpl;
using detail::ArenaLock;

namespace {

std::atomic<std::uint64_t> next_uid{1};

constexpr std::uint64_t kMinPages = 2;  // an arena holds at least this many pages of data

std::uint64_t round_up(std::uint64_t v, std::uint64_t to) { return (v + to - 1) / to * to; }

std::uint64_t default_max(const ArenaConfig& c) {
  if (c.max_size != 0) return std::max<std::uint64_t>(c.max_size, c.size);
  if (!c.autogrow) return c.size;
  return sizeof(void*) == 8 ? std::uint64_t{1} << 30 : std::uint64_t{256} << 20;
}

struct Geometry {
  std::uint64_t max_size;
  std::uint32_t max_users, max_heaps;
  std::uint32_t max_pages, meta_pages, users_offset, heaps_offset, page_map_offset;
  std::uint64_t min_size;
};

Geometry geometry(const ArenaConfig& c, const std::string& label) {
  Geometry g{};
  g.max_size = round_up(default_max(c), kPageSize);
  // Users and threads the config leaves at 0 scale with the arena, so that its metadata
  // stays near 1 % of it: a fixed arena by its size, a growing one as if 16 MiB at least.
  const std::uint64_t basis =
      c.autogrow && g.max_size > c.size ? std::max<std::uint64_t>(c.size, 16u << 20) : c.size;
  g.max_users = c.max_users != 0 ? c.max_users
                                 : static_cast<std::uint32_t>(std::clamp<std::uint64_t>(basis >> 15, 8, 64));
  g.max_heaps = c.max_threads != 0
                    ? c.max_threads
                    : static_cast<std::uint32_t>(std::clamp<std::uint64_t>(basis >> 16, 4, 256));
  if (g.max_users > 65535 || g.max_heaps > 65534) {
    throw Error(EINVAL, label, "create", "max_users is 1..65535 and max_threads 1..65534");
  }
  if ((g.max_size >> kPageShift) > 0xffffffffull) {
    throw Error(EINVAL, label, "create", "max_size is too large");
  }
  g.max_pages = static_cast<std::uint32_t>(g.max_size >> kPageShift);
  g.users_offset = sizeof(ArenaHeader);
  g.heaps_offset = g.users_offset + g.max_users * static_cast<std::uint32_t>(sizeof(UserSlot));
  g.page_map_offset = g.heaps_offset + g.max_heaps * static_cast<std::uint32_t>(sizeof(HeapSlot));
  const std::uint64_t meta = round_up(std::uint64_t{g.page_map_offset} + g.max_pages, kPageSize);
  g.meta_pages = static_cast<std::uint32_t>(meta >> kPageShift);
  g.min_size = meta + kMinPages * kPageSize;
  if (g.min_size > g.max_size) {
    throw Error(EINVAL, label, "create",
                "max_size " + std::to_string(g.max_size) + " is below the " +
                    std::to_string(g.min_size) + " bytes this many users and threads need");
  }
  return g;
}

}  // namespace

// Foreign bytes: every field is checked before it is used.
void detail::validate_header(const ArenaHeader& h, std::uint64_t segment_size,
                             const std::string& label) {
  const auto bad = [&](const std::string& why) { return Error(EINVAL, label, "open", why); };
  if (h.magic != kMagic) throw bad("not a shmkit arena (no arena header)");
  if (h.version != kFormatVersion) {
    throw bad("arena format version " + std::to_string(h.version) + "; this library reads " +
              std::to_string(kFormatVersion));
  }
  if (h.fingerprint != layout_fingerprint()) {
    throw bad("the arena was made by a build with another memory layout");
  }
  const std::uint64_t size = h.size.load(std::memory_order_acquire);
  if (h.max_users == 0 || h.max_users > 65535 || h.max_heaps == 0 || h.max_heaps > 65534 ||
      h.max_pages == 0 || h.max_size != std::uint64_t{h.max_pages} << kPageShift ||
      h.users_offset != sizeof(ArenaHeader) ||
      h.heaps_offset != h.users_offset + std::uint64_t{h.max_users} * sizeof(UserSlot) ||
      h.page_map_offset != h.heaps_offset + std::uint64_t{h.max_heaps} * sizeof(HeapSlot) ||
      std::uint64_t{h.meta_pages} << kPageShift <
          std::uint64_t{h.page_map_offset} + h.max_pages ||
      size < (std::uint64_t{h.meta_pages} << kPageShift) || size > h.max_size ||
      size % kPageSize != 0) {
    throw bad("the arena header is corrupted");
  }
  if (segment_size < size) throw bad("the arena is truncated");
}

// ---- Users ----

namespace detail {

void ArenaImpl::join() {
  ArenaLock lock(*this);
  UserSlot* slots = users();
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (std::uint32_t i = 0; i < header->max_users; ++i) {
      if (slots[i].active.load(std::memory_order_acquire) != 0) continue;
      slots[i].pid = os::getpid();
      slots[i].start_time = os::process_start_time(slots[i].pid);
      slots[i].joined_ns = static_cast<std::uint64_t>(os::realtime_ns());
      slots[i].heaps.store(0, std::memory_order_relaxed);
      slots[i].active.store(1, std::memory_order_release);
      header->users.fetch_add(1, std::memory_order_relaxed);
      user = i + 1;
      pid = slots[i].pid;
      return;
    }
    if (recover_dead() == 0) break;
  }
  throw Error(EUSERS, label(), "join",
              "the arena has " + std::to_string(header->max_users) + " users, its maximum");
}

void ArenaImpl::leave() noexcept {
  // A forked child closing an inherited handle it never used: the heaps and the user slot
  // are its parent's, not its own.
  if (pid != os::getpid()) return;
  release_heaps();
  if (user == 0) return;
  ArenaLock lock(*this);
  users()[user - 1].active.store(0, std::memory_order_release);
  header->users.fetch_sub(1, std::memory_order_relaxed);
  user = 0;
}

std::uint32_t ArenaImpl::recover_dead() noexcept {
  std::uint32_t recovered = 0;
  UserSlot* slots = users();
  const std::int32_t self = os::getpid();
  for (std::uint32_t i = 0; i < header->max_users; ++i) {
    if (slots[i].active.load(std::memory_order_acquire) == 0 || slots[i].pid == self) continue;
    if (os::process_start_time(slots[i].pid) == slots[i].start_time &&
        slots[i].start_time != 0) {
      continue;  // alive
    }
    // Dead: its heaps become adoptable, with every span and block they hold, their counts
    // repaired (a thread killed mid-operation may have left one off).
    for (std::uint32_t k = 0; k < header->max_heaps; ++k) {
      HeapSlot* h = heap(k);
      if (h->user == i + 1 && h->owner_tid.load(std::memory_order_relaxed) != 0) {
        repair_heap_spans(k);
        h->owner_tid.store(0, std::memory_order_release);
        header->abandoned.fetch_add(1, std::memory_order_relaxed);
      }
    }
    slots[i].heaps.store(0, std::memory_order_relaxed);
    slots[i].active.store(0, std::memory_order_release);
    header->users.fetch_sub(1, std::memory_order_relaxed);
    ++recovered;
  }
  // A heap whose owner died between claiming it and recording its user names no live user.
  for (std::uint32_t k = 0; k < header->max_heaps; ++k) {
    HeapSlot* h = heap(k);
    const std::uint32_t tid = h->owner_tid.load(std::memory_order_acquire);
    if (tid == 0) continue;
    const std::uint32_t u = h->user;
    const bool user_active = u != 0 && u <= header->max_users &&
                             slots[u - 1].active.load(std::memory_order_acquire) != 0;
    if (!user_active && !os::thread_alive(static_cast<std::int32_t>(tid))) {
      repair_heap_spans(k);
      h->owner_tid.store(0, std::memory_order_release);
      header->abandoned.fetch_add(1, std::memory_order_relaxed);
      ++recovered;
    }
  }
  return recovered;
}

void ArenaImpl::repair_heap_spans(std::uint32_t index) noexcept {
  const std::uint32_t pages = pages_now();
  for (std::uint32_t p = header->meta_pages; p < pages; ++p) {
    if (page_kind(p).load(std::memory_order_acquire) != static_cast<std::uint8_t>(PageKind::span)) {
      continue;
    }
    SpanHeader* s = span(p);
    if (s->heap == index + 1 && s->magic == (kSpanMagic ^ p) && s->size_class < kClasses &&
        s->capacity <= span_capacity(s->size_class, s->pages)) {
      recount_span(*this, s, p);
    }
  }
}

void ArenaImpl::ensure_joined() {
  if (pid == os::getpid()) return;
  // A child that inherited this handle across fork(): the parent's slot and heaps are the
  // parent's. Join as a user of our own.
  user = 0;
  {
    std::lock_guard guard(heaps_mutex);
    heaps.clear();
  }
  join();
}

}  // namespace detail

// ---- Creating and joining ----

namespace {

// Formats the arena (under init_lock) and runs `init`.
void initialise(ArenaImpl& a, const ArenaConfig& c, const Geometry& g, const Arena::Init& init,
                Arena& handle) {
  ArenaHeader& h = *a.header;
  h.magic = kMagic;  // first: from now on others see an arena being made
  h.state.store(static_cast<std::uint32_t>(ArenaState::initializing), std::memory_order_release);
  // A dead initialiser may have left anything past the locks: clear the metadata.
  std::memset(reinterpret_cast<std::byte*>(&h) + offsetof(ArenaHeader, init_lock) + sizeof(Mutex),
              0, (std::uint64_t{g.meta_pages} << kPageShift) - offsetof(ArenaHeader, init_lock) -
                     sizeof(Mutex));
  std::memset(reinterpret_cast<std::byte*>(&h) + 8, 0, offsetof(ArenaHeader, init_lock) - 8);
  h.magic = kMagic;
  h.state.store(static_cast<std::uint32_t>(ArenaState::initializing), std::memory_order_relaxed);
  h.version = kFormatVersion;
  h.fingerprint = layout_fingerprint();
  h.flags = (c.autogrow ? kFlagAutogrow : 0) | (c.metering ? kFlagMetering : 0);
  h.max_users = g.max_users;
  h.max_heaps = g.max_heaps;
  h.meta_pages = g.meta_pages;
  h.max_pages = g.max_pages;
  h.users_offset = g.users_offset;
  h.heaps_offset = g.heaps_offset;
  h.page_map_offset = g.page_map_offset;
  h.mode = c.mode;
  h.max_size = g.max_size;
  h.attach_address = c.attach_address != nullptr || c.same_address
                         ? reinterpret_cast<std::uintptr_t>(a.base)
                         : 0;
  h.created_ns = static_cast<std::uint64_t>(os::realtime_ns());
  h.size.store(std::min<std::uint64_t>(a.segment.size() / kPageSize * kPageSize, g.max_size),
               std::memory_order_release);
  for (std::uint32_t p = 0; p < g.meta_pages; ++p) {
    a.page_kind(p).store(static_cast<std::uint8_t>(PageKind::meta), std::memory_order_relaxed);
  }
  a.setup_classes();
  a.repair_pages();  // every data page is one free run
  if (c.metering) {
    h.arena_lock.set_metering(true);
    h.directory_lock.set_metering(true);
  }
  a.join();
  a.created = true;
  if (init) init(handle);
  h.state.store(static_cast<std::uint32_t>(ArenaState::ready), std::memory_order_release);
}

bool header_is_zero(const ArenaHeader& h) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(&h);
  return std::all_of(bytes, bytes + offsetof(ArenaHeader, init_lock),
                     [](unsigned char b) { return b == 0; });
}

}  // namespace

struct ArenaAccess {
  // Maps `segment` as an arena: creating (may_create) or only joining. Takes init_lock.
  static Arena attach(Segment segment, const ArenaConfig* config, const Arena::Init& init) {
    Arena arena;
    auto* impl = new ArenaImpl;
    arena.impl_ = impl;
    impl->segment = std::move(segment);
    impl->base = static_cast<std::byte*>(impl->segment.data());
    impl->header = reinterpret_cast<ArenaHeader*>(impl->base);
    impl->uid = next_uid.fetch_add(1, std::memory_order_relaxed);
    impl->pid = os::getpid();
    const std::string label = impl->label();
    if (impl->segment.size() < sizeof(ArenaHeader)) {
      throw Error(EINVAL, label, "open", "too small to be an arena");
    }
    ArenaHeader& h = *impl->header;
    // Never lock a mutex made of foreign bytes: an arena has its magic written first thing.
    if (h.magic != kMagic && !(config != nullptr && header_is_zero(h))) {
      throw Error(EINVAL, label, "open", "not a shmkit arena (no arena header)");
    }
    detail::register_impl(impl);
    {
      ArenaLock lock(h.init_lock);
      const auto state = static_cast<ArenaState>(h.state.load(std::memory_order_acquire));
      if (state == ArenaState::ready) {
        // Another process may have grown the arena since we mapped it: the file is extended
        // before the header's size is, so look at the file again.
        (void)impl->segment.refresh();
        detail::validate_header(h, impl->segment.size(), label);
        impl->setup_classes();
        impl->join();
      } else if (config != nullptr) {
        // Empty, or its initialiser died (or threw): initialise from zero.
        initialise(*impl, *config, geometry(*config, label), init, arena);
      } else {
        throw Error(EINVAL, label, "open", "the arena was never initialised");
      }
    }
    return arena;
  }
};

namespace {

// The arena's own header asks for at most this mapping, at this address.
bool mapped_as_asked(const Arena& arena) {
  const ArenaHeader& h = *static_cast<const ArenaHeader*>(arena.base());
  return h.max_size <= arena.segment().reserved() &&
         (h.attach_address == 0 ||
          h.attach_address == reinterpret_cast<std::uintptr_t>(arena.base()));
}

}  // namespace

namespace {

// System V segments cannot grow: an arena there is as large as it starts.
ArenaConfig fitted(std::string_view name, const ArenaConfig& config) {
  ArenaConfig c = config;
  const auto parsed = Name::try_parse(name);
  if (parsed && parsed->ns == Namespace::sysv) {
    c.max_size = c.size;
    c.autogrow = false;
  }
  return c;
}

// How a new arena's segment is made: its settings fitted to the namespace, its layout, and
// the segment options (reserving the maximum, so that growth never moves it).
struct Plan {
  ArenaConfig config;
  Geometry geometry;
  CreateOptions options;
  std::size_t size;  // initial bytes
};

Plan plan_for(std::string_view name, const ArenaConfig& wanted) {
  Plan p{fitted(name, wanted), {}, {}, 0};
  p.geometry = geometry(p.config, name.empty() ? "(anonymous)" : std::string(name));
  p.options.mode = p.config.mode;
  p.options.reserve = static_cast<std::size_t>(p.geometry.max_size);
  p.options.address = p.config.attach_address;
  p.size = static_cast<std::size_t>(std::min<std::uint64_t>(
      std::max<std::uint64_t>(round_up(p.config.size, kPageSize), p.geometry.min_size),
      p.geometry.max_size));
  return p;
}

}  // namespace

Arena Arena::create(std::string_view name, const ArenaConfig& wanted, const Init& init) {
  const Plan p = plan_for(name, wanted);
  Segment seg = Segment::create(name, p.size, p.options);
  seg.set_remove_on_close(true);  // until initialised: a failed create leaves nothing
  Arena a = ArenaAccess::attach(std::move(seg), &p.config, init);
  a.impl_->segment.set_remove_on_close(false);
  return a;
}

Arena Arena::open_or_create(std::string_view name, const ArenaConfig& wanted, const Init& init) {
  const Plan p = plan_for(name, wanted);
  Arena arena = ArenaAccess::attach(Segment::open_or_create(name, p.size, p.options), &p.config, init);
  // Joined an arena made elsewhere with a larger maximum, or pinned to another address:
  // map it again as it asks (its header is complete now that it is ready).
  if (arena.created() || mapped_as_asked(arena)) return arena;
  arena.close();
  return Arena::open(name);
}

Arena Arena::open(std::string_view name) {
  // Map what is there, read the maximum size and address from the header, then map that.
  // The header is read before the arena is known to be ready; if it changed meanwhile,
  // map once more.
  for (int attempt = 0;; ++attempt) {
    Segment probe = Segment::open(name);
    if (probe.size() < sizeof(ArenaHeader)) {
      throw Error(EINVAL, std::string(name), "open", "too small to be an arena");
    }
    const auto* h = static_cast<const ArenaHeader*>(probe.data());
    if (h->magic != kMagic) {
      throw Error(EINVAL, std::string(name), "open", "not a shmkit arena (no arena header)");
    }
    // Foreign bytes decide how much to map: check them before they reach mmap.
    const std::uint64_t max = h->max_size;
    if (max == 0 || max % kPageSize != 0 || max > (std::uint64_t{1} << 46) ||
        max > std::numeric_limits<std::size_t>::max() ||
        h->attach_address % os::page_size() != 0) {
      throw Error(EINVAL, std::string(name), "open", "the arena header is corrupted");
    }
    OpenOptions o;
    o.reserve = static_cast<std::size_t>(std::max<std::uint64_t>(max, probe.size()));
    o.address = reinterpret_cast<void*>(static_cast<std::uintptr_t>(h->attach_address));
    probe.close();
    Arena arena = ArenaAccess::attach(Segment::open(name, o), nullptr, {});
    if (mapped_as_asked(arena) || attempt == 1) return arena;
    arena.close();
  }
}

Arena Arena::create_anonymous(const ArenaConfig& config, const Init& init) {
  const Plan p = plan_for({}, config);
  return ArenaAccess::attach(Segment::create_anonymous(p.size, p.options), &p.config, init);
}

void Arena::remove(std::string_view name) { Segment::remove(name); }

// ---- The handle ----

Arena::Arena() noexcept = default;
Arena::~Arena() {
  if (impl_ == nullptr) return;
  try {
    close();
  } catch (const Error& e) {
    report_error(e);
  }
}
Arena::Arena(Arena&& other) noexcept : impl_(std::exchange(other.impl_, nullptr)) {}
Arena& Arena::operator=(Arena&& other) noexcept {
  if (this != &other) {
    Arena dying(std::move(*this));
    impl_ = std::exchange(other.impl_, nullptr);
  }
  return *this;
}

void Arena::close() {
  ArenaImpl* impl = std::exchange(impl_, nullptr);
  if (impl == nullptr) return;
  impl->leave();
  detail::unregister_impl(impl);
  Segment seg = std::move(impl->segment);
  delete impl;
  seg.close();
}

bool Arena::created() const noexcept { return impl_ != nullptr && impl_->created; }
const Name& Arena::name() const noexcept { return impl_->segment.name(); }
void* Arena::base() const noexcept { return impl_->base; }
std::size_t Arena::size() const noexcept {
  return static_cast<std::size_t>(impl_->header->size.load(std::memory_order_acquire));
}
std::size_t Arena::max_size() const noexcept { return static_cast<std::size_t>(impl_->header->max_size); }
const Segment& Arena::segment() const noexcept { return impl_->segment; }

// ---- Offsets and the root datum ----

std::uint64_t Arena::offset_of(const void* p) const {
  if (p == nullptr) return 0;
  const auto* b = static_cast<const std::byte*>(p);
  if (b < impl_->base || b >= impl_->base + impl_->header->max_size) {
    throw Error(EINVAL, impl_->label(), "offset", "the pointer is not in the arena");
  }
  return static_cast<std::uint64_t>(b - impl_->base);
}

void* Arena::at(std::uint64_t offset) const {
  if (offset == 0) return nullptr;
  if (offset >= impl_->header->size.load(std::memory_order_acquire)) {
    throw Error(EINVAL, impl_->label(), "offset", "past the end of the arena");
  }
  return impl_->base + offset;
}

void* Arena::root() const noexcept {
  const std::uint64_t off = impl_->header->root.load(std::memory_order_acquire);
  return off == 0 ? nullptr : impl_->base + off;
}

void Arena::set_root(void* p) { impl_->header->root.store(offset_of(p), std::memory_order_release); }

bool Arena::compare_exchange_root(void*& expected, void* desired) {
  std::uint64_t want = offset_of(expected);
  const bool ok = impl_->header->root.compare_exchange_strong(
      want, offset_of(desired), std::memory_order_acq_rel, std::memory_order_acquire);
  if (!ok) expected = want == 0 ? nullptr : impl_->base + want;
  return ok;
}

// ---- Allocation ----

void* Arena::allocate_zeroed(std::size_t size, std::size_t align) {
  void* p = allocate(size, align);
  std::memset(p, 0, size);
  return p;
}

void* Arena::try_allocate_zeroed(std::size_t size, std::size_t align) noexcept {
  void* p = try_allocate(size, align);
  if (p != nullptr) std::memset(p, 0, size);
  return p;
}

void* Arena::try_reallocate(void* p, std::size_t size) noexcept {
  if (p == nullptr) return try_allocate(size);
  try {
    const std::size_t have = impl_->block_size(p);
    if (size <= have) return p;
    if (impl_->grow_in_place(p, size)) return p;
    void* q = impl_->allocate(size, 16);
    if (q == nullptr) return nullptr;
    std::memcpy(q, p, have);
    impl_->deallocate(p);
    return q;
  } catch (const Error& e) {
    report_error(e);
    return nullptr;
  }
}

void* Arena::reallocate(void* p, std::size_t size) {
  if (p != nullptr) (void)impl_->block_size(p);  // throws for a foreign pointer
  void* q = try_reallocate(p, size);
  if (q == nullptr) {
    throw Error(ENOMEM, impl_->label(), "reallocate", "no room for " + std::to_string(size) + " bytes");
  }
  return q;
}

std::size_t Arena::block_size(const void* p) const { return impl_->block_size(p); }


void Arena::set_grow_step(std::size_t bytes) noexcept {
  impl_->header->grow_step.store(bytes, std::memory_order_relaxed);
}

std::size_t Arena::grow_step() const noexcept {
  return static_cast<std::size_t>(impl_->header->grow_step.load(std::memory_order_relaxed));
}

std::vector<ArenaUser> Arena::users() {
  std::vector<ArenaUser> out;
  ArenaLock lock(*impl_);
  const UserSlot* slots = impl_->users();
  for (std::uint32_t i = 0; i < impl_->header->max_users; ++i) {
    if (slots[i].active.load(std::memory_order_acquire) == 0) continue;
    ArenaUser u;
    u.pid = slots[i].pid;
    u.alive = slots[i].start_time != 0 && os::process_start_time(u.pid) == slots[i].start_time;
    u.self = impl_->user == i + 1 && impl_->pid == os::getpid();
    u.joined_ns = slots[i].joined_ns;
    u.heaps = slots[i].heaps.load(std::memory_order_relaxed);
    out.push_back(u);
  }
  return out;
}

std::uint32_t Arena::recover() {
  ArenaLock lock(*impl_);
  return impl_->recover_dead();
}

// ---- For Allocator<T> ----

void* detail::arena_allocate(const void* arena_base, std::size_t size, std::size_t align) {
  ArenaImpl* impl = find_impl_by_base(arena_base);
  void* p = impl != nullptr ? impl->allocate(size, align) : nullptr;
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void detail::arena_deallocate(const void* arena_base, void* p) noexcept {
  if (p == nullptr) return;
  ArenaImpl* impl = find_impl_by_base(arena_base);
  if (impl == nullptr) return;
  try {
    impl->deallocate(p);
  } catch (const Error& e) {
    report_error(e);
  }
}

}  // namespace shmkit
