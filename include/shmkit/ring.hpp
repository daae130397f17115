// SPDX-License-Identifier: MIT
// The Ring moved to <shmkit/channel/ring.hpp>; this name stays for code that includes it.
#pragma once

#include "shmkit/channel/ring.hpp"
