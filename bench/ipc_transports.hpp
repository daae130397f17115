// SPDX-License-Identifier: MIT
// The transports `shmkit bench ipc` compares: one interface, one factory per peer.
//
// The one idea: a Transport is made by the benchmark process before it forks the two
// measuring processes, so that both inherit its pipes, queues and rings; after the fork each
// child calls open() with its End and then only send() and receive(). End::a sends on the
// a->b direction and receives on b->a; End::b the opposite. Every message is `size` bytes and
// carries a sequence number; the fairness rule is that the producer writes every byte once and
// the consumer reads every cache line once (write_message, read_message), in its own buffer or
// in place, so zero-copy is credited with the copies it saves and not with skipped work.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "shmkit/ring.hpp"

namespace shmkit::bench {

/// The two processes of a measurement: a pings or produces, b echoes or consumes.
enum class End { a, b };

/// Bytes per cache line: the consumer reads one word of each.
inline constexpr std::size_t kLine = 64;

/// The producer's one write of a message (`size` >= 8 bytes, in its own buffer or in place):
/// every byte, the low byte of `seq` as filler and `seq` itself in the first word.
void write_message(std::byte* payload, std::size_t size, std::uint64_t seq) noexcept;

/// The consumer's one read of a message: the first word of every 64-byte line. Returns the
/// sequence number; throws std::runtime_error when a line holds another message's filler.
std::uint64_t read_message(const std::byte* payload, std::size_t size);

/// One way for two processes to exchange messages of one size (see the file comment).
class Transport {
 public:
  virtual ~Transport() = default;
  /// Prepares this process's end after fork (closes the other end's descriptors, joins a
  /// ring, connects to a broker). Throws on failure.
  virtual void open(End end) = 0;
  /// Writes a message carrying `seq` (write_message) and sends it; blocks while it is full.
  virtual void send(std::uint64_t seq) = 0;
  /// Waits for the next message, reads it (read_message) and returns its sequence number.
  virtual std::uint64_t receive() = 0;
  /// Ends this process's use of the transport, last thing before the child exits; it may
  /// exit itself (iceoryx leaves through exit() so that its runtime deregisters).
  virtual void close() {}
};

// ---- Kernel transports ----

/// Two pipes, one per direction (default pipe size).
std::unique_ptr<Transport> make_pipe(std::size_t size);
/// A socketpair(AF_UNIX, SOCK_STREAM) (default buffer sizes).
std::unique_ptr<Transport> make_unix_socket(std::size_t size);
/// Two POSIX message queues, one per direction, of `depth` messages. `names` holds the two
/// queue names (registered with the CleanupScope); each is unlinked as soon as it is open.
std::unique_ptr<Transport> make_posix_mq(std::size_t size, long depth, const std::string names[2]);
/// Two System V message queues (IPC_PRIVATE), removed when the Transport is destroyed.
std::unique_ptr<Transport> make_sysv_mq(std::size_t size);

/// The largest message each queue takes: /proc/sys/fs/mqueue/msgsize_max and
/// /proc/sys/kernel/msgmax (0 when unreadable).
std::size_t posix_mq_max_message();
std::size_t sysv_mq_max_message();
/// The most messages a POSIX queue may hold: /proc/sys/fs/mqueue/msg_max (10 when unreadable).
long posix_mq_max_depth();

// ---- shmkit ----

/// Two anonymous Rings of `capacity` slots of `size` bytes, one per direction, waiting in
/// `mode`. zero_copy: loan(), write in the slot, publish(); receive(), read in the slot,
/// release(). Otherwise send() from and receive() into a private buffer (a copy each way).
std::unique_ptr<Transport> make_ring(std::size_t size, std::size_t capacity, Wait mode,
                                     bool zero_copy);
/// A Queue (many-producer, many-consumer) used one-to-one, busy-polled, zero-copy.
std::unique_ptr<Transport> make_queue(std::size_t size, std::size_t capacity);

// ---- Physical limits ----

/// One 8-byte counter per direction, each on its own cache line, busy-polled: the floor of
/// any shared-memory hand-over. Carries no payload beyond the counter.
std::unique_ptr<Transport> make_cacheline();
/// One futex word per direction: store, FUTEX_WAKE; FUTEX_WAIT until it changes (no spin,
/// process-shared): the floor of any blocking hand-over. Carries no payload.
std::unique_ptr<Transport> make_futex();

// ---- iceoryx (ipc_iceoryx.cpp: defined only when built with SHMKIT_BENCH_HAVE_ICEORYX) ----

/// iox-roudi, the iceoryx broker, run by the benchmark for as long as this object lives.
class Roudi {
 public:
  /// Starts iox-roudi (searched in PATH) and waits until it accepts registrations. On
  /// failure the object is empty and why() says what went wrong.
  Roudi();
  /// Stops it (SIGTERM, then SIGKILL after 5 s) and reaps it; first waits 2 s if a client
  /// died without deregistering, since RouDi would abort at shutdown.
  ~Roudi();
  Roudi(const Roudi&) = delete;
  Roudi& operator=(const Roudi&) = delete;
  explicit operator bool() const noexcept { return pid_ > 0; }
  const std::string& why() const noexcept { return why_; }
  /// Notes that a client was killed before it could deregister.
  void client_died() noexcept { client_died_ = true; }

 private:
  void stop() noexcept;
  int pid_ = -1;
  int log_fd_ = -1;  // memfd holding iox-roudi's output
  bool client_died_ = false;
  std::string why_;
};

/// The version of the iceoryx headers built against, e.g. "2.0.3".
const char* iceoryx_version() noexcept;

/// An iceoryx publisher and subscriber per direction (untyped API, subscriber queue of
/// `queue` chunks, producer blocked when it is full). busy: take() in a loop; otherwise a
/// WaitSet. Each End initialises its own runtime after fork, named after `tag` and the End;
/// the object tells `roudi` when it finds that an End was killed.
std::unique_ptr<Transport> make_iceoryx(std::size_t size, std::uint64_t queue, bool busy,
                                        const std::string& tag, Roudi& roudi);

}  // namespace shmkit::bench
