// SPDX-License-Identifier: MIT
// Runs the built `shmkit` command as an operator would and checks what it prints and how it
// exits: 0 with the expected output, 1 with one stderr line naming the object, 2 for usage.
// Every object a test makes has a unique_name and a Remover, so a failure leaves nothing.
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "shmkit/arena.hpp"
#include "shmkit/segment.hpp"
#include "test_support.hpp"
#include "tool_runner.hpp"

namespace shmkit::test {
namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// Checks a failed run: status 1, nothing on stdout, one stderr line naming `object`.
void expect_one_line_error(const ToolResult& r, const std::string& object,
                           const std::string& cause = {}) {
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_TRUE(r.err.starts_with("shmkit: ")) << r.err;
  EXPECT_TRUE(contains(r.err, object)) << r.err;
  if (!cause.empty()) {
    EXPECT_TRUE(contains(r.err, cause)) << r.err;
  }
}

/// A light structural check of JSON: one top-level object, brackets balanced outside
/// strings, nothing after it but a newline.
bool looks_like_one_json_object(const std::string& text) {
  if (!text.starts_with("{") || !text.ends_with("}\n")) return false;
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i + 1 < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // skip the escaped character
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') in_string = true;
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') --depth;
    if (depth == 0 && i + 2 != text.size()) return false;  // closed before the end
  }
  return depth == 0 && !in_string;
}

/// The columns of the `ls` table row of `name` (empty if it is not listed).
std::vector<std::string> ls_row(const std::string& ls_out, const std::string& name) {
  std::istringstream lines(ls_out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::vector<std::string> row;
    for (std::string f; fields >> f;) row.push_back(f);
    if (!row.empty() && row[0] == name) return row;
  }
  return {};
}

/// The round trip every namespace must pass: create, info, ls, write, cat, dump, chmod, rm.
void round_trip(const std::string& name, const std::string& ls_name) {
  ToolResult r = run_tool({"create", name, "--size", "4K"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "created " + ls_name)) << r.out;

  r = run_tool({"info", name});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "name: " + ls_name + "\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "size: 4096 ")) << r.out;
  EXPECT_TRUE(contains(r.out, "mode: 0600 (rw-------)")) << r.out;

  r = run_tool({"ls"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("NAME ")) << r.out;
  EXPECT_TRUE(contains(r.out, ls_name + " ")) << r.out;

  r = run_tool({"write", name, "--offset", "16"}, "hello, shared world");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "");

  r = run_tool({"cat", name, "--offset", "16", "--length", "19"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hello, shared world");
  r = run_tool({"cat", name});
  EXPECT_EQ(r.out.size(), 4096u);

  r = run_tool({"dump", name});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out,
            "00000000: 0000 0000 0000 0000 0000 0000 0000 0000  ................\n"
            "00000010: 6865 6c6c 6f2c 2073 6861 7265 6420 776f  hello, shared wo\n"
            "00000020: 726c 6400 0000 0000 0000 0000 0000 0000  rld.............\n"
            "00000030: 0000 0000 0000 0000 0000 0000 0000 0000  ................\n"
            "*\n"
            "00001000\n");

  r = run_tool({"chmod", "0640", name});
  ASSERT_EQ(r.status, 0) << r.err;
  r = run_tool({"info", name});
  EXPECT_TRUE(contains(r.out, "mode: 0640 (rw-r-----)")) << r.out;

  r = run_tool({"rm", name});
  ASSERT_EQ(r.status, 0) << r.err;
  expect_one_line_error(run_tool({"info", name}), name, "no such segment");
}

// ---- Round trips ----

TEST(Cli, PosixRoundTrip) {
  const Remover seg(unique_name("/", "posix"));
  round_trip(seg.name(), seg.name());
}

TEST(Cli, SysvKeyRoundTrip) {
  const Remover seg(unique_sysv_key());
  round_trip(seg.name(), seg.name());
}

TEST(Cli, SysvPrivatePrintsTheIdToReopenBy) {
  const ToolResult r = run_tool({"create", "sysv:private", "--size", "4096"});
  // Whatever happens below, remove what that run created.
  std::vector<std::unique_ptr<Remover>> cleanup;
  for (const SegmentStat& s : Segment::list()) {
    if (s.ns == Namespace::sysv && s.creator_pid == r.pid && s.id) {
      cleanup.push_back(std::make_unique<Remover>("sysv:id=" + std::to_string(*s.id)));
    }
  }
  ASSERT_EQ(r.status, 0) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("^created (sysv:id=[0-9]+) "))) << r.out;
  const std::string name = m[1];
  ToolResult info = run_tool({"info", name});
  ASSERT_EQ(info.status, 0) << info.err;
  EXPECT_TRUE(contains(info.out, "name: " + name + "\n")) << info.out;
  EXPECT_EQ(run_tool({"write", name}, "private").status, 0);
  EXPECT_EQ(run_tool({"cat", name, "--length", "7"}).out, "private");
  EXPECT_EQ(run_tool({"rm", name}).status, 0);
}

