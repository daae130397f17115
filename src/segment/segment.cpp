// SPDX-License-Identifier: MIT
// Segment: create, open and map shared memory in the POSIX, System V, file and anonymous
// namespaces. The one idea: every path ends in a committed, mapped region or in an Error
// that leaves the system as it was (a half-made object this call created is removed again).
#include "shmkit/segment.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "os/os.hpp"
#include "segment/internal.hpp"

namespace shmkit {
namespace {

constexpr const char* kAnonymousLabel = "(anonymous)";

std::string label_of(const Name& name) {
  return name.ns == Namespace::anonymous ? kAnonymousLabel : name.str();
}

template <class T>
T check(os::Result<T> r, const std::string& object, const char* operation) {
  if (!r.ok()) throw Error(r.error(), object, operation);
  return std::move(r).value();
}

void check(os::Status s, const std::string& object, const char* operation) {
  if (!s.ok()) throw Error(s.error(), object, operation);
}

// The System V id a name refers to (resolving a key or an ftok path), without creating.
// Failures name `operation`, the call the caller was making.
int resolve_sysv_id(const Name& name, const std::string& object, const char* operation = "open") {
  switch (name.sysv) {
    case SysvForm::id:
      // shmctl answers EINVAL for an id that does not exist; ENOENT says what happened.
      if (auto st = os::sysv_stat(name.id); !st.ok()) {
        throw Error(st.error() == EINVAL ? ENOENT : st.error(), object, operation);
      }
      return name.id;
    case SysvForm::key:
      return check(os::sysv_get(name.key, 0, {}), object, operation);
    case SysvForm::ftok: {
      const auto key = check(os::ftok(name.path, name.proj), object, "ftok");
      return check(os::sysv_get(key, 0, {}), object, operation);
    }
    case SysvForm::private_key:
      throw Error(EINVAL, object, "open",
                  "sysv:private names no existing segment; reopen one as sysv:id=N");
    case SysvForm::none:
      break;
  }
  throw Error(EINVAL, object, "open", "not a System V name");
}

// The key a create call passes to shmget (0 = IPC_PRIVATE).
std::int32_t sysv_key_for_create(const Name& name, const std::string& object) {
  switch (name.sysv) {
    case SysvForm::key: return name.key;
    case SysvForm::ftok: return check(os::ftok(name.path, name.proj), object, "ftok");
    case SysvForm::private_key: return 0;
    case SysvForm::id:
    case SysvForm::none: break;
  }
  throw Error(EINVAL, object, "create",
              "a segment cannot be created by id; use a key, sysv:@PATH:PROJ or sysv:private");
}

os::Result<int> open_posix_or_file(const Name& name, os::OpenFlags flags, std::uint32_t mode) {
  return name.ns == Namespace::posix ? os::shm_open(name.path, flags, mode)
                                     : os::open_file(name.path, flags, mode);
}

os::Status unlink_posix_or_file(const Name& name) {
  return name.ns == Namespace::posix ? os::shm_unlink(name.path) : os::unlink(name.path);
}

// Huge pages fail with ENOMEM, EPERM or ENOSPC when none are reserved; say what to do.
Error creation_error(int err, const std::string& object, const char* operation, bool huge) {
  if (huge && (err == ENOMEM || err == EPERM || err == ENOSPC || err == EINVAL)) {
    return Error(err, object, operation,
                 std::string("no huge pages available (reserve some with sysctl "
                             "vm.nr_hugepages=N): ") + std::strerror(err));
  }
  return Error(err, object, operation);
}

SegmentStat stat_from_file(const Name& name, const os::FileStat& st) {
  SegmentStat out;
  out.name = name.str();
  out.ns = name.ns;
  out.size = st.size;
  out.mode = st.mode & 0777;
  out.uid = st.uid;
  out.gid = st.gid;
  out.change_time = st.ctime;
  out.modify_time = st.mtime;
  return out;
}

}  // namespace

// ---- Creating and opening ----

Segment Segment::create(std::string_view text, std::size_t size, const CreateOptions& options) {
  const Name name = Name::parse(text);
  const std::string object(text);
  if (size == 0) throw Error(EINVAL, object, "create", "the size must be greater than 0");

  Segment seg;
  seg.name_ = name;
  seg.writable_ = true;
  seg.remove_on_close_ = options.remove_on_close;

  if (name.ns == Namespace::sysv) {
    const std::int32_t key = sysv_key_for_create(name, object);
    os::SysvFlags flags{.create = true, .exclusive = true, .huge_pages = options.huge_pages,
                        .mode = options.mode};
    for (;;) {
      auto id = os::sysv_get(key, size, flags);
      if (id.ok()) {
        seg.shmid_ = id.value();
        seg.created_ = true;
        break;
      }
      if (id.error() != EEXIST || options.exclusive) {
        throw creation_error(id.error(), object, "create", options.huge_pages);
      }
      auto existing = os::sysv_get(key, 0, {});
      if (existing.ok()) {
        seg.shmid_ = existing.value();
        break;
      }
      if (existing.error() != ENOENT) throw Error(existing.error(), object, "open");
      // Removed between the two calls: try to create again.
    }
    const auto drop_created = [&] {
      if (seg.created_) (void)os::sysv_remove(seg.shmid_);
    };
    std::uint64_t segment_size = size;  // created here: exactly `size`
    if (!seg.created_) {
      auto st = os::sysv_stat(seg.shmid_);
      if (!st.ok()) throw Error(st.error(), object, "stat");
      segment_size = st.value().size;
      if (segment_size < size) {
        throw Error(EINVAL, object, "open",
                    "the existing segment has " + std::to_string(segment_size) +
                        " bytes and System V segments cannot grow");
      }
    }
    auto base = os::sysv_attach(seg.shmid_, false, options.address);
    if (!base.ok()) {
      drop_created();
      throw Error(base.error(), object, "attach");
    }
    seg.base_ = base.value();
    seg.size_ = static_cast<std::size_t>(segment_size);
    seg.mapped_ = seg.size_;
    seg.open_ = true;
    if (seg.created_) {
      // Commit now: a shortage is an error here, not a fault at first touch. EINVAL means a
      // kernel older than 5.14 without MADV_POPULATE_WRITE: nothing to commit with.
      const auto populated = os::populate_write(seg.base_, seg.size_);
      if (!populated.ok() && populated.error() != EINVAL) {
        (void)os::sysv_detach(seg.base_);
        seg.open_ = false;
        drop_created();
        throw creation_error(populated.error() == ENOMEM ? ENOSPC : populated.error(), object,
                             "commit", options.huge_pages);
      }
    } else if (options.truncate) {
      std::fill_n(static_cast<std::byte*>(seg.base_), seg.size_, std::byte{0});
    }
    if (name.sysv == SysvForm::private_key) {
      seg.name_.sysv = SysvForm::id;
      seg.name_.id = seg.shmid_;
    }
    return seg;
  }

  // POSIX or file: O_CREAT|O_EXCL tells whether this call created the object.
  if (options.huge_pages && name.ns == Namespace::posix) {
    throw Error(EOPNOTSUPP, object, "create",
                "POSIX objects live on tmpfs without huge pages; use sysv:, an anonymous "
                "segment, or file: on a hugetlbfs mount");
  }
  for (;;) {
    auto fd = open_posix_or_file(name, {.create = true, .exclusive = true}, options.mode);
    if (fd.ok()) {
      seg.fd_ = fd.value();
      seg.created_ = true;
      break;
    }
    if (fd.error() != EEXIST || options.exclusive) throw Error(fd.error(), object, "create");
    auto existing = open_posix_or_file(name, {.truncate = options.truncate}, 0);
    if (existing.ok()) {
      seg.fd_ = existing.value();
      break;
    }
    if (existing.error() != ENOENT) throw Error(existing.error(), object, "open");
  }
  // From here the Segment owns fd_; on failure its destructor closes it, and an object this
  // call created is removed so a failed create leaves nothing behind.
  seg.open_ = true;
  const auto fail = [&](int err, const char* operation) -> Error {
    if (seg.created_) (void)unlink_posix_or_file(name);
    seg.remove_on_close_ = false;
    return Error(err, object, operation);
  };
  // The umask may have cleared bits the caller asked for; the mode given is the mode meant.
  // A umask clears group and other bits (0022, 0077 …): an owner-only mode such as the
  // default 0600 needs no check, and saves a system call on every create.
  if (seg.created_ && (options.mode & 07077) != 0) {
    auto st = os::fstat(seg.fd_);
    if (st.ok() && st.value().mode != (options.mode & 07777)) {
      if (auto s = os::fchmod(seg.fd_, options.mode); !s.ok()) throw fail(s.error(), "chmod");
    }
  }
  // Grow-only and committing: racing creators and joiners can all call it safely.
  if (auto s = os::allocate(seg.fd_, size); !s.ok()) {
    (void)fail(s.error(), "commit");
    throw creation_error(s.error(), object, "commit", options.huge_pages);
  }
  // Created here: exactly `size`. Opened: whatever it is now (at least `size`).
  std::size_t have = size;
  if (!seg.created_) {
    auto st = os::fstat(seg.fd_);
    if (!st.ok()) throw fail(st.error(), "stat");
    have = static_cast<std::size_t>(st.value().size);
  }
  const std::size_t mapped = std::max(have, options.reserve);
  auto base = os::map(seg.fd_, mapped, os::Protection::read_write, options.address,
                      options.address != nullptr);
  if (!base.ok()) throw fail(base.error(), "map");
  seg.base_ = base.value();
  seg.size_ = have;
  seg.mapped_ = mapped;
  return seg;
}

Segment Segment::open_or_create(std::string_view name, std::size_t size,
                                const CreateOptions& options) {
  CreateOptions o = options;
  o.exclusive = false;
  return create(name, size, o);
}

Segment Segment::open(std::string_view text, const OpenOptions& options) {
  const Name name = Name::parse(text);
  const std::string object(text);
  const bool read_only = options.access == Access::read_only;
  const auto too_small = [&](std::uint64_t have) {
    return Error(EINVAL, object, "open",
                 "asked to map " + std::to_string(options.size) + " bytes of a segment of " +
                     std::to_string(have));
  };

  Segment seg;
  seg.name_ = name;
  seg.writable_ = !read_only;
  seg.remove_on_close_ = options.remove_on_close;

  if (name.ns == Namespace::sysv) {
    seg.shmid_ = resolve_sysv_id(name, object);
    const auto st = check(os::sysv_stat(seg.shmid_), object, "stat");
    if (options.size > st.size) throw too_small(st.size);
    seg.base_ = check(os::sysv_attach(seg.shmid_, read_only, options.address), object, "attach");
    seg.size_ = options.size != 0 ? options.size : static_cast<std::size_t>(st.size);
    seg.mapped_ = seg.size_;
    seg.open_ = true;
    return seg;
  }

  seg.fd_ = check(open_posix_or_file(name, {.read_only = read_only}, 0), object, "open");
  seg.open_ = true;
  const auto st = check(os::fstat(seg.fd_), object, "stat");
  if (!st.regular) throw Error(EINVAL, object, "open", "not a regular file");
  if (options.size > st.size) throw too_small(st.size);
  seg.size_ = options.size != 0 ? options.size : static_cast<std::size_t>(st.size);
  const std::size_t mapped = std::max(seg.size_, options.reserve);
  if (mapped != 0) {
    const auto prot = read_only ? os::Protection::read : os::Protection::read_write;
    seg.base_ = check(os::map(seg.fd_, mapped, prot, options.address, options.address != nullptr),
                      object, "map");
    seg.mapped_ = mapped;
  }
  return seg;
}

Segment Segment::create_anonymous(std::size_t size, const CreateOptions& options) {
  if (size == 0) throw Error(EINVAL, kAnonymousLabel, "create", "the size must be greater than 0");
  Segment seg;
  seg.name_.ns = Namespace::anonymous;
  seg.writable_ = true;
  seg.created_ = true;
  seg.fd_ = check(os::memfd_create("shmkit", options.huge_pages), kAnonymousLabel, "create");
  seg.open_ = true;
  if (auto s = os::allocate(seg.fd_, size); !s.ok()) {
    throw creation_error(s.error(), kAnonymousLabel, "commit", options.huge_pages);
  }
  const std::size_t mapped = std::max(size, options.reserve);
  seg.base_ = check(os::map(seg.fd_, mapped, os::Protection::read_write, options.address,
                            options.address != nullptr),
                    kAnonymousLabel, "map");
  seg.size_ = size;
  seg.mapped_ = mapped;
  return seg;
}

// ---- Removing and inspecting by name ----

void Segment::remove(std::string_view text) {
  const Name name = Name::parse(text);
  const std::string object(text);
  if (name.ns == Namespace::sysv) {
    const int id = resolve_sysv_id(name, object, "remove");
    check(os::sysv_remove(id), object, "remove");
    return;
  }
  check(unlink_posix_or_file(name), object, "remove");
}

bool Segment::remove(std::string_view name, std::error_code& ec) noexcept {
  try {
    remove(name);
    ec.clear();
    return true;
  } catch (const Error& e) {
    ec = e.code();
  } catch (...) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return false;
}

SegmentStat Segment::stat(std::string_view text) {
  const Name name = Name::parse(text);
  const std::string object(text);
  if (name.ns == Namespace::sysv) {
    const int id = resolve_sysv_id(name, object, "stat");
    return stat_from_sysv(check(os::sysv_stat(id), object, "stat"), id);
  }
  const std::string path = name.ns == Namespace::posix
                               ? std::string(os::posix_shm_directory()) + name.path
                               : name.path;
  const auto st = check(os::lstat(path), object, "stat");
  if (!st.regular) throw Error(EINVAL, object, "stat", "not a regular file");
  return stat_from_file(name, st);
}

// ---- Lifetime ----

Segment::~Segment() { release(false); }

Segment::Segment(Segment&& other) noexcept
    : name_(std::move(other.name_)),
      base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_(std::exchange(other.mapped_, 0)),
      fd_(std::exchange(other.fd_, -1)),
      shmid_(std::exchange(other.shmid_, -1)),
      open_(std::exchange(other.open_, false)),
      created_(std::exchange(other.created_, false)),
      writable_(std::exchange(other.writable_, false)),
      remove_on_close_(std::exchange(other.remove_on_close_, false)) {}

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    release(false);
    name_ = std::move(other.name_);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
    fd_ = std::exchange(other.fd_, -1);
    shmid_ = std::exchange(other.shmid_, -1);
    open_ = std::exchange(other.open_, false);
    created_ = std::exchange(other.created_, false);
    writable_ = std::exchange(other.writable_, false);
    remove_on_close_ = std::exchange(other.remove_on_close_, false);
  }
  return *this;
}

