// SPDX-License-Identifier: MIT
// The `shmkit` command: wires the subcommands to CLI11 and nothing else. Each verb lives in
// its cmd_<verb>.cpp. Exit status: 0 ok, 1 an error (one line on stderr naming the object
// and the cause), 2 a usage error.
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli.hpp"
#include "shmkit/error.hpp"
#include "shmkit/version.hpp"

namespace {

using namespace shmkit::cli;

constexpr const char* kNameHelp =
    "segment name: /name (POSIX), sysv:0x1234, sysv:@/path:7 (ftok), sysv:id=42, file:/path";
constexpr const char* kBytesHelp = "4096, 64K, 1M, 0x80000 (K/M/G are powers of 1024)";

/// Every verb's arguments, filled in by the parser.
struct Verbs {
  LsArgs ls;
  InfoArgs info;
  CreateArgs create;
  RmArgs rm;
  ChmodArgs chmod;
  WriteArgs write;
  ReadArgs cat, dump;
  WaitArgs wait;
  CheckArgs check;
  GcArgs gc;
  DemoArgs demo;
  SendArgs send;
  RecvArgs recv;
  BenchArgs bench;
  std::function<int()> chosen;  ///< the verb on the command line, ready to run
};

template <class Args>
CLI::App* verb(CLI::App& app, Verbs& verbs, const char* name, const char* help, Args& args,
               int (*run)(const Args&)) {
  CLI::App* sub = app.add_subcommand(name, help);
  sub->callback([&verbs, &args, run] { verbs.chosen = [&args, run] { return run(args); }; });
  return sub;
}

void add_channel_options(CLI::App* s, ChannelArgs& c) {
  s->add_option("name", c.name, "channel: a segment name (/name), or a name in --arena")
      ->required();
  s->add_option("--arena", c.arena, "the arena that holds the channel");
  s->add_option("--create", c.create, "create it if missing: queue, ring or broadcast")
      ->check(CLI::IsMember({"queue", "ring", "broadcast"}));
  s->add_option("--slot-size", c.slot_size, "when creating: bytes per message slot")
      ->capture_default_str();
  s->add_option("--capacity", c.capacity, "when creating: slots, a power of two")
      ->capture_default_str();
  s->add_option("--max-peers", c.max_peers, "when creating: handles joined at once")
      ->capture_default_str();
  s->add_flag("--overwrite", c.overwrite,
              "when creating a broadcast: overwrite the oldest message rather than wait");
  s->add_option("-m,--mode", c.mode, "when creating: octal permission bits")
      ->capture_default_str();
  s->add_option("--wait", c.wait, "how to wait: busy, block or spin (then block)")
      ->check(CLI::IsMember({"busy", "block", "spin"}))
      ->capture_default_str();
  s->add_option("-t,--timeout", c.timeout, "seconds a message may take (default: forever)");
}

void add_verbs(CLI::App& app, Verbs& v) {
  auto* s =
      verb(app, v, "ls", "list every segment, POSIX and System V (like ipcs/lsipc), marking arenas",
           v.ls, cmd_ls);
  s->add_flag("--json", v.ls.json, "print one JSON object {\"segments\":[...]}");

  s = verb(app, v, "info",
           "show everything the kernel knows of one segment, and its arena if it holds one", v.info,
           cmd_info);
  s->add_option("name", v.info.name, kNameHelp)->required();
  s->add_flag("--json", v.info.json, "print one JSON object");

  s = verb(app, v, "create", "create a segment or an arena, or open it if it exists", v.create,
           cmd_create);
  s->add_option("name", v.create.name, std::string(kNameHelp) + ", sysv:private")->required();
  s->add_option("-s,--size", v.create.size, std::string("size: ") + kBytesHelp)->required();
  s->add_option("-m,--mode", v.create.mode, "octal permission bits")->capture_default_str();
  s->add_flag("-x,--exclusive", v.create.exclusive, "fail if it already exists");
  auto* arena = s->add_flag("-a,--arena", v.create.arena,
                            "make a shared arena (allocator, users, named objects)");
  s->add_option("--max-size", v.create.max_size,
                "arena: the most it may grow to (default 1G, growing on demand)")
      ->needs(arena);
  s->add_option("--max-users", v.create.max_users, "arena: processes joined at once (default 64)")
      ->check(CLI::Range(1, 65535))
      ->needs(arena);

  s = verb(app, v, "rm", "remove segments (keeps going past failures)", v.rm, cmd_rm);
  s->add_option("names", v.rm.names, kNameHelp)->required();
  s->add_flag("-v,--verbose", v.rm.verbose, "print each name removed");

  s = verb(app, v, "chmod", "change a segment's permission bits", v.chmod, cmd_chmod);
  s->add_option("mode", v.chmod.mode, "octal permission bits, e.g. 0640")->required();
  s->add_option("name", v.chmod.name, kNameHelp)->required();
  s->add_flag("-v,--verbose", v.chmod.verbose, "print the old and new mode");

  s = verb(app, v, "write", "copy stdin into a segment (an error if it does not fit)", v.write,
           cmd_write);
  s->add_option("name", v.write.name, kNameHelp)->required();
  s->add_option("-o,--offset", v.write.offset, std::string("where to start: ") + kBytesHelp);
  s->add_flag("-v,--verbose", v.write.verbose, "print the number of bytes written");

  s = verb(app, v, "cat", "copy a segment's bytes to stdout", v.cat, cmd_cat);
  s->add_option("name", v.cat.name, kNameHelp)->required();
  s->add_option("-o,--offset", v.cat.offset, std::string("where to start: ") + kBytesHelp);
  s->add_option("-n,--length", v.cat.length, "how many bytes (default: to the end)");

  s = verb(app, v, "dump", "show a segment in hex and text, like xxd", v.dump, cmd_dump);
  s->add_option("name", v.dump.name, kNameHelp)->required();
  s->add_option("-o,--offset", v.dump.offset, std::string("where to start: ") + kBytesHelp);
  s->add_option("-n,--length", v.dump.length, "how many bytes (default: to the end)");

  s = verb(app, v, "wait",
           "attach read-only, print the first word, wait for Enter or Ctrl-C, print it again",
           v.wait, cmd_wait);
  s->add_option("name", v.wait.name, kNameHelp)->required();

  s = verb(app, v, "check", "join an arena and check every structure in it: ok, or exit 1", v.check,
           cmd_check);
  s->add_option("name", v.check.name, kNameHelp)->required();

  s = verb(app, v, "gc", "remove arenas whose users are all dead and that no process has open",
           v.gc, cmd_gc);
  s->add_option("names", v.gc.names, "only these (default: every arena on the machine)");
  s->add_flag("-n,--dry-run", v.gc.dry_run, "only say what would be removed");

  s = verb(app, v, "send", "send each line of stdin as a message on a channel", v.send, cmd_send);
  add_channel_options(s, v.send.channel);
  s->add_flag("-v,--verbose", v.send.verbose, "say how many messages were sent");

  s = verb(app, v, "recv", "print a channel's messages, one per line, until it is closed",
           v.recv, cmd_recv);
  add_channel_options(s, v.recv.channel);
  s->add_option("-n,--count", v.recv.count, "stop after this many messages");
  s->add_flag("-f,--follow", v.recv.follow, "keep waiting after the producers have left");
  s->add_flag("--flush", v.recv.flush, "flush stdout after each message");

  verb(app, v, "demo", "a short tour: processes sharing memory, step by step", v.demo, cmd_demo);

  const std::vector<std::string> layers = bench_layers();
  const std::string layer_help =
      layers.empty() ? std::string("benchmarks were not built")
                     : fmt::format("layer to benchmark: {}", fmt::join(layers, ", "));
  s = verb(app, v, "bench", "compare shmkit with the usual alternatives", v.bench, cmd_bench);
  s->add_option("layer", v.bench.layer, layer_help);
  s->add_flag("--json", v.bench.json, "print one JSON object");
  s->add_flag("--quick", v.bench.quick, "a few seconds instead of a full run");
  s->add_option("--cpu", v.bench.cpu, "pin to this CPU");
  s->add_option("--transports", v.bench.transports,
                "ipc: only these, comma-separated (pipe,unix,posix-mq,sysv-mq,iceoryx,"
                "iceoryx-waitset,shmkit-busy,shmkit-spin,shmkit-block,shmkit-zero-copy,"
                "cacheline,futex,memcpy)")
      ->delimiter(',');
  s->add_option("--sizes", v.bench.sizes, "ipc: message sizes, comma-separated (default 64,4K,1M)")
      ->delimiter(',');
  s->add_option("--duration", v.bench.duration, "ipc: seconds per measurement, roughly")
      ->check(CLI::Range(0.001, 3600.0));
  s->add_option("--plot", v.bench.plot, "ipc: write the results as an SVG bar chart to this file");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"shmkit: see, create, read, write and remove shared memory (POSIX and System V)",
               "shmkit"};
  app.set_version_flag("--version", std::string("shmkit ") + shmkit::kVersion);
  app.require_subcommand(1);
  app.footer(
      "Names: /name (POSIX, the default), sysv:0x1234, sysv:@/path:7, sysv:id=42, sysv:private,\n"
      "file:/path. Exit status: 0 ok, 1 failed (one line on stderr), 2 usage error.");
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return fmt::format("shmkit: {}\nRun 'shmkit --help' for more information.\n", e.what());
  });
  Verbs verbs;
  add_verbs(app, verbs);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);
    return status == 0 ? 0 : 2;
  }

  try {
    return verbs.chosen();
  } catch (const shmkit::Error& e) {
    return report(e);
  } catch (const std::exception& e) {
    return report(e.what());
  }
}
