// SPDX-License-Identifier: MIT
// What the slow paths of Ring, Queue and Broadcast share: send() of a copy, and how a call
// waits — in slices that end at each wake-up, to notice that the other side has gone
// (closed), and every 100 ms without progress, to drop dead peers (reap), so a dead peer
// never makes a live one wait forever.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstring>

#include "shmkit/arena.hpp"
#include "shmkit/channel/channel.hpp"

namespace shmkit::detail {

// Long enough for a partner on another core to answer (a wake-up costs 35-45 µs on small
// VMs, docs/sync.md), short enough that an idle peer stops burning CPU at once.
inline constexpr std::chrono::microseconds kChannelSpin{50};
// How many times a spinning waiter looks before it reads the clock (about 1-5 µs).
inline constexpr int kQuickLooks = 128;
// How long a waiter goes without progress before it looks for dead peers, and how often after.
inline constexpr std::chrono::milliseconds kReapEvery{100};

// A producer that finds the channel full: the consumers are behind. Reading their counter or
// slot in a tight loop would take its cache line away at each release and slow them further
// (the two sides then move in lockstep, a line transfer a message), so it looks less and less
// often, for about 1-10 µs, before the usual wait. True as soon as ready().
template <class Ready>
bool back_off_until(Ready& ready) {
  if (!this_thread().spin) return false;
  for (unsigned pauses = 8; pauses <= 512; pauses *= 2) {
    for (unsigned i = 0; i < pauses; ++i) cpu_relax();
    if (ready()) return true;
  }
  return false;
}

// Waits in `mode` until ready(), a wake-up or `deadline`; true when ready. `spin` bounds the
// spinning of Wait::spin_then_block. A wake-up that finds ready() false returns too: the
// caller looks again at what else it waits for (leave() notifies so that closed() is seen).
template <class Ready>
bool wait_slice(Wait mode, Event& event, Ready& ready, ChannelBase::Clock::time_point deadline,
                std::chrono::nanoseconds spin) {
  using Clock = ChannelBase::Clock;
  if (mode == Wait::busy_poll) {
    for (unsigned i = 1;; ++i) {
      if (ready()) return true;
      cpu_relax();
      if ((i & 255) == 0 && Clock::now() >= deadline) return ready();
    }
  }
  if (mode == Wait::spin_then_block && spin > spin.zero() && this_thread().spin) {
    const Clock::time_point spin_end = Clock::now() + spin;
    for (unsigned i = 1;; ++i) {
      if (ready()) return true;
      cpu_relax();
      if ((i & 63) == 0 && Clock::now() >= spin_end) break;
    }
  }
  const std::uint32_t key = event.prepare_wait();
  if (ready()) {
    event.cancel_wait();
    return true;
  }
  (void)event.wait_until(key, deadline);
  return ready();
}

}  // namespace shmkit::detail

namespace shmkit {

template <class Ready>
bool ChannelBase::wait_until(Event& event, Ready ready, Clock::time_point deadline,
                             bool closing) {
  // A partner on another core mostly answers within a few hundred nanoseconds: look a while
  // before paying for clock reads (tens of ns under a hypervisor) and the peer counters.
  if (wait_ != Wait::block && detail::this_thread().spin) {
    for (int i = 0; i < detail::kQuickLooks; ++i) {
      if (ready()) return true;
      detail::cpu_relax();
    }
  }
  std::chrono::nanoseconds spin = detail::kChannelSpin;
  Clock::time_point reap_at = Clock::now() + detail::kReapEvery;
  for (;;) {
    if (closing && closed()) return ready();
    const Clock::time_point now = Clock::now();
    if (now >= deadline) return ready();
    if (now >= reap_at) {
      (void)reap_for_waiter(&event == &hdr_->not_empty ? Role::producer : Role::consumer);
      reap_at = now + detail::kReapEvery;
      continue;  // what was reaped may have closed the channel
    }
    if (detail::wait_slice(wait_, event, ready, std::min(deadline, reap_at), spin)) return true;
    spin = std::chrono::nanoseconds::zero();  // spun once; from now on sleep at once
  }
}

template <class Channel>
bool ChannelBase::send_copy(Channel& c, std::span<const std::byte> message,
                            std::chrono::nanoseconds timeout) {
  if (message.size() > c.slot_size_) {
    if constexpr (requires { c.publish_block(std::span<std::byte>{}, timeout); }) {
      if (c.arena_ != nullptr) {
        const std::span<std::byte> block = c.allocate_block(message.size());
        std::memcpy(block.data(), message.data(), message.size());
        if (c.publish_block(block, timeout)) return true;
        c.arena_->deallocate(block.data());  // not sent: still ours
        return false;
      }
    }
    c.throw_too_big(message.size());
  }
  const std::span<std::byte> s = c.loan(timeout);
  if (s.empty()) return false;
  if (!message.empty()) std::memcpy(s.data(), message.data(), message.size());
  c.publish(message.size());
  return true;
}

template <class Channel>
bool ChannelBase::try_send_copy(Channel& c, std::span<const std::byte> message) {
  if (message.size() > c.slot_size_) [[unlikely]] c.throw_too_big(message.size());
  const std::span<std::byte> s = c.try_loan();
  if (s.empty()) return false;
  if (!message.empty()) std::memcpy(s.data(), message.data(), message.size());
  c.publish(message.size());
  return true;
}

template <class Channel>
bool ChannelBase::publish_block_in(Channel& c, std::span<std::byte> block,
                                   std::chrono::nanoseconds timeout) {
  c.require_blocks("publish a block");
  const std::span<std::byte> s = c.loan(timeout);
  if (s.empty()) return false;
  const detail::BlockRef ref{c.arena_->offset_of(block.data()), block.size()};
  std::memcpy(s.data(), &ref, sizeof ref);
  c.publish_as(sizeof ref, detail::kSlotBlock);
  return true;
}

}  // namespace shmkit
