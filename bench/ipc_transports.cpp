// SPDX-License-Identifier: MIT
// The transports of `shmkit bench ipc` but iceoryx (ipc_iceoryx.cpp): pipes, a UNIX socket,
// POSIX and System V message queues, shmkit Rings, and the two physical floors (a cache line
// and a futex word). Benchmarks call the kernel directly, as the peers they measure do.
#include "ipc_transports.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <mqueue.h>
#include <sys/msg.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "harness.hpp"
#include "shmkit/channel/queue.hpp"
#include "shmkit/detail/robust.hpp"

namespace shmkit::bench {

// ---- Messages ----

void write_message(std::byte* payload, std::size_t size, std::uint64_t seq) noexcept {
  std::memset(payload, static_cast<int>(seq & 0xff), size);
  std::memcpy(payload, &seq, sizeof seq);
}

std::uint64_t read_message(const std::byte* payload, std::size_t size) {
  std::uint64_t seq = 0, mismatches = 0;
  std::memcpy(&seq, payload, sizeof seq);
  const std::uint64_t fill = (seq & 0xff) * 0x0101010101010101ull;
  // One word per 64 bytes, and the last word: a payload that does not start on a cache line
  // (a Ring slot's starts 16 bytes in) has its end on a line of its own.
  auto check = [&](std::size_t off) {
    std::uint64_t word = 0;
    std::memcpy(&word, payload + off, sizeof word);
    mismatches += word != fill;
  };
  for (std::size_t off = kLine; off + sizeof seq <= size; off += kLine) check(off);
  if (size >= 2 * sizeof seq) check(size - sizeof seq);
  if (mismatches != 0)
    throw std::runtime_error("torn message: its lines belong to different messages");
  return seq;
}

namespace {

[[noreturn]] void fail(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// True when a call failed with EINTR and should be retried (unless the run is stopping).
bool retry() {
  if (errno != EINTR) return false;
  throw_if_stop_requested();
  return true;
}

std::size_t read_proc_number(const char* path, std::size_t fallback) {
  std::ifstream in(path);
  std::size_t value = 0;
  return in >> value ? value : fallback;
}

int index_of(End end) { return end == End::a ? 0 : 1; }

// ---- Byte streams: pipes and a UNIX socket ----

class Stream : public Transport {
 public:
  // fds[end] = {read, write}; for a socket both are the same descriptor.
  Stream(std::size_t size, int a_read, int a_write, int b_read, int b_write)
      : fds_{{a_read, a_write}, {b_read, b_write}}, out_(size), in_(size) {}
  ~Stream() override {
    for (int i = 0; i < 4; ++i) close_fd(fds_[i / 2][i % 2]);
  }

  void open(End end) override {
    const int mine = index_of(end);
    for (int fd : fds_[1 - mine]) close_fd(fd);
    read_fd_ = fds_[mine][0];
    write_fd_ = fds_[mine][1];
  }

  void send(std::uint64_t seq) override {
    write_message(out_.data(), out_.size(), seq);
    std::size_t done = 0;
    while (done < out_.size()) {
      const ssize_t n = ::write(write_fd_, out_.data() + done, out_.size() - done);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
      } else if (!retry()) {
        fail("write");
      }
    }
  }

  std::uint64_t receive() override {
    std::size_t done = 0;
    while (done < in_.size()) {
      const ssize_t n = ::read(read_fd_, in_.data() + done, in_.size() - done);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
      } else if (n == 0) {
        throw std::runtime_error("read: the peer closed its end");
      } else if (!retry()) {
        fail("read");
      }
    }
    return read_message(in_.data(), in_.size());
  }

 private:
  // Closes `fd` once, however many slots hold it.
  void close_fd(int fd) noexcept {
    if (fd < 0) return;
    ::close(fd);
    for (auto& pair : fds_) {
      for (int& slot : pair) {
        if (slot == fd) slot = -1;
      }
    }
  }

  int fds_[2][2];
  int read_fd_ = -1, write_fd_ = -1;
  std::vector<std::byte> out_, in_;
};

// ---- POSIX message queues ----

class PosixMq : public Transport {
 public:
  PosixMq(std::size_t size, long depth, const std::string names[2]) : out_(size), in_(size) {
    mq_attr attr{};
    attr.mq_maxmsg = depth;
    attr.mq_msgsize = static_cast<long>(size);
    for (int d = 0; d < 2; ++d) {
      queues_[d] = ::mq_open(names[d].c_str(), O_CREAT | O_EXCL | O_RDWR, 0600, &attr);
      if (queues_[d] == static_cast<mqd_t>(-1)) fail("mq_open");
      // Both children inherit the descriptor: the name is not needed past this point.
      ::mq_unlink(names[d].c_str());
    }
  }
  ~PosixMq() override {
    for (mqd_t q : queues_) {
      if (q != static_cast<mqd_t>(-1)) ::mq_close(q);
    }
  }

