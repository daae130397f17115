// SPDX-License-Identifier: MIT
// Arena: a shared segment with a header, a table of users, a fast allocator, a root datum and
// named objects — IRIX's shared arena (usinit / usmalloc / usputinfo), done for Linux.
//
// Any number of unrelated processes create-or-join an arena by name; exactly one of them runs
// the initialiser, and the others return only once it has finished. Each thread allocates from
// its own cache of spans kept inside the arena, so the fast path takes no lock and makes no
// system call; a block may be freed by any thread of any process. The arena maps its whole
// maximum size up front, so it grows (in any process) without ever moving: a pointer into it
// stays valid in the process that made it. Across processes, pass offsets (offset_of / at,
// Offset<T>) or store self-relative Ptr<T> — never raw pointers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "shmkit/detail/config.hpp"
#include "shmkit/detail/type_id.hpp"
#include "shmkit/error.hpp"
#include "shmkit/name.hpp"
#include "shmkit/offset_ptr.hpp"

namespace shmkit {

class Segment;
struct ArenaAccess;

/// Settings for a new arena (IRIX usconfig). Stored in its header: open() reads them.
/// In System V (which cannot grow) the arena keeps the size it starts with.
struct ArenaConfig {
  std::size_t size = std::size_t{1} << 20;  ///< initial bytes (at least metadata + 2 pages)
  std::size_t max_size = 0;          ///< 0: 1 GiB with autogrow (256 MiB in 32-bit), else size
  bool autogrow = true;              ///< grow when full, up to max_size
  /// Processes joined at once; 0: scaled to the arena, one per 32 KiB from 8 (256 KiB and
  /// less) to 64 (2 MiB and up, and every growing arena).
  std::uint32_t max_users = 0;
  /// Threads allocating at once (a heap of 384 bytes each); 0: scaled to the arena, one per
  /// 64 KiB from 4 (256 KiB and less) to 256 (16 MiB and up, and every growing arena).
  std::uint32_t max_threads = 0;
  std::uint32_t mode = 0600;         ///< permission bits of the segment
  bool metering = false;             ///< meter the locks made through the arena
  /// Map the arena at this address in every process (IRIX CONF_ATTACHADDR): raw pointers into
  /// it are then valid everywhere. Opening fails with EEXIST where the address is taken.
  void* attach_address = nullptr;
  /// Map the arena, in every process that joins, at the address where its creator mapped
  /// it (IRIX's behaviour; what CONF_ATTACHADDR does without choosing the address).
  bool same_address = false;
};

/// A process that joined an arena.
struct ArenaUser {
  std::int32_t pid = 0;
  bool alive = false;          ///< still running (same pid and start time)
  bool self = false;           ///< this Arena object
  std::uint64_t joined_ns = 0; ///< CLOCK_REALTIME when it joined
  std::uint32_t heaps = 0;     ///< threads of it that own an allocation cache now
};

/// Memory figures (mallinfo's, and per size class).
struct ArenaStats {
  struct SizeClass {
    std::uint32_t block_size = 0;
    std::uint64_t spans = 0;      ///< spans of this class
    std::uint32_t span_pages = 0; ///< pages of each
    std::uint64_t blocks = 0;     ///< capacity of those spans
    std::uint64_t in_use = 0;     ///< blocks handed out and not freed
  };
  std::uint64_t size = 0;          ///< committed bytes (arena)
  std::uint64_t max_size = 0;
  std::uint64_t metadata = 0;      ///< bytes of header, tables and page map
  std::uint64_t in_use = 0;        ///< bytes in blocks handed out (small: block size; large: asked)
  std::uint64_t free = 0;          ///< committed bytes not in use (free pages and free blocks)
  std::uint64_t pages_free = 0, pages_small = 0, pages_large = 0;  ///< 4 KiB pages
  std::uint64_t free_runs = 0;     ///< runs of free pages (after coalescing)
  std::uint64_t largest_free_run = 0;  ///< bytes of the longest one
  std::uint64_t large_blocks = 0;
  double fragmentation = 0;        ///< 1 - in_use / bytes of pages that hold blocks
  std::uint32_t users = 0, heaps = 0;
  std::vector<SizeClass> classes;  ///< every class that has a span
};

/// What `Arena::inspect` reads from an arena without joining it (for tools).
struct ArenaInfo {
  std::string name;
  std::uint32_t version = 0;
  std::uint64_t size = 0, max_size = 0;
  bool autogrow = false, metering = false;
  std::uint32_t max_users = 0, max_threads = 0, mode = 0;
  std::uint64_t attach_address = 0;
  std::uint64_t created_ns = 0;          ///< CLOCK_REALTIME at creation
  std::uint64_t root = 0;                ///< the root datum's offset (0 = none)
  std::vector<ArenaUser> users;          ///< joined processes, alive or dead
  ArenaStats stats;
  std::vector<std::string> names;        ///< named objects
  std::uint64_t arena_lock_acquisitions = 0, arena_lock_contended = 0;  ///< with metering
  std::uint64_t arena_lock_wait_ns = 0, arena_lock_owner_deaths = 0;
};

namespace detail {
struct ArenaImpl;
/// Allocation by the arena whose header is at `arena_base`, for Allocator<T>. Throws
/// std::bad_alloc when full.
SHMKIT_API void* arena_allocate(const void* arena_base, std::size_t size, std::size_t align);
SHMKIT_API void arena_deallocate(const void* arena_base, void* p) noexcept;
}  // namespace detail

/// A handle on a shared arena. Move-only. One Arena may be used by many threads at once
/// (each gets its own allocation cache). Closing it unmaps the arena and leaves the users'
/// table; the arena itself stays until removed (remove(), or remove_on_close).
class SHMKIT_API Arena {
 public:
  /// Called once, by the process that initialises the arena, before anyone else may use it.
  using Init = std::function<void(Arena&)>;

