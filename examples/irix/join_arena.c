/* SPDX-License-Identifier: MIT */
/* Seed 001, Example 3-3 "Setting Up an Arena With uscasinfo()", in C for <ulocks.h>.
 * Unrelated processes call joinArena() on one path: the first to swap its arenaStuff into the
 * first datum with uscasinfo() initialises it while holding updateLock; the others wait on that
 * lock, so they see the arena only once it is ready. The seed's misprints are fixed: the
 * usinit() test needs parentheses, a stray ';' made the usnewlock() check always return, and
 * the ussetlock() and free-and-retry lines were lost from its copy. */
#include <stdio.h>
#include <unistd.h>

#include "arena_stuff.h"

void setUpArena(usptr_t *arena, arenaStuff_t *stuff) {
  stuff->work = (long *)uscalloc(1, sizeof(long), arena);
  stuff->setUpBy = (int)getpid();
  printf("setUpArena by %d\n", (int)getpid());
  fflush(stdout);
}

usptr_t *joinArena(char *arenaPath) {
  usptr_t *arena;
  arenaStuff_t *stuff;
  int ret;
  /* Join the arena, creating it if necessary. Exit on error. */
  if (!(arena = usinit(arenaPath))) return arena;
  /* Do the following as many times as necessary until the arena has been initialized. */
  for (ret = 0; !ret;) {
    if ((stuff = (arenaStuff_t *)usgetinfo(arena)) != NULL) {
      /* Another process has created the arena, and either has initialized it or is
       * initializing it right now. Acquire the lock, which will block us until
       * initializing is done. */
      if (ussetlock(stuff->updateLock) != 1) return (usptr_t *)0;
      /* here do anything needing exclusive use of arena */
      ++stuff->joinedProcs; /* another process has joined */
      usunsetlock(stuff->updateLock); /* release arena */
      ret = 1; /* end the loop */
    } else {
      /* This process appears to be first to call usinit(). Allocate an arenaStuff structure
       * with its updateLock already held and 1 process joined, and try to swap it into place
       * as the active one. If an error occurs, the arena is simply unusable, and we return
       * NULL to the caller. */
      if (!(stuff = (arenaStuff_t *)usmalloc(sizeof(arenaStuff_t), arena)))
        return (usptr_t *)0; /* should never occur */
      if (!(stuff->updateLock = usnewlock(arena))) return (usptr_t *)0; /* should never occur */
      if (!uscsetlock(stuff->updateLock, 1)) return (usptr_t *)0;      /* should never occur */
      stuff->joinedProcs = 1;
      if ((ret = uscasinfo(arena, 0, stuff)) != 0) {
        /* Our arenaStuff is now installed. Initialize it. We hold the lock in arenaStuff as
         * setUpArena expects. The loop ends because ret is now nonzero. */
        setUpArena(arena, stuff);
        usunsetlock(stuff->updateLock);
      } else {
        /* uscasinfo() either did not find a current value of 0 (a race with another process
         * executing this code) or it failed for some other reason. In any case, release
         * allocated stuff and repeat the loop (ret==0). */
        usunsetlock(stuff->updateLock);
        usfreelock(stuff->updateLock, arena);
        usfree(stuff, arena);
      }
    }
  } /* while uscasinfo swap fails */
  /* arena->initialized arena, updateLock not held */
  return arena;
}