  void open(End end) override {
    send_q_ = queues_[index_of(end)];
    receive_q_ = queues_[1 - index_of(end)];
  }

  void send(std::uint64_t seq) override {
    write_message(out_.data(), out_.size(), seq);
    while (::mq_send(send_q_, reinterpret_cast<const char*>(out_.data()), out_.size(), 0) != 0) {
      if (!retry()) fail("mq_send");
    }
  }

  std::uint64_t receive() override {
    ssize_t n;
    while ((n = ::mq_receive(receive_q_, reinterpret_cast<char*>(in_.data()), in_.size(),
                             nullptr)) < 0) {
      if (!retry()) fail("mq_receive");
    }
    if (static_cast<std::size_t>(n) != in_.size()) throw std::runtime_error("mq_receive: short");
    return read_message(in_.data(), in_.size());
  }

 private:
  mqd_t queues_[2] = {static_cast<mqd_t>(-1), static_cast<mqd_t>(-1)};
  mqd_t send_q_ = -1, receive_q_ = -1;
  std::vector<std::byte> out_, in_;
};

// ---- System V message queues ----

class SysvMq : public Transport {
 public:
  // A message is {long mtype; payload}: the buffers hold the type word, then `size` bytes.
  explicit SysvMq(std::size_t size)
      : size_(size), out_(sizeof(long) + size), in_(sizeof(long) + size) {
    for (int& id : ids_) {
      id = ::msgget(IPC_PRIVATE, IPC_CREAT | 0600);
      if (id < 0) fail("msgget");
    }
    const long type = 1;
    std::memcpy(out_.data(), &type, sizeof type);
  }
  ~SysvMq() override {
    for (int id : ids_) {
      if (id >= 0) ::msgctl(id, IPC_RMID, nullptr);
    }
  }

  void open(End end) override {
    send_id_ = ids_[index_of(end)];
    receive_id_ = ids_[1 - index_of(end)];
  }

  void send(std::uint64_t seq) override {
    write_message(out_.data() + sizeof(long), size_, seq);
    while (::msgsnd(send_id_, out_.data(), size_, 0) != 0) {
      if (!retry()) fail("msgsnd");
    }
  }

  std::uint64_t receive() override {
    ssize_t n;
    while ((n = ::msgrcv(receive_id_, in_.data(), size_, 0, 0)) < 0) {
      if (!retry()) fail("msgrcv");
    }
    if (static_cast<std::size_t>(n) != size_) throw std::runtime_error("msgrcv: short");
    return read_message(in_.data() + sizeof(long), size_);
  }

 private:
  std::size_t size_;
  int ids_[2] = {-1, -1};
  int send_id_ = -1, receive_id_ = -1;
  std::vector<std::byte> out_, in_;
};

// ---- shmkit Ring ----

// A Ring, or a Queue used one-to-one (what its many-producer protocol costs over a Ring's).
template <class Channel>
class RingTransport : public Transport {
 public:
  RingTransport(std::size_t size, std::size_t capacity, Wait mode, bool zero_copy)
      : size_(size), mode_(mode), zero_copy_(zero_copy) {
    const ChannelConfig shape{size, capacity, 2, Overflow::block};
    rings_[0] = Channel::create_anonymous(shape);
    rings_[1] = Channel::create_anonymous(shape);
    if (!zero_copy) {
      out_buffer_.resize(size);
      in_buffer_.resize(size);
    }
  }

  void open(End end) override {
    out_ = &rings_[index_of(end)];
    in_ = &rings_[1 - index_of(end)];
    out_->join(Role::producer);
    in_->join(Role::consumer);
    out_->set_wait(mode_);
    in_->set_wait(mode_);
  }

  void send(std::uint64_t seq) override {
    if (zero_copy_) {
      const std::span<std::byte> slot = out_->loan();
      if (slot.empty()) throw std::runtime_error("ring loan: the consumer is gone");
      write_message(slot.data(), size_, seq);
      out_->publish(size_);
    } else {
      write_message(out_buffer_.data(), size_, seq);
      if (!out_->send(out_buffer_)) throw std::runtime_error("ring send: the consumer is gone");
    }
  }

  std::uint64_t receive() override {
    if (zero_copy_) {
      const ChannelBase::View view = in_->receive();
      if (!view || view.size != size_) throw std::runtime_error("ring receive: no message");
      const std::uint64_t seq = read_message(view.data, view.size);
      in_->release();
      return seq;
    }
    const std::optional<std::size_t> n = in_->receive(in_buffer_);
    if (!n || *n != size_) throw std::runtime_error("ring receive: no message");
    return read_message(in_buffer_.data(), size_);
  }