TEST(Cli, CreateFindsOrRefusesAnExistingSegment) {
  const Remover seg(unique_name("/", "again"));
  ASSERT_EQ(run_tool({"create", seg.name(), "--size", "4096", "--mode", "0644"}).status, 0);
  ToolResult r = run_tool({"create", seg.name(), "--size", "8K"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "found " + seg.name() + " and grew it from 4.0K")) << r.out;
  EXPECT_EQ(Segment::stat(seg.name()).size, 8192u);
  EXPECT_EQ(Segment::stat(seg.name()).mode, 0644u);

  expect_one_line_error(run_tool({"create", seg.name(), "--size", "4096", "--exclusive"}),
                        seg.name(), "already exists");
}

// ---- JSON ----

TEST(Cli, JsonIsOneObjectWithEveryField) {
  const Remover seg(unique_name("/", "json"));
  ASSERT_EQ(run_tool({"create", seg.name(), "--size", "64K"}).status, 0);

  ToolResult r = run_tool({"info", seg.name(), "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(looks_like_one_json_object(r.out)) << r.out;
  for (const char* field :
       {"\"name\":\"", "\"namespace\":\"posix\"", "\"size\":65536", "\"mode\":\"0600\"",
        "\"uid\":", "\"key\":null", "\"id\":null", "\"attach_count\":null",
        "\"change_time\":", "\"locked\":false", "\"removed\":false"}) {
    EXPECT_TRUE(contains(r.out, field)) << field << " in " << r.out;
  }

  r = run_tool({"ls", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("{\"segments\":[")) << r.out;
  EXPECT_TRUE(looks_like_one_json_object(r.out)) << r.out;
  EXPECT_TRUE(contains(r.out, "\"name\":\"" + seg.name() + "\"")) << r.out;
}

// ---- Errors ----

TEST(Cli, MissingSegmentIsOneLineNamingIt) {
  const std::string name = unique_name("/", "missing");
  for (const char* verb : {"info", "cat", "dump", "rm", "wait"}) {
    expect_one_line_error(run_tool({verb, name}), name, "no such segment");
  }
  expect_one_line_error(run_tool({"info", unique_sysv_key()}), "sysv:0x5c", "no such segment");
}

TEST(Cli, BadNameAndBadSizeAreOneLineErrors) {
  expect_one_line_error(run_tool({"info", "foo/bar"}), "foo/bar");
  const Remover seg(unique_name("/", "badsize"));
  expect_one_line_error(run_tool({"create", seg.name(), "--size", "12Q"}), "12Q");
  expect_one_line_error(run_tool({"create", seg.name(), "--size", "4K", "--mode", "0999"}), "0999");
  // Nothing was created by either.
  expect_one_line_error(run_tool({"info", seg.name()}), seg.name(), "no such segment");
}

TEST(Cli, UsageErrorsExitTwo) {
  EXPECT_EQ(run_tool({}).status, 2);
  EXPECT_EQ(run_tool({"frobnicate"}).status, 2);
  EXPECT_EQ(run_tool({"info"}).status, 2);
  EXPECT_EQ(run_tool({"create", "/x"}).status, 2);  // --size is required
  EXPECT_EQ(run_tool({"ls", "--no-such-flag"}).status, 2);
  const ToolResult v = run_tool({"--version"});
  EXPECT_EQ(v.status, 0);
  EXPECT_TRUE(v.out.starts_with("shmkit ")) << v.out;
  EXPECT_EQ(run_tool({"--help"}).status, 0);
}

TEST(Cli, WriteThatDoesNotFitChangesNothing) {
  const Remover seg(unique_name("/", "fit"));
  ASSERT_EQ(run_tool({"create", seg.name(), "--size", "4096"}).status, 0);
  ASSERT_EQ(run_tool({"write", seg.name()}, "keep").status, 0);

  expect_one_line_error(run_tool({"write", seg.name()}, std::string(5000, 'x')), seg.name());
  expect_one_line_error(run_tool({"write", seg.name(), "--offset", "4094"}, "abc"), seg.name());
  expect_one_line_error(run_tool({"write", seg.name(), "--offset", "5000"}, "a"), seg.name());

  const ToolResult r = run_tool({"cat", seg.name(), "--length", "8"});
  EXPECT_EQ(r.out, std::string("keep\0\0\0\0", 8));
  EXPECT_EQ(run_tool({"write", seg.name(), "--offset", "4092", "-v"}, "last").out,
            "wrote 4 bytes to " + seg.name() + " at offset 4092\n");
}

TEST(Cli, RmKeepsGoingPastFailures) {
  const Remover seg(unique_name("/", "rm"));
  const std::string missing = unique_name("/", "rm-missing");
  ASSERT_EQ(run_tool({"create", seg.name(), "--size", "4096"}).status, 0);
  expect_one_line_error(run_tool({"rm", missing, seg.name()}), missing, "no such segment");
  expect_one_line_error(run_tool({"info", seg.name()}), seg.name(), "no such segment");
}

// ---- Arenas ----

TEST(Cli, ArenaCreateLsInfoCheckGc) {
  const Remover arena(unique_name("/", "arena"));
  const std::string& name = arena.name();
  ToolResult r =
      run_tool({"create", name, "--arena", "--size", "1M", "--max-size", "4M", "--max-users", "8"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "created arena " + name + " (1.0M, max 4.0M, rw-------)\n");
  r = run_tool({"create", name, "--arena", "--size", "1M"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "found arena " + name + " (1.0M, max 4.0M, rw-------)\n");
  expect_one_line_error(run_tool({"create", name, "--arena", "--size", "1M", "--exclusive"}), name,
                        "already exists");

  // ls: TYPE arena, USERS alive/total, USED bytes in use.
  r = run_tool({"ls"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("NAME ")) << r.out;
  const std::vector<std::string> row = ls_row(r.out, name);
  ASSERT_GE(row.size(), 8u) << r.out;
  EXPECT_EQ(row[1], "arena");
  EXPECT_EQ(row[5], "1.0M");
  EXPECT_EQ(row[6], "0/0");
  EXPECT_EQ(row[7], "0B");
  r = run_tool({"ls", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(looks_like_one_json_object(r.out)) << r.out;
  const std::size_t at = r.out.find("\"name\":\"" + name + "\"");
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string expected =
      "\"type\":\"arena\",\"arena\":{\"users\":0,\"alive\":0,\"in_use\":0,\"size\":1048576,"
      "\"max_size\":4194304},\"channel\":null}";
  EXPECT_EQ(r.out.compare(r.out.find("\"type\":", at), expected.size(), expected), 0) << r.out;

  // info: the segment's fields, then the arena's header, config, users and statistics.
  r = run_tool({"info", name});
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* line :
       {"size: 1048576 (1.0M)\n", "type: arena\n", "arena:\n", "  size: 1048576 (1.0M)\n",
        "  max_size: 4194304 (4.0M)\n", "  autogrow: yes\n", "  max_users: 8\n",
        "  mode: 0600 (rw-------)\n", "  root: 0 (none)\n", "users: 0 (0 alive, 0 dead)\n",
        "memory:\n", "  in_use: 0 (0B)\n", "  large_blocks: 0\n", "named_objects: 0\n",
        "arena_lock: not metered"}) {
    EXPECT_TRUE(contains(r.out, line)) << line << " in " << r.out;
  }
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\n  format_version: [0-9]+\n"))) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\n  created: [0-9]{4}-[0-9]{2}-[0-9]{2} ")))
      << r.out;
  r = run_tool({"info", name, "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(looks_like_one_json_object(r.out)) << r.out;
  for (const char* field :
       {"\"name\":\"", "\"type\":\"arena\",\"arena\":{\"version\":", "\"max_size\":4194304",
        "\"autogrow\":true", "\"max_users\":8", "\"users\":[]", "\"stats\":{\"size\":1048576",
        "\"in_use\":0", "\"classes\":[]", "\"names\":[]", "\"arena_lock\":null"}) {
    EXPECT_TRUE(contains(r.out, field)) << field << " in " << r.out;
  }

  r = run_tool({"check", name});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "ok\n");
  EXPECT_EQ(ls_row(run_tool({"ls"}).out, name).at(6), "0/0");  // check joined, then left

  // gc: no users and nobody has it open. A dry run only says so; naming it keeps gc away
  // from arenas that tests running meanwhile have closed for a moment.
  r = run_tool({"gc", "--dry-run"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "would remove " + name + ": no users, and no process has it open"))
      << r.out;
  EXPECT_TRUE(Arena::is_arena(name));
  r = run_tool({"gc", name});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("removed " + name + ": no users, and no process had it open"))
      << r.out;
  expect_one_line_error(run_tool({"info", name}), name, "no such segment");
}

TEST(Cli, ArenaUsersAliveOrDeadDecideWhatGcDoes) {
  const Remover remover(unique_name("/", "arena-users"));
  const std::string& name = remover.name();
  ArenaConfig config;
  config.max_users = 4;
  Arena arena = Arena::create(name, config);
  // A user that dies without leaving: it stays in the table, dead.
  int dead_pid = -1;
  {
    Children children;
    dead_pid = children.start([&name] {
      Arena joined = Arena::open(name);
      (void)joined.allocate(100);
      ::_exit(0);  // no destructor: the slot stays taken
      return 0;
    });
    ASSERT_EQ(exit_code(children.wait(dead_pid)), 0);
  }

  ToolResult r = run_tool({"info", name});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "users: 2 (1 alive, 1 dead)\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "  pid " + std::to_string(::getpid()) + ": alive, joined ")) << r.out;
  EXPECT_TRUE(contains(r.out, "  pid " + std::to_string(dead_pid) + ": dead, joined ")) << r.out;
  EXPECT_EQ(ls_row(run_tool({"ls"}).out, name).at(6), "1/2");
  r = run_tool({"check", name});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "ok\n");

  r = run_tool({"gc", name});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(
      r.out, "kept " + name + ": 1 of 2 users alive (pid " + std::to_string(::getpid()) + ")"))
      << r.out;

  // Users all dead, but this process still maps it without joining: kept.
  arena.close();
  {
    OpenOptions read_only;
    read_only.access = Access::read_only;
    const Segment mapped = Segment::open(name, read_only);
    r = run_tool({"gc", name});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "kept " + name + ": its only user is dead (pid " +
                                    std::to_string(dead_pid) + "), but pid " +
                                    std::to_string(::getpid()) + " maps /dev/shm"))
        << r.out;
  }
  r = run_tool({"gc", name, "--dry-run"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "would remove " + name + ": its only user is dead")) << r.out;
  r = run_tool({"gc", name});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "removed " + name + ": its only user is dead")) << r.out;
  EXPECT_FALSE(Arena::is_arena(name));
}

