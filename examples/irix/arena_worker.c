/* SPDX-License-Identifier: MIT */
/* A process of an application whose unrelated processes share one arena by path, as seed
 * 001's Examples 3-3 and 3-4 describe: joinArena(), some work under the arena's updateLock,
 * resignArena(). Run many at once on one path: exactly one of them sets the arena up.
 *
 *   irix_arena_worker [-n count] [-u users] [-g] [-w] [-k] path
 *     -n count  increment the shared work counter count times (default 1000)
 *     -u users  usconfig(CONF_INITUSERS, users) first, in case this process creates the arena
 *     -g        wait for a line on stdin before joining (a start gate for races)
 *     -w        after the work, print "ready" and wait for end of input before resigning
 *     -k        keep: do not resign (leave joinedProcs counted)
 * Prints "joined <pid> joinedProcs=<n> setUpBy=<pid>" and "done <pid> work=<n>". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena_stuff.h"

static void wait_for_input(int whole) {
  char line[64];
  while (fgets(line, sizeof line, stdin) != NULL) {
    if (!whole) return;
  }
}

int main(int argc, char **argv) {
  long count = 1000, i;
  int gate = 0, hold = 0, keep = 0, c;
  unsigned users = 0;
  usptr_t *arena;
  arenaStuff_t *stuff;
  while ((c = getopt(argc, argv, "n:u:gwk")) != -1) {
    switch (c) {
      case 'n': count = strtol(optarg, NULL, 0); break;
      case 'u': users = (unsigned)strtoul(optarg, NULL, 0); break;
      case 'g': gate = 1; break;
      case 'w': hold = 1; break;
      case 'k': keep = 1; break;
      default: fprintf(stderr, "usage: %s [-n count] [-u users] [-g] [-w] [-k] path\n", argv[0]);
        return 2;
    }
  }
  if (optind != argc - 1) {
    fprintf(stderr, "usage: %s [-n count] [-u users] [-g] [-w] [-k] path\n", argv[0]);
    return 2;
  }
  if (users != 0 && usconfig(CONF_INITUSERS, users) == -1) {
    perror("usconfig(CONF_INITUSERS)");
    return 1;
  }
  if (gate) wait_for_input(0);
  if (!(arena = joinArena(argv[optind]))) {
    fprintf(stderr, "joinArena(%s): %s\n", argv[optind], strerror(errno));
    return 1;
  }
  stuff = (arenaStuff_t *)usgetinfo(arena);
  ussetlock(stuff->updateLock);
  printf("joined %d joinedProcs=%d setUpBy=%d\n", (int)getpid(), stuff->joinedProcs,
         stuff->setUpBy);
  usunsetlock(stuff->updateLock);
  fflush(stdout);
  for (i = 0; i < count; ++i) {
    if (ussetlock(stuff->updateLock) != 1) {
      perror("ussetlock");
      return 1;
    }
    ++*stuff->work;
    usunsetlock(stuff->updateLock);
  }
  if (hold) {
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    wait_for_input(1);
  }
  ussetlock(stuff->updateLock);
  printf("done %d work=%ld\n", (int)getpid(), *stuff->work);
  usunsetlock(stuff->updateLock);
  if (!keep) resignArena(arena);
  usdetach(arena);
  return 0;
}
