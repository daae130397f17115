// SPDX-License-Identifier: MIT
// Everything shmkit offers, in one include.
#pragma once

#include "shmkit/error.hpp"
#include "shmkit/name.hpp"
#include "shmkit/segment.hpp"
#include "shmkit/version.hpp"
