// SPDX-License-Identifier: MIT
// `shmkit send` / `shmkit recv` run as real processes: a channel used like a pipe from the
// shell, in a segment of its own or in an arena, with one-line errors for what is not one;
// and `shmkit bench ipc` as a script drives it (--json, --plot, usage errors).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "shmkit/segment.hpp"
#include "test_support.hpp"
#include "tool_runner.hpp"

namespace shmkit::test {
namespace {

using namespace std::chrono_literals;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

void expect_one_line_error(const ToolResult& r, const std::string& object,
                           const std::string& cause) {
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_TRUE(contains(r.err, object)) << r.err;
  EXPECT_TRUE(contains(r.err, cause)) << r.err;
  EXPECT_EQ(r.out, "");
}

// Waits until `shmkit info NAME --json` shows `peers` joined peers (the receivers are ready).
void wait_for_peers(const std::vector<std::string>& where, int peers) {
  std::vector<std::string> args = {"info"};
  args.insert(args.end(), where.begin(), where.end());
  args.push_back("--json");
  const std::string want = "\"role\":\"consumer\"";
  for (int i = 0; i < 500; ++i) {
    const ToolResult r = run_tool(args);
    std::size_t found = 0;
    for (std::size_t at = r.out.find(want); at != std::string::npos; at = r.out.find(want, at + 1)) {
      ++found;
    }
    if (static_cast<int>(found) >= peers) return;
    std::this_thread::sleep_for(10ms);
  }
  FAIL() << "receivers did not join";
}

TEST(ChannelCli, SendAndRecvWorkLikeAPipe) {
  const Remover q(unique_name("/", "cli-queue"));
  Tool recv({"recv", q.name(), "--create", "queue", "--slot-size", "256"});
  wait_for_peers({q.name()}, 1);
  ToolResult r = run_tool({"send", q.name(), "-v"}, "one\n\ntwo words\nlast line without newline");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "sent 4 messages to " + q.name() + "\n");
  // The sender left: the receiver prints what was queued, then ends as at a pipe's end.
  r = recv.finish(10s);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "one\n\ntwo words\nlast line without newline\n");

  r = run_tool({"info", q.name()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "type: queue")) << r.out;
  EXPECT_TRUE(contains(r.out, "published: 4")) << r.out;
  EXPECT_TRUE(contains(r.out, "queued: 0")) << r.out;
  r = run_tool({"ls"});
  EXPECT_TRUE(contains(r.out, q.name())) << r.out;
}

TEST(ChannelCli, RecvCountStopsAndLeavesTheRestQueued) {
  const Remover q(unique_name("/", "cli-count"));
  ASSERT_EQ(run_tool({"send", q.name(), "--create", "queue"}, "a\nb\nc\n").status, 0);
  ToolResult r = run_tool({"recv", q.name(), "--count", "2"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "a\nb\n");
  r = run_tool({"info", q.name(), "--json"});
  EXPECT_TRUE(contains(r.out, "\"queued\":1")) << r.out;
  r = run_tool({"recv", q.name()});  // the producer is gone: what is left, then the end
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "c\n");
}

TEST(ChannelCli, TooLongALineIsAnErrorOutsideAnArena) {
  const Remover q(unique_name("/", "cli-long"));
  const ToolResult r =
      run_tool({"send", q.name(), "--create", "ring", "--slot-size", "8"}, "123456789\n");
  expect_one_line_error(r, q.name(), "message of 9 bytes, slots of 8");
}