 private:
  std::size_t size_;
  Wait mode_;
  bool zero_copy_;
  Channel rings_[2];
  Channel* out_ = nullptr;
  Channel* in_ = nullptr;
  std::vector<std::byte> out_buffer_, in_buffer_;
};

// ---- The floors: a cache line, a futex word ----

template <class Word>
struct alignas(kLine) Line {
  std::atomic<Word> value{0};
};

// Shared by both children: line d carries direction d (0: a->b, 1: b->a).
template <class Word>
struct Lines {
  Line<Word> line[2];
};
static_assert(sizeof(Lines<std::uint64_t>) == 2 * kLine);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free &&
              std::atomic<std::uint32_t>::is_always_lock_free);

class Cacheline : public Transport {
 public:
  void open(End end) override {
    out_ = &lines_->line[index_of(end)].value;
    in_ = &lines_->line[1 - index_of(end)].value;
  }
  void send(std::uint64_t seq) override { out_->store(seq, std::memory_order_release); }
  std::uint64_t receive() override {
    std::uint64_t v;
    while ((v = in_->load(std::memory_order_acquire)) == last_) detail::cpu_relax();
    last_ = v;
    return v;
  }

 private:
  SharedObject<Lines<std::uint64_t>> lines_;
  std::atomic<std::uint64_t>* out_ = nullptr;
  std::atomic<std::uint64_t>* in_ = nullptr;
  std::uint64_t last_ = 0;
};

long futex(std::atomic<std::uint32_t>* word, int op, std::uint32_t value) noexcept {
  // Process-shared: no FUTEX_PRIVATE_FLAG, the word lives in MAP_SHARED memory.
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), op, value, nullptr, nullptr,
                   0);
}

class Futex : public Transport {
 public:
  void open(End end) override {
    out_ = &words_->line[index_of(end)].value;
    in_ = &words_->line[1 - index_of(end)].value;
  }
  void send(std::uint64_t seq) override {
    out_->store(static_cast<std::uint32_t>(seq), std::memory_order_release);
    futex(out_, FUTEX_WAKE, 1);
  }
  std::uint64_t receive() override {
    for (;;) {
      const std::uint32_t v = in_->load(std::memory_order_acquire);
      if (v != last_) {
        last_ = v;
        return v;
      }
      futex(in_, FUTEX_WAIT, last_);  // EAGAIN (changed already) or EINTR: look again
    }
  }

 private:
  SharedObject<Lines<std::uint32_t>> words_;
  std::atomic<std::uint32_t>* out_ = nullptr;
  std::atomic<std::uint32_t>* in_ = nullptr;
  std::uint32_t last_ = 0;
};

}  // namespace

// ---- Factories ----

std::unique_ptr<Transport> make_pipe(std::size_t size) {
  int ab[2], ba[2];
  if (::pipe(ab) != 0) fail("pipe");
  if (::pipe(ba) != 0) {
    const int saved = errno;
    ::close(ab[0]);
    ::close(ab[1]);
    errno = saved;
    fail("pipe");
  }
  // a reads b->a and writes a->b; b the opposite.
  return std::make_unique<Stream>(size, ba[0], ab[1], ab[0], ba[1]);
}

std::unique_ptr<Transport> make_unix_socket(std::size_t size) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) fail("socketpair");
  return std::make_unique<Stream>(size, sv[0], sv[0], sv[1], sv[1]);
}

std::unique_ptr<Transport> make_posix_mq(std::size_t size, long depth, const std::string names[2]) {
  return std::make_unique<PosixMq>(size, depth, names);
}

std::unique_ptr<Transport> make_sysv_mq(std::size_t size) { return std::make_unique<SysvMq>(size); }

std::size_t posix_mq_max_message() {
  return read_proc_number("/proc/sys/fs/mqueue/msgsize_max", 0);
}
std::size_t sysv_mq_max_message() { return read_proc_number("/proc/sys/kernel/msgmax", 0); }
long posix_mq_max_depth() {
  return static_cast<long>(read_proc_number("/proc/sys/fs/mqueue/msg_max", 10));
}

std::unique_ptr<Transport> make_ring(std::size_t size, std::size_t capacity, Wait mode,
                                     bool zero_copy) {
  return std::make_unique<RingTransport<Ring>>(size, capacity, mode, zero_copy);
}

std::unique_ptr<Transport> make_queue(std::size_t size, std::size_t capacity) {
  return std::make_unique<RingTransport<Queue>>(size, capacity, Wait::busy_poll, true);
}

std::unique_ptr<Transport> make_cacheline() { return std::make_unique<Cacheline>(); }
std::unique_ptr<Transport> make_futex() { return std::make_unique<Futex>(); }

}  // namespace shmkit::bench