void Segment::close() { release(true); }

void Segment::release(bool throw_errors) {
  if (!open_) return;
  std::optional<Error> first;
  const auto note = [&](os::Status s, const char* operation) {
    if (s.ok()) return;
    Error e(s.error(), label_of(name_), operation);
    if (!first) first = e;
    else report_error(e);
  };
  if (name_.ns == Namespace::sysv) {
    if (base_ != nullptr) note(os::sysv_detach(base_), "detach");
    if (remove_on_close_) note(os::sysv_remove(shmid_), "remove");
  } else {
    if (base_ != nullptr) note(os::unmap(base_, mapped_), "unmap");
    if (fd_ >= 0) note(os::close(fd_), "close");
    if (remove_on_close_ && name_.ns != Namespace::anonymous) {
      note(unlink_posix_or_file(name_), "remove");
    }
  }
  base_ = nullptr;
  size_ = 0;
  mapped_ = 0;
  fd_ = -1;
  shmid_ = -1;
  open_ = false;
  if (!first) return;
  if (throw_errors) throw *first;
  report_error(*first);
}

// ---- Operations on an open segment ----

void Segment::check_view(std::size_t size, std::size_t align, bool is_const) const {
  const std::string object = label_of(name_);
  if (!open_) throw Error(EBADF, object, "view", "the segment is not open");
  if (size > size_) {
    throw Error(EINVAL, object, "view",
                "the segment has " + std::to_string(size_) + " bytes; the type needs " +
                    std::to_string(size));
  }
  if (reinterpret_cast<std::uintptr_t>(base_) % align != 0) {
    throw Error(EINVAL, object, "view", "the mapping is not aligned for the type");
  }
  if (!is_const && !writable_) {
    throw Error(EACCES, object, "view", "the segment is mapped read-only; view it as const");
  }
}

