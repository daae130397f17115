// SPDX-License-Identifier: MIT
// Segment: a named, mapped region of shared memory in one of the namespaces of name.hpp.
//
// One call replaces the shm_open/ftruncate/mmap or ftok/shmget/shmat dance. A Segment owns
// its mapping (and descriptor): destroying it unmaps. Removing the name is explicit
// (remove(), Segment::remove(name)) or asked for with remove_on_close. Memory is committed
// when it is created or grown (fallocate, or populate for System V), so a full /dev/shm is
// an Error with ENOSPC, never a SIGBUS on first touch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include "shmkit/detail/config.hpp"
#include "shmkit/error.hpp"
#include "shmkit/name.hpp"

namespace shmkit {

/// How a segment is mapped. A write through a read-only mapping faults (SIGSEGV).
enum class Access : std::uint8_t { read_write, read_only };

/// Settings for creating a segment.
struct CreateOptions {
  std::uint32_t mode = 0600;     ///< permission bits of a new object
  bool exclusive = true;         ///< fail with EEXIST if it exists (O_EXCL / IPC_EXCL)
  bool truncate = false;         ///< non-exclusive create: cut an existing object first (O_TRUNC)
  bool remove_on_close = false;  ///< remove the name when this Segment is destroyed
  bool huge_pages = false;       ///< back with huge pages (sysv, anonymous, file on hugetlbfs)
  /// Map this many bytes (if more than the size), so that growing, here or in another
  /// process, never moves the mapping: data() stays fixed. POSIX, file and anonymous only.
  std::size_t reserve = 0;
  /// Map at exactly this address, or fail with EEXIST when something is mapped there.
  void* address = nullptr;
};

/// Settings for opening an existing segment.
struct OpenOptions {
  Access access = Access::read_write;
  std::size_t size = 0;          ///< bytes to map; 0 maps the whole object
  bool remove_on_close = false;  ///< remove the name when this Segment is destroyed
  /// Map at exactly this address (page-aligned; SHMLBA for System V), or fail with EEXIST
  /// when something is mapped there. nullptr lets the system choose (recommended).
  void* address = nullptr;
  /// As CreateOptions::reserve: map this many bytes so that growth never moves the mapping.
  std::size_t reserve = 0;
};

/// What the kernel knows about a segment. Fields a namespace does not have are empty.
struct SegmentStat {
  std::string name;                          ///< canonical name; System V: by key (by id if private)
  Namespace ns = Namespace::posix;
  std::uint64_t size = 0;                    ///< bytes
  std::uint32_t mode = 0;                    ///< permission bits (0777 mask)
  std::uint32_t uid = 0, gid = 0;            ///< owner
  std::optional<std::uint32_t> cuid, cgid;   ///< creator (System V)
  std::optional<std::int32_t> key, id;       ///< System V key and shmid
  std::optional<std::uint64_t> attach_count; ///< System V nattch
  std::optional<std::int32_t> creator_pid, last_pid;  ///< System V cpid / lpid
  std::optional<std::int64_t> attach_time, detach_time;  ///< System V, seconds since the epoch
  std::int64_t change_time = 0;              ///< ctime, seconds since the epoch
  std::optional<std::int64_t> modify_time;   ///< POSIX and file: mtime
  bool locked = false;                       ///< System V SHM_LOCK in force
  bool removed = false;                      ///< System V: marked for removal, still attached
  std::optional<std::uint64_t> resident;     ///< System V: resident bytes (rss)
};

/// A mapped shared-memory segment. Move-only. A Segment object is not itself thread-safe
/// (synchronise calls on one object), but any number of Segments in any processes may map
/// the same memory; what they do to the bytes is theirs to synchronise.
class SHMKIT_API Segment {
 public:
  /// Creates `name` with `size` bytes (committed, zero-filled) and maps it read-write.
  /// Throws Error: EEXIST when it exists and `exclusive`, ENOSPC when memory is short,
  /// EINVAL on a bad name or size 0, EACCES … `sysv:id=N` cannot be created.
  static Segment create(std::string_view name, std::size_t size, const CreateOptions& options = {});

  /// Opens and maps an existing segment. Throws Error (ENOENT when missing, EACCES, EINVAL
  /// when `options.size` exceeds the object).
  static Segment open(std::string_view name, const OpenOptions& options = {});

  /// Opens `name`, creating it with `size` bytes if it does not exist; created() tells which
  /// happened. Race-free: among processes calling this at once, exactly one creates. An
  /// existing POSIX or file object smaller than `size` is grown to it; a System V one is an
  /// EINVAL error (System V cannot grow). `options.exclusive` is ignored.
  static Segment open_or_create(std::string_view name, std::size_t size,
                                const CreateOptions& options = {});

  /// Creates a nameless segment (memfd) that children inherit across fork(). Unlike
  /// MAP_ANONYMOUS it can grow; fd() can be passed to another process over a UNIX socket.
  static Segment create_anonymous(std::size_t size, const CreateOptions& options = {});

