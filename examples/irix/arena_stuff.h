/* SPDX-License-Identifier: MIT */
/* The arena's foundation structure of seed 001's Examples 3-3 and 3-4, and the functions that
 * share it: joinArena (join_arena.c), setUpArena (join_arena.c), resignArena (resign_arena.c).
 * Everything the processes share hangs off the first datum, an arenaStuff_t. */
#ifndef IRIX_ARENA_STUFF_H
#define IRIX_ARENA_STUFF_H

#include <ulocks.h>

typedef struct arenaStuff {
  ulock_t updateLock; /* exclusive use of this structure */
  short joinedProcs;  /* number of processes joined */
  /* ...pointers to other things allocated by setUpArena()... */
  long *work;         /* a counter the workers increment under updateLock */
  int setUpBy;        /* the pid that ran setUpArena */
} arenaStuff_t;

/* One-time setup of the arenaStuff contents; assumes updateLock is held. */
void setUpArena(usptr_t *arena, arenaStuff_t *stuff);
/* Joins the arena at arenaPath, creating and initialising it if necessary; NULL on error. */
usptr_t *joinArena(char *arenaPath);
/* Reverses joinArena. Does nothing drastic even for the last process. */
void resignArena(usptr_t *arena);

#endif