  /// Creates a new arena (EEXIST if the name exists). Runs `init` before returning.
  static Arena create(std::string_view name, const ArenaConfig& config = {}, const Init& init = {});
  /// Joins an existing arena, waiting for its initialiser to finish. Throws Error: ENOENT,
  /// EINVAL for anything that is not a valid arena of this format, EUSERS when max_users
  /// processes are joined already.
  static Arena open(std::string_view name);
  /// Joins the arena, creating and initialising it if needed: among processes racing here,
  /// exactly one runs `init`, and every other returns only after it finished. If the
  /// initialiser dies, the next process to get there initialises the arena again, from zero.
  static Arena open_or_create(std::string_view name, const ArenaConfig& config = {},
                              const Init& init = {});
  /// A nameless arena shared with children forked later (IRIX US_SHAREDONLY). A child uses
  /// the inherited Arena directly; it joins as a user of its own at its first call.
  static Arena create_anonymous(const ArenaConfig& config = {}, const Init& init = {});
  /// Removes an arena's name (as Segment::remove).
  static void remove(std::string_view name);
  /// True if `name` holds a shmkit arena (reads its header only; never throws).
  static bool is_arena(std::string_view name) noexcept;
  /// Reads an arena's header, users, statistics and names through a read-only mapping,
  /// without joining it or taking its locks: a snapshot for tools. Throws Error as open().
  static ArenaInfo inspect(std::string_view name);

  Arena() noexcept;
  ~Arena();
  Arena(Arena&& other) noexcept;
  Arena& operator=(Arena&& other) noexcept;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  explicit operator bool() const noexcept { return impl_ != nullptr; }

  /// True if this handle ran the initialiser.
  bool created() const noexcept;
  const Name& name() const noexcept;
  /// The arena's first byte in this process.
  void* base() const noexcept;
  /// Committed bytes now (grows) and the most it may grow to.
  std::size_t size() const noexcept;
  std::size_t max_size() const noexcept;
  /// The segment behind the arena.
  const Segment& segment() const noexcept;

  // ---- Allocation (IRIX usmalloc family) ----

  /// Allocates `size` bytes aligned to `align` (a power of two up to 64 KiB). Throws
  /// Error(ENOMEM) when the arena is full and cannot grow: when no free block of its size
  /// class or a larger one is left in any thread's cache and no run of free pages fits.
  /// Lock-free for small blocks while the thread's cache has one; takes the arena lock to
  /// refill it, and for blocks larger than the largest class (8 KiB in arenas of 4 MiB up).
  void* allocate(std::size_t size, std::size_t align = 16);
  /// As allocate(), returning nullptr instead of throwing.
  [[nodiscard]] void* try_allocate(std::size_t size, std::size_t align = 16) noexcept;
  /// Allocates zero-filled memory (uscalloc).
  void* allocate_zeroed(std::size_t size, std::size_t align = 16);
  [[nodiscard]] void* try_allocate_zeroed(std::size_t size, std::size_t align = 16) noexcept;
  /// Resizes a block, keeping its contents: in place when it fits, or, for a large block,
  /// when the pages after it are free. nullptr `p` allocates; throws Error(ENOMEM), leaving
  /// `p` untouched, when full.
  void* reallocate(void* p, std::size_t size);
  [[nodiscard]] void* try_reallocate(void* p, std::size_t size) noexcept;
  /// The usable size of a block (at least what was asked; usmallocblksize).
  std::size_t block_size(const void* p) const;
  /// Frees a block made by any thread of any process. nullptr is ignored; a pointer that is
  /// not a live block of this arena is reported through report_error(), never a crash.
  void deallocate(void* p) noexcept;

