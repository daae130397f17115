/* SPDX-License-Identifier: MIT */
/* Seed 001, Example 3-4 "Resigning From an Arena", in C for <ulocks.h>. The lock lines the
 * seed's copy lost are back.
 *
 * The following function reverses the operation of joinArena. Even if the calling process is
 * the last one to hold the arena, nothing drastic is done. This is because it is impossible to
 * perform {usinit(); usgetinfo(); ussetlock();} as an atomic sequence. Once an arena comes into
 * being it must remain usable until the entire application shuts down. Unlinking the arena
 * file can be the last thing that main() does. */
#include "arena_stuff.h"

void resignArena(usptr_t *arena) {
  arenaStuff_t *stuff = (arenaStuff_t *)usgetinfo(arena);
  ussetlock(stuff->updateLock);
  --stuff->joinedProcs;
  usunsetlock(stuff->updateLock);
}
