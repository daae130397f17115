// SPDX-License-Identifier: MIT
// Named objects: an open-addressing hash table in the arena, guarded by directory_lock.
//
// construct() inserts its entry as "constructing" and keeps the lock until the constructor
// has returned, so no other thread or process ever sees a half-built object; if the
// constructing process dies, the next holder of the (robust) lock removes the entry.
#include <cerrno>
#include <chrono>
#include <cstring>

#include "arena/impl.hpp"
#include "shmkit/detail/type_id.hpp"

namespace shmkit {

using namespace arena;
using detail::ArenaImpl;

namespace {

constexpr std::size_t kMaxName = 255;

DirEntry* entries(DirTable* t) { return reinterpret_cast<DirEntry*>(t + 1); }

// The table, checked: its offset and capacity are bytes another process wrote.
DirTable* table(ArenaImpl& a) {
  const std::uint64_t off = a.header->directory.load(std::memory_order_acquire);
  if (off == 0) return nullptr;
  const std::uint64_t size = a.header->size.load(std::memory_order_acquire);
  const std::uint64_t meta = std::uint64_t{a.header->meta_pages} << kPageShift;
  auto* t = reinterpret_cast<DirTable*>(a.base + off);
  if (off < meta || off % 16 != 0 || off + sizeof(DirTable) > size || t->capacity == 0 ||
      (t->capacity & (t->capacity - 1)) != 0 ||
      off + sizeof(DirTable) + std::uint64_t{t->capacity} * sizeof(DirEntry) > size ||
      t->count > t->capacity) {
    throw Error(EINVAL, a.label(), "directory", "the named-object table is corrupted");
  }
  return t;
}

bool same_name(ArenaImpl& a, const DirEntry& e, std::uint64_t hash, std::string_view name) {
  if (e.hash != hash || e.name_len != name.size()) return false;
  if (e.name + e.name_len > a.header->size.load(std::memory_order_acquire) || e.name == 0) {
    throw Error(EINVAL, a.label(), "directory", "a named object's entry is corrupted");
  }
  return std::memcmp(a.base + e.name, name.data(), name.size()) == 0;
}

void free_quietly(ArenaImpl& a, std::uint64_t offset) noexcept {
  try {
    a.deallocate(a.base + offset);
  } catch (const Error& e) {
    report_error(e);
  }
}

void drop(ArenaImpl& a, DirTable* t, DirEntry& e) noexcept {
  free_quietly(a, e.object);
  free_quietly(a, e.name);
  e.state = static_cast<std::uint32_t>(DirState::removed);
  --t->count;
  ++t->removed;
}

// Takes directory_lock; a dead holder's half-built entries are removed.
void lock_directory(ArenaImpl& a) {
  Mutex& m = a.header->directory_lock;
  for (;;) {
    const LockStatus st = m.acquire_for(std::chrono::milliseconds(200));
    if (st == LockStatus::acquired) return;
    if (st == LockStatus::owner_died) {
      try {
        if (DirTable* t = table(a)) {
          for (std::uint32_t i = 0; i < t->capacity; ++i) {
            if (entries(t)[i].state == static_cast<std::uint32_t>(DirState::constructing)) {
              drop(a, t, entries(t)[i]);
            }
          }
        }
      } catch (const Error&) {
        // A corrupted table: every later use reports it; nothing to repair here.
      }
      m.mark_consistent();
      return;
    }
    if (st == LockStatus::timed_out) {
      (void)m.break_if_owner_gone();
      continue;
    }
    m.reset();
  }
}

// Holds directory_lock until destroyed, unless keep() hands it on (to named_done()).
class DirLock {
 public:
  explicit DirLock(ArenaImpl& a) : a_(a) { lock_directory(a); }
  ~DirLock() {
    if (held_) a_.header->directory_lock.unlock();
  }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;
  void keep() noexcept { held_ = false; }

