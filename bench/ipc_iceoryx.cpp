// SPDX-License-Identifier: MIT
// iceoryx for `shmkit bench ipc`: the broker (iox-roudi, started and stopped by the benchmark)
// and a transport over iceoryx's untyped publisher and subscriber. Built only when CMake found
// iceoryx_posh; the only file that includes iceoryx headers.
//
// The one idea: an iceoryx runtime belongs to one process and cannot be forked, so each child
// initialises its own after fork (Transport::open) and leaves through exit() (Transport::close),
// whose static destructors deregister it from RouDi; the benchmark process never touches iceoryx.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "iceoryx_hoofs/log/logmanager.hpp"
#include "iceoryx_posh/popo/untyped_publisher.hpp"
#include "iceoryx_posh/popo/untyped_subscriber.hpp"
#include "iceoryx_posh/popo/wait_set.hpp"
#include "iceoryx_posh/runtime/posh_runtime.hpp"
#include "iceoryx_versions.hpp"
#include "ipc_transports.hpp"
#include "shmkit/detail/robust.hpp"

namespace shmkit::bench {

// ---- RouDi ----

namespace {

using namespace std::chrono_literals;

// RouDi prints this (at log level info) once its IPC channel takes registrations.
constexpr const char* kReadyLine = "RouDi is ready for clients";

std::string find_in_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  for (std::size_t begin = 0; begin <= dirs.size();) {
    std::size_t end = dirs.find(':', begin);
    if (end == std::string::npos) end = dirs.size();
    const std::string candidate = dirs.substr(begin, end - begin) + "/" + program;
    if (end > begin && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    begin = end + 1;
  }
  return "";
}

std::string read_all(int fd) {
  std::string text;
  char buf[4096];
  for (off_t at = 0;;) {
    const ssize_t n = ::pread(fd, buf, sizeof buf, at);
    if (n <= 0) return text;
    text.append(buf, static_cast<std::size_t>(n));
    at += n;
  }
}

// Why RouDi stopped, from its log without colour escapes: the first fatal line, else the last.
std::string reason(const std::string& log) {
  std::string line, last;
  for (std::size_t i = 0; i <= log.size(); ++i) {
    if (i == log.size() || log[i] == '\n') {
      if (line.find("Fatal") != std::string::npos) return line;
      if (!line.empty()) last = line;
      line.clear();
    } else if (log[i] == '\x1b') {
      while (i < log.size() && log[i] != 'm') ++i;
    } else {
      line += log[i];
    }
  }
  return last;
}

}  // namespace

Roudi::Roudi() {
  const std::string program = find_in_path("iox-roudi");
  if (program.empty()) {
    why_ = "iox-roudi not found in PATH";
    return;
  }
  // Its output goes to a nameless file, so that --json keeps stdout clean.
  log_fd_ = ::memfd_create("iox-roudi-log", MFD_CLOEXEC);
  if (log_fd_ < 0) {
    why_ = std::string("memfd_create: ") + std::strerror(errno);
    return;
  }
  const pid_t parent = ::getpid();
  std::fflush(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) {
    why_ = std::string("fork: ") + std::strerror(errno);
    return;
  }
  if (pid_ == 0) {
    // Never outlive the benchmark, even if it is SIGKILLed; and take no Ctrl-C from the
    // terminal: the benchmark stops it in order, after its clients (see stop()).
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);
    const int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, STDIN_FILENO);
    ::dup2(log_fd_, STDOUT_FILENO);
    ::dup2(log_fd_, STDERR_FILENO);
    ::execl(program.c_str(), "iox-roudi", "--log-level", "info", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  for (const auto deadline = std::chrono::steady_clock::now() + 10s;;) {
    const std::string log = read_all(log_fd_);
    if (log.find(kReadyLine) != std::string::npos) return;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      why_ = "iox-roudi exited at start (another RouDi running?): " + reason(log);
      return;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      stop();
      why_ = "iox-roudi not ready after 10 s: " + reason(log);
      return;
    }
    std::this_thread::sleep_for(10ms);
  }
}

Roudi::~Roudi() {
  stop();
  if (log_fd_ >= 0) ::close(log_fd_);
}

void Roudi::stop() noexcept {
  if (pid_ <= 0) return;
  // RouDi 2.0 signals each registered client at shutdown and aborts, leaving its shared
  // memory behind, when one is gone: give it time to drop a killed client first (it does
  // after PROCESS_KEEP_ALIVE_TIMEOUT without a heartbeat).
  if (client_died_) {
    std::this_thread::sleep_for(
        std::chrono::milliseconds(iox::runtime::PROCESS_KEEP_ALIVE_TIMEOUT.toMilliseconds() + 500));
  }
  ::kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 500; ++i) {  // 5 s: it unmaps and removes its shared memory first
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(10ms);
  }
  ::kill(pid_, SIGKILL);
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

// ---- The transport ----