TEST(Cli, ArenaVerbsOnPlainSegments) {
  const Remover seg(unique_name("/", "plain"));
  ASSERT_EQ(run_tool({"create", seg.name(), "--size", "4096"}).status, 0);

  // info still shows the segment, and says it is no arena.
  ToolResult r = run_tool({"info", seg.name()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "size: 4096 (4.0K)\n")) << r.out;
  EXPECT_TRUE(r.out.ends_with("type: segment\n")) << r.out;
  r = run_tool({"info", seg.name(), "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(looks_like_one_json_object(r.out)) << r.out;
  EXPECT_TRUE(contains(r.out, "\"type\":\"segment\",\"arena\":null,\"channel\":null}")) << r.out;
  EXPECT_EQ(ls_row(run_tool({"ls"}).out, seg.name()).at(1), "segment");

  expect_one_line_error(run_tool({"check", seg.name()}), seg.name(), "not a shmkit arena");
  expect_one_line_error(run_tool({"check", unique_name("/", "missing")}), "/shmkit-test-",
                        "no such segment");
  // An arena is never made over a plain segment, and the segment is left as it was.
  expect_one_line_error(run_tool({"create", seg.name(), "--arena", "--size", "1M"}), seg.name(),
                        "is not an arena");
  EXPECT_EQ(Segment::stat(seg.name()).size, 4096u);
  r = run_tool({"gc", seg.name()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("kept " + seg.name() + ": not an arena")) << r.out;
  EXPECT_EQ(Segment::stat(seg.name()).size, 4096u);
  expect_one_line_error(run_tool({"gc", unique_name("/", "gone")}), "/shmkit-test-",
                        "no such segment");

  // Arena options need --arena; the users' limit is checked before anything is made.
  EXPECT_EQ(run_tool({"create", seg.name(), "--size", "4K", "--max-size", "8K"}).status, 2);
  EXPECT_EQ(run_tool({"create", seg.name(), "--arena", "--size", "1M", "--max-users", "0"}).status,
            2);
}

// ---- wait and demo ----

TEST(Cli, WaitPrintsTheFirstWordBeforeAndAfter) {
  const Remover seg(unique_name("/", "wait"));
  {
    Segment s = Segment::create(seg.name(), 4096);
    s.as<std::uint32_t>() = 0x1234;
  }
  ToolResult r = run_tool({"wait", seg.name()}, "\n");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "first word: 0x00001234 (4660)\nfirst word: 0x00001234 (4660)\n");

  // Attached and waiting, it sees another process change the word, and SIGTERM ends it.
  Tool tool({"wait", seg.name()});
  EXPECT_EQ(tool.read_line(), "first word: 0x00001234 (4660)");
  Segment::open(seg.name()).as<std::uint32_t>() = 0xbeef;
  tool.send(SIGTERM);
  r = tool.finish();
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "first word: 0x0000beef (48879)\n");
}

TEST(Cli, DemoRunsAndLeavesNothingBehind) {
  const ToolResult r = run_tool({"demo"});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_TRUE(contains(r.out, "done")) << r.out;
  const std::string posix_name = "/shmkit-demo-" + std::to_string(r.pid);
  EXPECT_TRUE(contains(r.out, posix_name)) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("sysv:id=[0-9]+"))) << r.out;

  EXPECT_TRUE(contains(r.out, posix_name + "-arena")) << r.out;
  EXPECT_TRUE(contains(r.out, "Arena::check() walks every span and free list: ok")) << r.out;

  for (const SegmentStat& s : Segment::list()) {
    EXPECT_NE(s.name, posix_name);
    EXPECT_NE(s.name, posix_name + "-arena");
    EXPECT_FALSE(s.ns == Namespace::sysv && s.creator_pid == r.pid) << s.name;
  }
}

}  // namespace
}  // namespace shmkit::test