  /// Removes the name; existing mappings stay valid until unmapped (System V: the segment
  /// is destroyed after the last detach). Throws Error (ENOENT when missing).
  static void remove(std::string_view name);
  /// Same, reporting failure through `ec` instead of throwing; returns true if removed.
  static bool remove(std::string_view name, std::error_code& ec) noexcept;

  /// Returns what the kernel knows of `name` without mapping it. Throws Error.
  static SegmentStat stat(std::string_view name);

  /// Lists every POSIX segment in /dev/shm and every System V segment on the machine.
  /// Objects that vanish while listing are skipped. Throws Error if neither can be read.
  static std::vector<SegmentStat> list();

  Segment() noexcept = default;
  ~Segment();
  Segment(Segment&& other) noexcept;
  Segment& operator=(Segment&& other) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  /// True if this object refers to a mapped segment.
  explicit operator bool() const noexcept { return open_; }

  const Name& name() const noexcept { return name_; }
  Namespace ns() const noexcept { return name_.ns; }
  /// True if this handle created the object (always true after create()).
  bool created() const noexcept { return created_; }
  bool writable() const noexcept { return writable_; }

  /// The usable bytes. After grow() or refresh() the address may change, unless the growth
  /// fits in what was reserved.
  void* data() const noexcept { return base_; }
  std::size_t size() const noexcept { return size_; }
  /// Bytes of address space mapped (at least size(); more when a reserve was asked for).
  std::size_t reserved() const noexcept { return mapped_; }
  std::span<std::byte> bytes() const noexcept {
    return {static_cast<std::byte*>(base_), size_};
  }

  /// Returns the start of the segment as a T. Throws Error(EINVAL) if the segment is smaller
  /// than T; a `const T` is required for a read-only segment. T must be standard-layout and
  /// hold no pointers (they would mean nothing in another process).
  template <class T>
  T& as() const {
    static_assert(std::is_standard_layout_v<T>, "a shared struct must be standard-layout");
    static_assert(!std::is_pointer_v<T>, "a pointer means nothing in another process");
    check_view(sizeof(T), alignof(T), std::is_const_v<T>);
    return *static_cast<T*>(base_);
  }

  /// Returns the segment as an array of as many T as fit. Same checks as as<T>().
  template <class T>
  std::span<T> as_span() const {
    static_assert(std::is_standard_layout_v<T>, "a shared struct must be standard-layout");
    check_view(sizeof(T), alignof(T), std::is_const_v<T>);
    return {static_cast<T*>(base_), size_ / sizeof(T)};
  }

  /// Grows the object to `new_size` bytes (committed first, so ENOSPC is an Error) and
  /// remaps. POSIX, file and anonymous only; System V throws EOPNOTSUPP. Shrinking is refused.
  void grow(std::size_t new_size);

  /// Remaps to the object's current size, to see another process's grow(). Returns true if
  /// the mapping changed. No-op for System V.
  bool refresh();

  /// Removes this segment's name now (the mapping stays valid). Throws Error.
  void remove();

  /// Asks for (or cancels) removal of the name when this Segment is destroyed.
  void set_remove_on_close(bool on) noexcept { remove_on_close_ = on; }

  /// Returns what the kernel knows of this segment. Throws Error.
  SegmentStat stat() const;

  /// Changes the permission bits (fchmod, or IPC_SET for System V). Throws Error.
  void chmod(std::uint32_t mode);
  /// Changes the owner (fchown, or IPC_SET for System V). Throws Error (EPERM).
  void chown(std::uint32_t uid, std::uint32_t gid);

  /// Locks the pages in memory (SHM_LOCK for System V, mlock otherwise). Throws Error
  /// (EPERM or ENOMEM without CAP_IPC_LOCK or enough RLIMIT_MEMLOCK).
  void lock_in_memory();
  /// Undoes lock_in_memory(). Throws Error.
  void unlock_memory();

  /// The descriptor (POSIX, file, anonymous) or shmid (System V); -1 when empty.
  int native_handle() const noexcept { return name_.ns == Namespace::sysv ? shmid_ : fd_; }

  /// Unmaps and closes now, removing the name if remove_on_close. Throws Error on failure;
  /// the destructor does the same but reports failures through report_error().
  void close();

 private:
  void check_view(std::size_t size, std::size_t align, bool is_const) const;
  void release(bool throw_errors);

  Name name_;
  void* base_ = nullptr;
  std::size_t size_ = 0;
  std::size_t mapped_ = 0;
  int fd_ = -1;
  int shmid_ = -1;
  bool open_ = false;
  bool created_ = false;
  bool writable_ = false;
  bool remove_on_close_ = false;
};

/// Parses a size: "4096", "64K", "1M", "2G", "0x80000", "64KiB". Suffixes are powers of 1024.
/// Throws Error(EINVAL, text, "parse size", …) on anything else or on overflow.
SHMKIT_API std::size_t parse_size(std::string_view text);

}  // namespace shmkit
