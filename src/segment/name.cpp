// SPDX-License-Identifier: MIT
// Parsing and printing of object names (see name.hpp for the forms), and of sizes.
// Pure string work: no system call is made here, so a bad name never reaches the kernel.
#include "shmkit/name.hpp"

#include <cerrno>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <limits>

#include "shmkit/error.hpp"
#include "shmkit/segment.hpp"

namespace shmkit {
namespace {

constexpr std::size_t kNameMax = 255;   // NAME_MAX: a POSIX name is one file in /dev/shm
constexpr std::size_t kPathMax = 4095;  // PATH_MAX less the terminating NUL

// Parses an unsigned integer in C's base-0 syntax (0x.., 0.., decimal), all of `text`.
bool parse_unsigned(std::string_view text, std::uint64_t& out) {
  if (text.empty()) return false;
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.remove_prefix(2);
  } else if (text.size() > 1 && text[0] == '0') {
    base = 8;
    text.remove_prefix(1);
  }
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out, base);
  return ec == std::errc{} && end == text.data() + text.size();
}

// The result of parsing: a name, or the reason it is not one.
struct Parsed {
  Name name;
  std::string why;
};

Parsed fail(std::string why) { return {Name{}, std::move(why)}; }

Parsed parse_posix(std::string_view path) {
  if (path.empty() || path[0] != '/') {
    return fail("a POSIX name starts with '/' (e.g. /" + std::string(path) + ")");
  }
  const std::string_view base = path.substr(1);
  if (base.empty()) return fail("a POSIX name needs at least one character after '/'");
  if (base.size() > kNameMax) {
    return fail("a POSIX name has at most " + std::to_string(kNameMax) + " characters after '/'");
  }
  if (base.find('/') != std::string_view::npos) return fail("a POSIX name has no '/' after the first");
  if (base == "." || base == "..") return fail("'.' and '..' are not POSIX names");
  Name n;
  n.ns = Namespace::posix;
  n.path = std::string(path);
  return {n, {}};
}

Parsed parse_sysv(std::string_view rest) {
  Name n;
  n.ns = Namespace::sysv;
  if (rest == "private") {
    n.sysv = SysvForm::private_key;
    return {n, {}};
  }
  if (rest.substr(0, 3) == "id=") {
    std::uint64_t id = 0;
    if (!parse_unsigned(rest.substr(3), id) || id > std::numeric_limits<std::int32_t>::max()) {
      return fail("a System V id is a number from 0 to 2147483647");
    }
    n.sysv = SysvForm::id;
    n.id = static_cast<std::int32_t>(id);
    return {n, {}};
  }
  if (!rest.empty() && rest[0] == '@') {
    const auto colon = rest.rfind(':');
    if (colon == std::string_view::npos || colon == 1) {
      return fail("an ftok name is sysv:@PATH:PROJ, e.g. sysv:@/etc/hosts:7");
    }
    std::uint64_t proj = 0;
    if (!parse_unsigned(rest.substr(colon + 1), proj) || proj < 1 || proj > 255) {
      return fail("an ftok project id is a number from 1 to 255");
    }
    n.sysv = SysvForm::ftok;
    n.path = std::string(rest.substr(1, colon - 1));
    if (n.path.size() > kPathMax) return fail("the ftok path is too long");
    n.proj = static_cast<std::int32_t>(proj);
    return {n, {}};
  }
  std::uint64_t key = 0;
  if (!parse_unsigned(rest, key) || key > std::numeric_limits<std::uint32_t>::max()) {
    return fail("a System V name is sysv:KEY (a 32-bit number such as 0x1234), "
                "sysv:@PATH:PROJ, sysv:id=N or sysv:private");
  }
  if (key == 0) return fail("key 0 is IPC_PRIVATE: write sysv:private");
  n.sysv = SysvForm::key;
  n.key = static_cast<std::int32_t>(static_cast<std::uint32_t>(key));
  return {n, {}};
}

