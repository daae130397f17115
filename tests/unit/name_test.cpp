// SPDX-License-Identifier: MIT
// Name::parse / try_parse / str and parse_size: pure syntax, no system calls. Every bad input
// must be an Error(EINVAL, text, "parse name" | "parse size", cause) and never a crash.
#include "shmkit/name.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "shmkit/error.hpp"
#include "shmkit/segment.hpp"

namespace shmkit {
namespace {

using namespace std::string_literals;

// Parses `text`, which must fail, and returns the Error (or fails the test).
Error parse_error(std::string_view text) {
  try {
    (void)Name::parse(text);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "parse(\"" << std::string(text) << "\") did not throw";
  return Error(0, std::string(text), "parse name", "no error");
}

std::string printable(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '\0' ? std::string("\\0") : std::string(1, c);
  return out;
}

// ---- Valid names ----

TEST(Name, PosixWithSlash) {
  const Name n = Name::parse("/seg");
  EXPECT_EQ(n.ns, Namespace::posix);
  EXPECT_EQ(n.sysv, SysvForm::none);
  EXPECT_EQ(n.path, "/seg");
  EXPECT_EQ(n.str(), "/seg");
}

TEST(Name, PosixPrefixIsTheSameName) {
  const Name n = Name::parse("posix:/seg");
  EXPECT_EQ(n.ns, Namespace::posix);
  EXPECT_EQ(n.path, "/seg");
  EXPECT_EQ(n.str(), "/seg");
  EXPECT_EQ(n, Name::parse("/seg"));
}

TEST(Name, PosixAllowsDotsAndLongNames) {
  EXPECT_EQ(Name::parse("/a.b-c_d").path, "/a.b-c_d");
  EXPECT_EQ(Name::parse("/...").path, "/...");
  const std::string longest = "/" + std::string(254, 'x');  // 255 characters in all
  EXPECT_EQ(Name::parse(longest).path, longest);
}

TEST(Name, SysvHexKey) {
  const Name n = Name::parse("sysv:0x1234");
  EXPECT_EQ(n.ns, Namespace::sysv);
  EXPECT_EQ(n.sysv, SysvForm::key);
  EXPECT_EQ(n.key, 0x1234);
  EXPECT_EQ(n.str(), "sysv:0x00001234");
}

TEST(Name, SysvDecimalAndOctalKeys) {
  EXPECT_EQ(Name::parse("sysv:4660").key, 0x1234);
  EXPECT_EQ(Name::parse("sysv:011064").key, 0x1234);
  EXPECT_EQ(Name::parse("sysv:4660").sysv, SysvForm::key);
  EXPECT_EQ(Name::parse("sysv:011064"), Name::parse("sysv:0x1234"));
}

TEST(Name, SysvKeyUsesAll32Bits) {
  const Name n = Name::parse("sysv:0xffffffff");
  EXPECT_EQ(n.key, -1);  // as key_t
  EXPECT_EQ(n.str(), "sysv:0xffffffff");
  EXPECT_EQ(Name::parse("sysv:0x80000000").key, static_cast<std::int32_t>(0x80000000u));
}

TEST(Name, SysvFtok) {
  const Name n = Name::parse("sysv:@/some/path:7");
  EXPECT_EQ(n.ns, Namespace::sysv);
  EXPECT_EQ(n.sysv, SysvForm::ftok);
  EXPECT_EQ(n.path, "/some/path");
  EXPECT_EQ(n.proj, 7);
  EXPECT_EQ(n.str(), "sysv:@/some/path:7");
  EXPECT_EQ(Name::parse("sysv:@/p:1").proj, 1);
  EXPECT_EQ(Name::parse("sysv:@/p:255").proj, 255);
}

TEST(Name, SysvFtokDoesNotTouchTheFilesystem) {
  // Resolving the key happens at open; parsing a missing path is fine.
  const Name n = Name::parse("sysv:@/nonexistent/shmkit/path:3");
  EXPECT_EQ(n.path, "/nonexistent/shmkit/path");
}

TEST(Name, SysvId) {
  const Name n = Name::parse("sysv:id=42");
  EXPECT_EQ(n.ns, Namespace::sysv);
  EXPECT_EQ(n.sysv, SysvForm::id);
  EXPECT_EQ(n.id, 42);
  EXPECT_EQ(n.str(), "sysv:id=42");
  EXPECT_EQ(Name::parse("sysv:id=0").id, 0);
}

TEST(Name, SysvPrivate) {
  const Name n = Name::parse("sysv:private");
  EXPECT_EQ(n.ns, Namespace::sysv);
  EXPECT_EQ(n.sysv, SysvForm::private_key);
  EXPECT_EQ(n.str(), "sysv:private");
}

TEST(Name, File) {
  const Name n = Name::parse("file:/var/tmp/test.seg");
  EXPECT_EQ(n.ns, Namespace::file);
  EXPECT_EQ(n.sysv, SysvForm::none);
  EXPECT_EQ(n.path, "/var/tmp/test.seg");
  EXPECT_EQ(n.str(), "file:/var/tmp/test.seg");
}

TEST(Name, DefaultIsAnonymous) {
  const Name n;
  EXPECT_EQ(n.ns, Namespace::anonymous);
  EXPECT_EQ(n.str(), "");
}

TEST(Name, NamespaceToString) {
  EXPECT_STREQ(to_string(Namespace::posix), "posix");
  EXPECT_STREQ(to_string(Namespace::sysv), "sysv");
  EXPECT_STREQ(to_string(Namespace::file), "file");
  EXPECT_STREQ(to_string(Namespace::anonymous), "anonymous");
}

TEST(Name, StrRoundTrips) {
  for (const char* text :
       {"/seg", "posix:/seg", "/a.b", "sysv:0x1234", "sysv:4660", "sysv:017", "sysv:0xffffffff",
        "sysv:0x7fffffff", "sysv:@/tmp/x:7", "sysv:@/p:255", "sysv:id=0", "sysv:id=2147483647",
        "sysv:private", "file:/tmp/x.seg", "file:/a/b/c"}) {
    SCOPED_TRACE(text);
    const Name n = Name::parse(text);
    const std::string canonical = n.str();
    EXPECT_EQ(Name::parse(canonical), n);
    EXPECT_EQ(Name::parse(canonical).str(), canonical);
  }
}

TEST(Name, TryParseAcceptsGoodNames) {
  const auto n = Name::try_parse("sysv:0x10");
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(n->key, 0x10);
  std::string why = "untouched";
  EXPECT_TRUE(Name::try_parse("/ok", &why).has_value());
}

TEST(Name, TryParseReportsWhy) {
  std::string why;
  EXPECT_FALSE(Name::try_parse("foo", &why).has_value());
  EXPECT_FALSE(why.empty());
  EXPECT_FALSE(Name::try_parse("/a/b").has_value());  // no `why`: must not crash
  why.clear();
  EXPECT_FALSE(Name::try_parse("", &why).has_value());
  EXPECT_FALSE(why.empty());
}

// ---- Bad names ----

struct BadName {
  std::string text;
  const char* what;
};

void PrintTo(const BadName& bad, std::ostream* os) { *os << '"' << printable(bad.text) << '"'; }

class NameBad : public ::testing::TestWithParam<BadName> {};

TEST_P(NameBad, IsEinvalNamingTheText) {
  const BadName& bad = GetParam();
  const Error e = parse_error(bad.text);
  EXPECT_EQ(e.errnum(), EINVAL);
  EXPECT_EQ(e.code(), std::errc::invalid_argument);
  EXPECT_EQ(e.operation(), "parse name");
  if (bad.text.find('\0') == std::string::npos) {
    EXPECT_EQ(e.object(), bad.text);
  } else {  // a NUL may be shown escaped, so messages stay printable
    EXPECT_TRUE(e.object() == bad.text || e.object() == printable(bad.text)) << e.object();
  }
  EXPECT_FALSE(e.cause().empty());
  EXPECT_NE(e.cause(), std::strerror(EINVAL)) << "the cause should say what is wrong";
  const std::string what = e.what();
  EXPECT_NE(what.find("parse name"), std::string::npos) << what;
  EXPECT_NE(what.find(e.cause()), std::string::npos) << what;

  std::string why;
  EXPECT_FALSE(Name::try_parse(bad.text, &why).has_value());
  EXPECT_FALSE(why.empty());
}

const BadName kBadNames[] = {
    {"", "empty"},
    {"foo", "no leading slash"},
    {"posix:foo", "posix without slash"},
    {"posix:", "posix empty"},
    {"/a/b", "embedded slash"},
    {"//a", "double slash"},
    {"/a/", "trailing slash"},
    {"/a\0b"s, "embedded NUL"},
    {"/" + std::string(300, 'x'), "too long"},
    {"/" + std::string(256, 'x'), "component longer than 255"},
    {"/", "slash alone"},
    {"/.", "dot"},
    {"/..", "dot dot"},
    {"sysv:", "sysv empty"},
    {"sysv:0xZZ", "bad hex"},
    {"sysv:12abc", "trailing junk"},
    {"sysv:0x", "hex without digits"},
    {"sysv:089", "bad octal"},
    {"sysv:0", "key 0 (use sysv:private)"},
    {"sysv:0x0", "key 0 in hex"},
    {"sysv:0x100000000", "key beyond 32 bits"},
    {"sysv:99999999999999999999", "key overflow"},
    {"sysv:@/p:0", "proj 0"},
    {"sysv:@/p:256", "proj 256"},
    {"sysv:@/p:", "proj missing"},
    {"sysv:@/p", "no proj"},
    {"sysv:@:7", "ftok path empty"},
    {"sysv:@/p:x", "proj not a number"},
    {"sysv:id=-1", "negative id"},
    {"sysv:id=abc", "id not a number"},
    {"sysv:id=", "id empty"},
    {"sysv:id=99999999999", "id overflow"},
    {"sysv:bogus", "unknown sysv form"},
    {"file:", "file empty"},
    {"foo:bar", "unknown prefix"},
    {"shm:/x", "unknown prefix with slash"},
};

std::string bad_name_label(const ::testing::TestParamInfo<BadName>& param) {
  std::string s = std::to_string(param.index) + "_" + param.param.what;
  for (char& c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return s;
}

INSTANTIATE_TEST_SUITE_P(All, NameBad, ::testing::ValuesIn(kBadNames), bad_name_label);

TEST(Name, ParseErrorWhatNamesTheText) {
  const Error e = parse_error("foo");
  EXPECT_NE(std::string(e.what()).find("foo"), std::string::npos) << e.what();
}

// ---- parse_size ----

TEST(ParseSize, AcceptsNumbersAndSuffixes) {
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("1"), 1u);
  EXPECT_EQ(parse_size("64K"), 65536u);
  EXPECT_EQ(parse_size("1M"), 1048576u);
  EXPECT_EQ(parse_size("2G"), 2147483648u);
  EXPECT_EQ(parse_size("0x80000"), 0x80000u);
  EXPECT_EQ(parse_size("64KiB"), 65536u);
  EXPECT_EQ(parse_size("1MiB"), 1048576u);
  EXPECT_EQ(parse_size("3GiB"), 3ull << 30);
}

class ParseSizeBad : public ::testing::TestWithParam<std::string> {};

TEST_P(ParseSizeBad, IsEinval) {
  const std::string& text = GetParam();
  try {
    (void)parse_size(text);
    ADD_FAILURE() << "parse_size(\"" << text << "\") did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.errnum(), EINVAL);
    EXPECT_EQ(e.operation(), "parse size");
    EXPECT_EQ(e.object(), text);
  }
}

INSTANTIATE_TEST_SUITE_P(All, ParseSizeBad,
                         ::testing::Values("", "12Q", "-1", "K", "0xZ", "1.5M",
                                           "18446744073709551616", "99999999999999999999999",
                                           "17179869184G", "0x10000000000000000"));

}  // namespace
}  // namespace shmkit
