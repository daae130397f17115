/* SPDX-License-Identifier: MIT */
/* IRIX programs write #include <ulocks.h>: the IRIX compat API, <shmkit/compat/ulocks.h>. */
#include <shmkit/compat/ulocks.h>