namespace {

// iceoryx's fixed-capacity string from `text`; too long is an error, never a truncation.
template <class FixedString>
FixedString fixed(const std::string& text) {
  FixedString s;
  if (!s.unsafe_assign(text)) throw std::runtime_error("iceoryx: name too long: " + text);
  return s;
}

class Iceoryx : public Transport {
 public:
  Iceoryx(std::size_t size, std::uint64_t queue, bool busy, std::string tag, Roudi& roudi)
      : size_(size), queue_(queue), busy_(busy), tag_(std::move(tag)), roudi_(roudi) {}

  // Only the benchmark process destroys this object (the children leave through exit() or
  // _exit()). A child that was killed left its runtime's socket behind, and RouDi's record.
  ~Iceoryx() override {
    for (const char* end : {"-a", "-b"}) {
      const std::string socket = iox::platform::IOX_UDS_SOCKET_PATH_PREFIX + tag_ + end;
      if (::unlink(socket.c_str()) == 0) {
        ::unlink((socket + ".lock").c_str());
        roudi_.client_died();
      }
    }
  }

  void open(End end) override {
    // stdout carries the report (one JSON object with --json): iceoryx logs to stderr.
    ::dup2(STDERR_FILENO, STDOUT_FILENO);
    iox::log::LogManager::GetLogManager().SetDefaultLogLevel(
        iox::log::LogLevel::kWarn, iox::log::LogLevelOutput::kHideLogLevel);
    const bool a = end == End::a;
    const std::string runtime = tag_ + (a ? "-a" : "-b");
    iox::runtime::PoshRuntime::initRuntime(fixed<iox::RuntimeName_t>(runtime));

    iox::popo::PublisherOptions publisher;
    publisher.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
    iox::popo::SubscriberOptions subscriber;
    subscriber.queueCapacity = queue_;
    subscriber.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
    publisher_.emplace(service(a ? "ab" : "ba"), publisher);
    subscriber_.emplace(service(a ? "ba" : "ab"), subscriber);
    if (!busy_) {
      waitset_.emplace();
      if (waitset_->attachState(*subscriber_, iox::popo::SubscriberState::HAS_DATA).has_error()) {
        throw std::runtime_error("iceoryx: cannot attach the subscriber to a WaitSet");
      }
    }
    wait_until_connected();
  }

  void send(std::uint64_t seq) override {
    auto loan = publisher_->loan(static_cast<std::uint32_t>(size_));
    if (loan.has_error()) throw std::runtime_error("iceoryx: loan failed (out of chunks?)");
    void* payload = loan.value();
    write_message(static_cast<std::byte*>(payload), size_, seq);
    publisher_->publish(payload);
  }

  std::uint64_t receive() override {
    for (;;) {
      auto taken = subscriber_->take();
      if (!taken.has_error()) {
        const void* payload = taken.value();
        const std::uint64_t seq = read_message(static_cast<const std::byte*>(payload), size_);
        subscriber_->release(payload);
        return seq;
      }
      if (taken.get_error() != iox::popo::ChunkReceiveResult::NO_CHUNK_AVAILABLE) {
        throw std::runtime_error("iceoryx: take failed (too many chunks held)");
      }
      if (busy_) {
        detail::cpu_relax();
      } else {
        waitset_->wait();
      }
    }
  }

  // Ports first, then the runtime: it is a function-local static, which only exit() destroys
  // (Child::start would _exit), and its destructor deregisters this process from RouDi.
  void close() override {
    waitset_.reset();
    subscriber_.reset();
    publisher_.reset();
    std::fflush(nullptr);
    std::exit(0);
  }

 private:
  iox::capro::ServiceDescription service(const std::string& direction) const {
    using Id = iox::capro::IdString_t;
    return {fixed<Id>("shmkit-bench"), fixed<Id>(tag_), fixed<Id>(direction)};
  }

  // RouDi connects ports in its discovery loop (every 100 ms or so): sending before it has
  // would lose the message.
  void wait_until_connected() const {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!publisher_->hasSubscribers() ||
           subscriber_->getSubscriptionState() != iox::SubscribeState::SUBSCRIBED) {
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("iceoryx: ports not connected after 10 s");
      }
      std::this_thread::sleep_for(1ms);
    }
  }

  std::size_t size_;
  std::uint64_t queue_;
  bool busy_;
  std::string tag_;
  Roudi& roudi_;
  std::optional<iox::popo::UntypedPublisher> publisher_;
  std::optional<iox::popo::UntypedSubscriber> subscriber_;
  std::optional<iox::popo::WaitSet<>> waitset_;
};

}  // namespace

const char* iceoryx_version() noexcept { return ICEORYX_LATEST_RELEASE_VERSION; }

std::unique_ptr<Transport> make_iceoryx(std::size_t size, std::uint64_t queue, bool busy,
                                        const std::string& tag, Roudi& roudi) {
  return std::make_unique<Iceoryx>(size, queue, busy, tag, roudi);
}

}  // namespace shmkit::bench