TEST(ChannelCli, AChannelInAnArenaCarriesLongLinesAsBlocks) {
  const Remover arena(unique_name("/", "cli-arena"));
  ASSERT_EQ(run_tool({"create", arena.name(), "--arena", "--size", "1M"}).status, 0);
  const std::string long_line(5000, 'x');
  Tool recv({"recv", "--arena", arena.name(), "jobs", "--create", "ring", "--slot-size", "64"});
  // The ring is a named object of the arena: wait for it, then for the receiver.
  for (int i = 0; i < 500 && !contains(run_tool({"info", arena.name()}).out, "\"jobs\""); ++i) {
    std::this_thread::sleep_for(10ms);
  }
  ToolResult r = run_tool({"send", "--arena", arena.name(), "jobs"}, "short\n" + long_line + "\n");
  ASSERT_EQ(r.status, 0) << r.err;
  r = recv.finish(10s);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "short\n" + long_line + "\n");
  r = run_tool({"check", arena.name()});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
}

TEST(ChannelCli, EverySubscriberOfABroadcastGetsEveryLine) {
  const Remover b(unique_name("/", "cli-bcast"));
  // A subscriber receives what is sent after it joined; the first producer has left by then,
  // so each one follows (waits for new producers) and stops by count.
  ASSERT_EQ(run_tool({"send", b.name(), "--create", "broadcast"}, "").status, 0);
  Tool first({"recv", b.name(), "--count", "2", "--follow"});
  Tool second({"recv", b.name(), "--count", "2", "--follow"});
  wait_for_peers({b.name()}, 2);
  ASSERT_EQ(run_tool({"send", b.name()}, "x\ny\n").status, 0);
  for (Tool* t : {&first, &second}) {
    const ToolResult r = t->finish(10s);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "x\ny\n");
  }
}

TEST(ChannelCli, WhatIsNotAChannelIsAOneLineError) {
  const Remover seg(unique_name("/", "cli-plain"));
  Segment::create(seg.name(), 4096);
  expect_one_line_error(run_tool({"recv", seg.name()}), seg.name(), "not a shmkit channel");
  expect_one_line_error(run_tool({"send", seg.name()}, "x\n"), seg.name(), "not a shmkit channel");
  const Remover missing(unique_name("/", "cli-missing"));
  expect_one_line_error(run_tool({"recv", missing.name()}), missing.name(), "no such");
  // A receiver that waits in vain says so.
  const Remover q(unique_name("/", "cli-idle"));
  expect_one_line_error(run_tool({"recv", q.name(), "--create", "queue", "--timeout", "0.2"}),
                        q.name(), "nothing after 0.2 s");
  EXPECT_EQ(run_tool({"recv", q.name(), "--create", "pipe"}).status, 2);
}

}  // namespace
}  // namespace shmkit::test

namespace shmkit::test {
namespace {

// `shmkit bench ipc` as a script uses it: one JSON object with its ratios, a chart that is
// an SVG document, and usage errors for what it does not know. No figure is asserted.
TEST(BenchIpcCli, JsonPlotAndUsageErrors) {
  const std::string svg = "/tmp/" + unique_name("", "ipc") + ".svg";
  const ToolResult r =
      run_tool({"bench", "ipc", "--quick", "--json", "--sizes", "64", "--transports",
                "pipe,shmkit-zero-copy,shmkit-queue,cacheline", "--plot", svg});
  const bool wrote = ::access(svg.c_str(), F_OK) == 0;
  std::string chart;
  if (wrote) {
    std::ifstream in(svg);
    chart.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    ::unlink(svg.c_str());
  }
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("{") && r.out.ends_with("}\n")) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  for (const char* part : {"\"ratios\":{", "\"latency_vs_cacheline\":", "\"throughput64_vs_pipe\":",
                           "\"shmkit Queue (MPMC) zero-copy\""}) {
    EXPECT_TRUE(contains(r.out, part)) << part << " in " << r.out;
  }
  ASSERT_TRUE(wrote);
  EXPECT_TRUE(chart.starts_with("<?xml") && contains(chart, "<svg") && contains(chart, "</svg>"))
      << chart.substr(0, 200);

  EXPECT_EQ(run_tool({"bench", "ipc", "--transports", "carrier-pigeon"}).status, 2);
  EXPECT_EQ(run_tool({"bench", "ipc", "--sizes", "huge"}).status, 2);
}

}  // namespace
}  // namespace shmkit::test
