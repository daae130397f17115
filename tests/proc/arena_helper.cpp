// SPDX-License-Identifier: MIT
// A program arena_proc_test runs with fork+exec: processes racing on an arena, unrelated.
//   arena_helper race|join|hang ARENA CONTROL
// race: count in, wait for "go", open_or_create; join: open_or_create now; hang: open_or_create
// with an init that never returns. Init counts itself in CONTROL (which outlives the arena),
// builds the InitMark "init-mark", sleeps 50 ms and only then completes it: a process that
// returns before init finished sees it unfinished. Exit: 10 ran init, 11 joined, 2..9 saw
// something wrong (printed), a shmkit::Error's errno, 100 bad usage.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "shmkit/arena.hpp"
#include "shmkit/segment.hpp"

// Shared with arena_proc_test.cpp, which declares the same names: keep them identical.
namespace shmkit_arena_helper {

/// Words of the CONTROL segment (std::atomic<int> each).
enum Word : int { kReady = 0, kGo = 1, kInits = 2, kInInit = 3, kWords = 16 };

/// What init builds. `runs` counts the inits this arena has seen since it was last made
/// from zero; `value` is written last, after the sleep.
struct InitMark {
  std::uint64_t value;
  std::uint32_t runs;
  std::uint32_t creator;
};
inline constexpr std::uint64_t kInitValue = 0x5eed5eed5eed5eedULL;

/// The configuration every helper (and the test) uses for the raced arena.
inline shmkit::ArenaConfig race_config() {
  shmkit::ArenaConfig c;
  c.size = 1 << 20;
  c.max_size = 64 << 20;
  return c;
}

}  // namespace shmkit_arena_helper

namespace {

using namespace shmkit_arena_helper;
using shmkit::Arena;

std::atomic<int>* words(const shmkit::Segment& control) {
  return static_cast<std::atomic<int>*>(control.data());
}

bool wait_for(const std::atomic<int>& word, int value, int seconds) {
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (word.load(std::memory_order_acquire) != value) {
    if (std::chrono::steady_clock::now() > limit) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return true;
}

int run(int argc, char** argv) {
  const std::string verb = argc > 1 ? argv[1] : "";
  if (argc != 4 || (verb != "race" && verb != "join" && verb != "hang")) {
    std::fprintf(stderr, "usage: arena_helper race|join|hang ARENA CONTROL\n");
    return 100;
  }
  const char* name = argv[2];
  shmkit::Segment control = shmkit::Segment::open(argv[3]);
  std::atomic<int>* w = words(control);
  if (verb == "race") {
    w[kReady].fetch_add(1, std::memory_order_acq_rel);
    if (!wait_for(w[kGo], 1, 30)) {
      std::fprintf(stderr, "arena_helper: no go after 30 s\n");
      return 9;
    }
  }
  const bool hang = verb == "hang";
  bool ran = false;
  Arena arena = Arena::open_or_create(name, race_config(), [&](Arena& a) {
    ran = true;
    w[kInits].fetch_add(1, std::memory_order_acq_rel);
    auto* mark = a.construct<InitMark>("init-mark");
    mark->runs += 1;
    mark->creator = static_cast<std::uint32_t>(w[kInits].load(std::memory_order_relaxed));
    a.set_root(mark);
    if (hang) {
      w[kInInit].store(1, std::memory_order_release);
      for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));  // killed here
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    mark->value = kInitValue;
  });
  if (ran != arena.created()) {
    std::fprintf(stderr, "arena_helper: ran init %d but created() says %d\n", ran, arena.created());
    return 2;
  }
  // Whoever ran init, it has finished by now: the mark is complete.
  const auto* mark = arena.find<InitMark>("init-mark");
  if (mark == nullptr) {
    std::fprintf(stderr, "arena_helper: no init-mark after open_or_create\n");
    return 3;
  }
  if (mark->value != kInitValue || mark->runs != 1) {
    std::fprintf(stderr, "arena_helper: init-mark unfinished (value %llx, runs %u)\n",
                 static_cast<unsigned long long>(mark->value), mark->runs);
    return 4;
  }
  if (arena.root() != mark) {
    std::fprintf(stderr, "arena_helper: the root is not the init-mark\n");
    return 5;
  }
  // The arena is usable.
  void* p = arena.allocate(1000);
  std::memset(p, 0x42, 1000);
  arena.deallocate(p);
  return ran ? 10 : 11;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const shmkit::Error& e) {
    std::fprintf(stderr, "arena_helper: %s\n", e.what());
    return e.errnum();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "arena_helper: %s\n", e.what());
    return 99;
  }
}
