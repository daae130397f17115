// SPDX-License-Identifier: MIT
// One string names a shared object in any namespace, so the API and the CLI agree:
//
//   /name, posix:/name      POSIX shared memory (/dev/shm/name)          the default
//   sysv:0x1234             System V by key (any base: 0x.., 0.., decimal)
//   sysv:@/some/path:7      System V, key = ftok("/some/path", 7)
//   sysv:id=42              System V by shmid
//   sysv:private            a new System V segment (IPC_PRIVATE); reopen it as sysv:id=N
//   file:/path/to/file      a mapped file (persists across reboots)
//
// Anonymous segments have no name (Segment::create_anonymous). Parsing checks the syntax only
// and makes no system call; resolving an ftok key happens when the segment is opened.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "shmkit/detail/config.hpp"

namespace shmkit {

/// The kernel namespace a segment lives in.
enum class Namespace : std::uint8_t { posix, sysv, file, anonymous };

/// How a System V name finds its segment.
enum class SysvForm : std::uint8_t { none, key, ftok, id, private_key };

/// Returns "posix", "sysv", "file" or "anonymous".
SHMKIT_API const char* to_string(Namespace ns) noexcept;

/// A parsed, validated object name. A value type; cheap to copy.
struct SHMKIT_API Name {
  Namespace ns = Namespace::anonymous;
  SysvForm sysv = SysvForm::none;
  std::string path{};      ///< posix: "/name"; file: the path; sysv ftok: the path
  std::int32_t key = 0;    ///< sysv key form (as key_t; 0x80000000.. wrap to negative)
  std::int32_t id = -1;    ///< sysv id form
  std::int32_t proj = 0;   ///< sysv ftok form: 1..255

  /// Parses `text`. Throws Error(EINVAL, text, "parse name", what is wrong) on a bad name:
  /// empty, too long, a '/' or NUL inside a POSIX name, a key that does not parse …
  static Name parse(std::string_view text);

  /// Parses `text` without throwing; on failure returns nullopt and, if `why` is given,
  /// stores the reason there.
  static std::optional<Name> try_parse(std::string_view text, std::string* why = nullptr);

  /// The canonical spelling: "/name", "sysv:0x00001234" (eight digits, as ipcs prints keys),
  /// "sysv:@/p:7", "sysv:id=42", "sysv:private", "file:/path", or "" for anonymous.
  /// parse(str()) gives this name back.
  std::string str() const;

  friend bool operator==(const Name&, const Name&) = default;
};

}  // namespace shmkit