void Segment::grow(std::size_t new_size) {
  const std::string object = label_of(name_);
  if (!open_) throw Error(EBADF, object, "grow", "the segment is not open");
  if (name_.ns == Namespace::sysv) {
    throw Error(EOPNOTSUPP, object, "grow",
                "System V segments cannot grow; remove it and create a larger one");
  }
  if (!writable_) throw Error(EACCES, object, "grow", "the segment is mapped read-only");
  if (new_size < size_) throw Error(EINVAL, object, "grow", "a segment never shrinks");
  if (new_size == size_) return;
  check(os::allocate(fd_, new_size), object, "grow");
  if (base_ == nullptr) {
    base_ = check(os::map(fd_, new_size, os::Protection::read_write), object, "map");
    mapped_ = new_size;
  } else if (new_size > mapped_) {
    base_ = check(os::remap(base_, mapped_, new_size), object, "remap");
    mapped_ = new_size;
  }
  size_ = new_size;
}

bool Segment::refresh() {
  const std::string object = label_of(name_);
  if (!open_) throw Error(EBADF, object, "refresh", "the segment is not open");
  if (name_.ns == Namespace::sysv) return false;
  const auto st = check(os::fstat(fd_), object, "stat");
  const auto now = static_cast<std::size_t>(st.size);
  if (now == size_) return false;
  if (base_ != nullptr && now <= mapped_) {
    size_ = now;  // within the reservation: the mapping already covers it
    return true;
  }
  if (now == 0) {
    check(os::unmap(base_, mapped_), object, "unmap");
    base_ = nullptr;
    mapped_ = 0;
  } else if (base_ == nullptr) {
    const auto prot = writable_ ? os::Protection::read_write : os::Protection::read;
    base_ = check(os::map(fd_, now, prot), object, "map");
    mapped_ = now;
  } else {
    base_ = check(os::remap(base_, mapped_, now), object, "remap");
    mapped_ = now;
  }
  size_ = now;
  return true;
}