 private:
  ArenaImpl& a_;
  bool held_ = true;
};

// Finds `name`: its entry, or the slot where it would go (nullptr when the table is full).
DirEntry* probe(ArenaImpl& a, DirTable* t, std::uint64_t hash, std::string_view name, bool& found) {
  found = false;
  if (t == nullptr) return nullptr;
  DirEntry* slot = nullptr;
  const std::uint32_t mask = t->capacity - 1;
  for (std::uint32_t i = 0, at = static_cast<std::uint32_t>(hash) & mask; i < t->capacity;
       ++i, at = (at + 1) & mask) {
    DirEntry& e = entries(t)[at];
    const auto st = static_cast<DirState>(e.state);
    if (st == DirState::empty) return slot != nullptr ? slot : &e;
    if (st == DirState::removed) {
      if (slot == nullptr) slot = &e;
      continue;
    }
    if (same_name(a, e, hash, name)) {
      found = true;
      return &e;
    }
  }
  return slot;
}

// Doubles the table (or makes the first one) when it is 70 % full.
void make_room(ArenaImpl& a, const std::string& label) {
  DirTable* t = table(a);
  if (t != nullptr && (std::uint64_t{t->count} + t->removed + 1) * 10 < std::uint64_t{t->capacity} * 7) {
    return;
  }
  const std::uint32_t capacity = t == nullptr ? 16 : (t->count * 2 + 16 > t->capacity ? t->capacity * 2 : t->capacity);
  const std::size_t bytes = sizeof(DirTable) + std::size_t{capacity} * sizeof(DirEntry);
  auto* n = static_cast<DirTable*>(a.allocate(bytes, 64));
  if (n == nullptr) throw Error(ENOMEM, label, "name", "no room for the directory");
  std::memset(n, 0, bytes);
  n->capacity = capacity;
  if (t != nullptr) {
    for (std::uint32_t i = 0; i < t->capacity; ++i) {
      const DirEntry& e = entries(t)[i];
      if (e.state != static_cast<std::uint32_t>(DirState::live)) continue;
      std::uint32_t at = static_cast<std::uint32_t>(e.hash) & (capacity - 1);
      while (entries(n)[at].state != 0) at = (at + 1) & (capacity - 1);
      entries(n)[at] = e;
      ++n->count;
    }
  }
  a.header->directory.store(static_cast<std::uint64_t>(reinterpret_cast<std::byte*>(n) - a.base),
                            std::memory_order_release);
  if (t != nullptr) free_quietly(a, static_cast<std::uint64_t>(reinterpret_cast<std::byte*>(t) - a.base));
}

void check_name(std::string_view name, const std::string& label) {
  if (name.empty() || name.size() > kMaxName) {
    throw Error(EINVAL, label, "name", "an object name has 1 to 255 bytes");
  }
}

}  // namespace

std::pair<void*, bool> Arena::named(std::string_view name, std::uint64_t type, std::size_t size,
                                    std::size_t align, bool create) {
  ArenaImpl& a = *impl_;
  const std::string label(name);
  check_name(name, label);
  const std::uint64_t hash = detail::fnv1a(name);
  DirLock lock(a);
  bool found = false;
  DirEntry* e = probe(a, table(a), hash, name, found);
  if (found) {
    if (e->type != type) throw Error(EINVAL, label, "find", "the object was made as another type");
    return {a.base + e->object, false};
  }
  if (!create) return {nullptr, false};
  make_room(a, label);
  e = probe(a, table(a), hash, name, found);
  void* object = a.allocate(size == 0 ? 1 : size, align < 16 ? 16 : align);
  void* copy = object != nullptr ? a.allocate(name.size(), 16) : nullptr;
  if (copy == nullptr) {
    if (object != nullptr) a.deallocate(object);
    throw Error(ENOMEM, label, "construct", "no room in the arena");
  }
  std::memcpy(copy, name.data(), name.size());
  DirTable* t = table(a);
  if (e->state == static_cast<std::uint32_t>(DirState::removed)) --t->removed;
  e->hash = hash;
  e->type = type;
  e->object = static_cast<std::uint64_t>(static_cast<std::byte*>(object) - a.base);
  e->name = static_cast<std::uint64_t>(static_cast<std::byte*>(copy) - a.base);
  e->name_len = static_cast<std::uint32_t>(name.size());
  e->size = size;
  e->state = static_cast<std::uint32_t>(DirState::constructing);
  ++t->count;
  a.pending_entry = static_cast<std::uint64_t>(reinterpret_cast<std::byte*>(e) - a.base);
  lock.keep();  // held until named_done(): nobody sees the object before it is built
  return {object, true};
}

void Arena::named_done(bool built) noexcept {
  ArenaImpl& a = *impl_;
  auto* e = reinterpret_cast<DirEntry*>(a.base + a.pending_entry);
  if (built) {
    e->state = static_cast<std::uint32_t>(DirState::live);
  } else {
    drop(a, table(a), *e);
  }
  a.pending_entry = 0;
  a.header->directory_lock.unlock();
}

void* Arena::detach(std::string_view name, std::uint64_t type) {
  ArenaImpl& a = *impl_;
  const std::string label(name);
  check_name(name, label);
  DirLock lock(a);
  bool found = false;
  DirTable* t = table(a);
  DirEntry* e = probe(a, t, detail::fnv1a(name), name, found);
  if (!found) return nullptr;
  if (e->type != type) throw Error(EINVAL, label, "destroy", "the object was made as another type");
  // The entry goes first, under the lock: of processes destroying the same name at once,
  // exactly one gets the object.
  void* object = a.base + e->object;
  free_quietly(a, e->name);
  e->state = static_cast<std::uint32_t>(DirState::removed);
  --t->count;
  ++t->removed;
  return object;
}

std::vector<std::string> Arena::names() {
  ArenaImpl& a = *impl_;
  std::vector<std::string> out;
  DirLock lock(a);
  if (DirTable* t = table(a)) {
    for (std::uint32_t i = 0; i < t->capacity; ++i) {
      const DirEntry& e = entries(t)[i];
      if (e.state == static_cast<std::uint32_t>(DirState::live) && e.name != 0 &&
          e.name + e.name_len <= a.header->size.load(std::memory_order_acquire)) {
        out.emplace_back(reinterpret_cast<const char*>(a.base + e.name), e.name_len);
      }
    }
  }
  return out;
}

}  // namespace shmkit
