// SPDX-License-Identifier: MIT
// Everything shmkit offers, in one include.
#pragma once

#include "shmkit/allocator.hpp"
#include "shmkit/arena.hpp"
#include "shmkit/barrier.hpp"
#include "shmkit/channel/broadcast.hpp"
#include "shmkit/channel/channel.hpp"
#include "shmkit/channel/queue.hpp"
#include "shmkit/channel/ring.hpp"
#include "shmkit/condition.hpp"
#include "shmkit/error.hpp"
#include "shmkit/event.hpp"
#include "shmkit/hash_map.hpp"
#include "shmkit/mutex.hpp"
#include "shmkit/name.hpp"
#include "shmkit/offset_ptr.hpp"
#include "shmkit/segment.hpp"
#include "shmkit/semaphore.hpp"
#include "shmkit/shared_mutex.hpp"
#include "shmkit/string.hpp"
#include "shmkit/version.hpp"