void Segment::remove() {
  const std::string object = label_of(name_);
  if (!open_) throw Error(EBADF, object, "remove", "the segment is not open");
  switch (name_.ns) {
    case Namespace::sysv: check(os::sysv_remove(shmid_), object, "remove"); break;
    case Namespace::posix:
    case Namespace::file: check(unlink_posix_or_file(name_), object, "remove"); break;
    case Namespace::anonymous: break;  // nameless: gone with its last mapping
  }
  remove_on_close_ = false;
}

SegmentStat Segment::stat() const {
  const std::string object = label_of(name_);
  if (!open_) throw Error(EBADF, object, "stat", "the segment is not open");
  if (name_.ns == Namespace::sysv) {
    SegmentStat out = stat_from_sysv(check(os::sysv_stat(shmid_), object, "stat"), shmid_);
    if (name_.sysv != SysvForm::id) out.name = name_.str();
    return out;
  }
  return stat_from_file(name_, check(os::fstat(fd_), object, "stat"));
}

void Segment::chmod(std::uint32_t mode) {
  const std::string object = label_of(name_);
  if (!open_) throw Error(EBADF, object, "chmod", "the segment is not open");
  if (name_.ns == Namespace::sysv) {
    const auto st = check(os::sysv_stat(shmid_), object, "stat");
    check(os::sysv_set(shmid_, st.uid, st.gid, mode), object, "chmod");
    return;
  }
  check(os::fchmod(fd_, mode), object, "chmod");
}

void Segment::chown(std::uint32_t uid, std::uint32_t gid) {
  const std::string object = label_of(name_);
  if (!open_) throw Error(EBADF, object, "chown", "the segment is not open");
  if (name_.ns == Namespace::sysv) {
    const auto st = check(os::sysv_stat(shmid_), object, "stat");
    check(os::sysv_set(shmid_, uid, gid, st.mode), object, "chown");
    return;
  }
  check(os::fchown(fd_, uid, gid), object, "chown");
}

void Segment::lock_in_memory() {
  const std::string object = label_of(name_);
  if (!open_) throw Error(EBADF, object, "lock", "the segment is not open");
  if (name_.ns == Namespace::sysv) {
    check(os::sysv_lock(shmid_, true), object, "lock");
  } else if (base_ != nullptr) {
    check(os::mlock(base_, size_), object, "lock");
  }
}

void Segment::unlock_memory() {
  const std::string object = label_of(name_);
  if (!open_) throw Error(EBADF, object, "unlock", "the segment is not open");
  if (name_.ns == Namespace::sysv) {
    check(os::sysv_lock(shmid_, false), object, "unlock");
  } else if (base_ != nullptr) {
    check(os::munlock(base_, size_), object, "unlock");
  }
}

}  // namespace shmkit