  // ---- Offsets: what may be stored or sent to another process ----

  /// The offset of `p` from the arena's base (0 for nullptr). Throws Error(EINVAL) if `p`
  /// is outside the arena.
  std::uint64_t offset_of(const void* p) const;
  /// The address of `offset` in this process (nullptr for 0). Throws Error(EINVAL) past the end.
  void* at(std::uint64_t offset) const;
  /// Typed forms: an Offset<T> for `p`, and the T an Offset<T> names.
  template <class T>
  Offset<T> offset(const T* p) const {
    return Offset<T>(offset_of(p));
  }
  template <class T>
  T* get(Offset<T> o) const {
    return static_cast<T*>(at(o.value()));
  }

  // ---- The root datum (usputinfo / usgetinfo / uscasinfo) ----

  /// The root datum: a pointer into the arena (or nullptr), stored as an offset.
  void* root() const noexcept;
  void set_root(void* p);
  /// Sets the root to `desired` if it is `expected`; otherwise loads it into `expected`.
  bool compare_exchange_root(void*& expected, void* desired);

  // ---- Named objects ----

  /// Constructs a T named `name` in the arena. Throws Error(EEXIST) if the name is taken.
  template <class T, class... Args>
  T* construct(std::string_view name, Args&&... args) {
    auto [p, made] = named(name, detail::type_id<T>(), sizeof(T), alignof(T), true);
    if (!made) throw Error(EEXIST, std::string(name), "construct", "the name is taken");
    return build<T>(p, std::forward<Args>(args)...);
  }
  /// The T named `name`, or nullptr. Throws Error(EINVAL) if it was made as another type.
  template <class T>
  T* find(std::string_view name) {
    return static_cast<T*>(named(name, detail::type_id<T>(), sizeof(T), alignof(T), false).first);
  }
  /// The T named `name`, constructing it if absent; race-free across processes (the loser of
  /// a race gets the winner's object).
  template <class T, class... Args>
  T* find_or_construct(std::string_view name, Args&&... args) {
    auto [p, made] = named(name, detail::type_id<T>(), sizeof(T), alignof(T), true);
    return made ? build<T>(p, std::forward<Args>(args)...) : static_cast<T*>(p);
  }
  /// Destroys and frees the T named `name`. Returns false if there was none; throws
  /// Error(EINVAL) if it was made as another type. Of processes destroying one name at once,
  /// exactly one runs the destructor.
  template <class T>
  bool destroy(std::string_view name) {
    void* p = detach(name, detail::type_id<T>());
    if (p == nullptr) return false;
    static_cast<T*>(p)->~T();
    deallocate(p);
    return true;
  }
  /// Names of every named object (a snapshot).
  std::vector<std::string> names();

  // ---- Tuning (IRIX usmallopt / mallopt), shared by every user ----

  /// Bytes each growth adds (rounded up to 4 KiB); 0, the default, adds a sixteenth of
  /// the arena, at least 1 MiB.
  void set_grow_step(std::size_t bytes) noexcept;
  std::size_t grow_step() const noexcept;

  // ---- Users, statistics, checking ----

  std::vector<ArenaUser> users();
  ArenaStats stats();
  /// Walks every structure; returns the first inconsistency found, or "" when all is well.
  /// O(size of the arena); takes the arena lock. Exact when no thread allocates or frees
  /// meanwhile; while some do, a span they are changing (without a lock) may look inconsistent.
  std::string check();
  /// Finds users that died, frees their slots and hands their caches to the living. Returns
  /// how many were recovered. Joining and allocation call it when they run short.
  std::uint32_t recover();

  /// Unmaps and leaves the users' table now (the destructor does it too). Throws Error.
  void close();

 private:
  friend struct ArenaAccess;
  // Looks `name` up; with `create`, inserts it if absent and returns {block, true} with the
  // directory lock held until named_done(): nobody sees the object before it is built.
  std::pair<void*, bool> named(std::string_view name, std::uint64_t type, std::size_t size,
                               std::size_t align, bool create);
  void named_done(bool built) noexcept;
  // Removes `name` from the directory and returns its object for the caller to destroy.
  void* detach(std::string_view name, std::uint64_t type);
  template <class T, class... Args>
  T* build(void* p, Args&&... args) {
    try {
      T* object = ::new (p) T(std::forward<Args>(args)...);
      named_done(true);
      return object;
    } catch (...) {
      named_done(false);
      throw;
    }
  }

  detail::ArenaImpl* impl_ = nullptr;
};

}  // namespace shmkit
