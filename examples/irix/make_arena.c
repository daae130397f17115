/* SPDX-License-Identifier: MIT */
/* Seed 001, Example 3-2 "Initializing a Shared Memory Arena", in C for <ulocks.h>:
 * makeArena(initSize, nProcs) sets the size and user limit of the next arena, then creates one
 * at a fresh temporary name. Two misprints of the seed are fixed: usconfig() returns the
 * previous value on success, so only -1 is an error; and mktemp() needs a writable array (we
 * use mkstemp(), which also creates the file: usinit() takes an empty file as a new arena).
 *
 *   irix_make_arena [-s size] [-n procs] [-d dir] [-k]
 * Prints the arena's path, address, size (CONF_GETSIZE) and user limit (CONF_GETUSERS); the
 * file is removed at exit unless -k. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ulocks.h>

static char tmpname[4096];

static usptr_t *makeArena(size_t initSize, int nProcs, const char *dir) {
  int fd;
  if (usconfig(CONF_INITUSERS, (unsigned)nProcs) == -1) {
    perror("usconfig(#users)");
    return 0;
  }
  if (usconfig(CONF_INITSIZE, (unsigned)initSize) == -1) {
    perror("usconfig(size)");
    return 0;
  }
  snprintf(tmpname, sizeof tmpname, "%s/arenaXXXXXX", dir);
  if ((fd = mkstemp(tmpname)) == -1) {
    perror("mkstemp");
    return 0;
  }
  close(fd);
  return usinit(tmpname);
}

int main(int argc, char **argv) {
  size_t size = 65536;
  int procs = 8, keep = 0, c;
  const char *dir = "/var/tmp";
  usptr_t *arena;
  void *block;
  while ((c = getopt(argc, argv, "s:n:d:k")) != -1) {
    switch (c) {
      case 's': size = (size_t)strtoul(optarg, NULL, 0); break;
      case 'n': procs = atoi(optarg); break;
      case 'd': dir = optarg; break;
      case 'k': keep = 1; break;
      default: fprintf(stderr, "usage: %s [-s size] [-n procs] [-d dir] [-k]\n", argv[0]); return 2;
    }
  }
  if (!(arena = makeArena(size, procs, dir))) {
    fprintf(stderr, "makeArena: %s\n", strerror(errno));
    if (tmpname[0] != '\0') unlink(tmpname);
    return 1;
  }
  block = usmalloc(1, arena);
  printf("arena %s at %p size %ld users %ld\n", tmpname, block, (long)usconfig(CONF_GETSIZE, arena),
         (long)usconfig(CONF_GETUSERS, arena));
  usfree(block, arena);
  usdetach(arena);
  if (!keep) unlink(tmpname);
  return 0;
}
