/* SPDX-License-Identifier: MIT */
/* What the IRIX compat tests share between the test process and its helpers: the structure
 * the test puts in the arena's first datum. Every pointer in it is valid in every process that
 * joins the arena, because IRIX arenas sit at the same address everywhere. */
#ifndef SHMKIT_COMPAT_TEST_H
#define SHMKIT_COMPAT_TEST_H

#include <stdint.h>

#include <ulocks.h>

struct shared {
  struct shared *self; /* this structure's own address, as the creator saw it */
  ulock_t lock;
  usema_t *sema;
  barrier_t *bar;
  volatile long counter; /* incremented under lock or sema, non-atomically */
  volatile int inside;   /* 1 while someone is in the critical section */
  int violations;        /* atomic: mutual exclusion or barrier rule broken */
  int ready;             /* atomic: helpers waiting at the gate */
  int gate;              /* atomic: the round helpers may start */
  long casword;          /* raced with uscas */
  int32_t cas32;         /* raced with uscas32 */
  int slots[16];         /* barrier rounds reached, per helper */
  char text[64];
};

#endif