Parsed parse_any(std::string_view text) {
  if (text.empty()) return fail("a name is empty");
  if (text.find('\0') != std::string_view::npos) return fail("a name contains a NUL byte");
  if (text[0] == '/') return parse_posix(text);
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    return fail("a POSIX name starts with '/' (did you mean /" + std::string(text) + "?)");
  }
  const std::string_view prefix = text.substr(0, colon);
  const std::string_view rest = text.substr(colon + 1);
  if (prefix == "posix") return parse_posix(rest);
  if (prefix == "sysv") return parse_sysv(rest);
  if (prefix == "file") {
    if (rest.empty()) return fail("a file name needs a path, e.g. file:/var/tmp/x");
    if (rest.size() > kPathMax) return fail("the path is too long");
    if (rest.back() == '/') return fail("a file name must not end with '/'");
    Name n;
    n.ns = Namespace::file;
    n.path = std::string(rest);
    return {n, {}};
  }
  return fail("unknown namespace '" + std::string(prefix) + "' (posix, sysv or file)");
}

// Printable form of a name for messages: NUL bytes shown as \0.
std::string printable(std::string_view text) {
  std::string out;
  for (char c : text) out += c == '\0' ? std::string("\\0") : std::string(1, c);
  return out;
}

}  // namespace

const char* to_string(Namespace ns) noexcept {
  switch (ns) {
    case Namespace::posix: return "posix";
    case Namespace::sysv: return "sysv";
    case Namespace::file: return "file";
    case Namespace::anonymous: return "anonymous";
  }
  return "?";
}

Name Name::parse(std::string_view text) {
  Parsed p = parse_any(text);
  if (!p.why.empty()) throw Error(EINVAL, printable(text), "parse name", p.why);
  return p.name;
}

std::optional<Name> Name::try_parse(std::string_view text, std::string* why) {
  Parsed p = parse_any(text);
  if (p.why.empty()) return p.name;
  if (why != nullptr) *why = std::move(p.why);
  return std::nullopt;
}

std::string Name::str() const {
  switch (ns) {
    case Namespace::posix: return path;
    case Namespace::file: return "file:" + path;
    case Namespace::anonymous: return "";
    case Namespace::sysv: break;
  }
  char buf[32];
  switch (sysv) {
    case SysvForm::key:
      std::snprintf(buf, sizeof buf, "sysv:0x%08x", static_cast<std::uint32_t>(key));
      return buf;
    case SysvForm::ftok: return "sysv:@" + path + ":" + std::to_string(proj);
    case SysvForm::id: return "sysv:id=" + std::to_string(id);
    case SysvForm::private_key: return "sysv:private";
    case SysvForm::none: break;
  }
  return "sysv:?";
}

std::size_t parse_size(std::string_view text) {
  const std::string original(text);
  const auto bad = [&](const char* why) { return Error(EINVAL, original, "parse size", why); };
  std::size_t digits = 0;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    digits = 2;
    while (digits < text.size() && std::isxdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  } else {
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  }
  std::uint64_t value = 0;
  if (digits == 0 || !parse_unsigned(text.substr(0, digits), value)) {
    throw bad("a size is a number with an optional K, M, G or T suffix (e.g. 4096, 64K, 0x80000)");
  }
  std::string_view suffix = text.substr(digits);
  unsigned shift = 0;
  if (!suffix.empty()) {
    switch (suffix[0]) {
      case 'k': case 'K': shift = 10; break;
      case 'm': case 'M': shift = 20; break;
      case 'g': case 'G': shift = 30; break;
      case 't': case 'T': shift = 40; break;
      default: throw bad("unknown size suffix (K, M, G or T)");
    }
    suffix.remove_prefix(1);
    if (!(suffix.empty() || suffix == "B" || suffix == "iB" || suffix == "IB")) {
      throw bad("unknown size suffix (K, M, G or T)");
    }
  }
  if (shift != 0 && value > (std::numeric_limits<std::uint64_t>::max() >> shift)) {
    throw bad("the size overflows");
  }
  value <<= shift;
  if (value > std::numeric_limits<std::size_t>::max()) throw bad("the size overflows");
  return static_cast<std::size_t>(value);
}

}  // namespace shmkit
