/* SPDX-License-Identifier: MIT */
/* The unrelated process of the IRIX compat tests: started with fork + exec, it joins an arena
 * by path with usinit() and does one thing to it, reporting on stdout.
 *
 *   ulocks_helper join PATH [USERS]      usinit (after CONF_INITUSERS USERS), "ok PID" or
 *                                        "err ERRNO"; holds the arena until end of input
 *   ulocks_helper read PATH              "info PTR self OK text TEXT lock PTR"
 *   ulocks_helper squat PATH ADDR        maps a page at ADDR, then usinit: "ok" or "err ERRNO"
 *   ulocks_helper lock PATH N VARIANT    N increments under the lock (ussetlock, uswsetlock,
 *                                        uscsetlock); waits at the gate first
 *   ulocks_helper sema PATH N VARIANT    the same under the semaphore (uspsema, uscpsema)
 *   ulocks_helper barrier PATH ROUNDS N I  ROUNDS rounds of barrier(N) as party I
 *   ulocks_helper cas PATH PATH2 I ROUNDS  races uscasinfo (PATH2's datum), uscas, uscas32
 *   ulocks_helper hold PATH              takes the lock, "held PID", releases at end of input
 *   ulocks_helper psema PATH             "waiting", uspsema, "got R"
 *   ulocks_helper free PATH PTR          usfree(PTR), "freed BLKSIZE-BEFORE"
 *   ulocks_helper party PATH N           "arriving", barrier(N) once, "arrived", then waits
 *   ulocks_helper asuser PATH UID        setuid(UID), then as join
 * Exit status: 0 when it did what was asked without seeing a violation. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "compat_test.h"

static void drain_input(void) {
  char line[64];
  while (fgets(line, sizeof line, stdin) != NULL) {
  }
}

static usptr_t *join(const char *path) {
  usptr_t *a = usinit(path);
  if (a == NULL) {
    printf("err %d\n", errno);
    fflush(stdout);
    exit(3);
  }
  return a;
}

static struct shared *shared_of(usptr_t *a) {
  struct shared *s = (struct shared *)usgetinfo(a);
  if (s == NULL || s->self != s) {
    fprintf(stderr, "helper: no shared structure at the first datum\n");
    exit(4);
  }
  return s;
}

static void wait_gate(struct shared *s, int round) {
  __atomic_fetch_add(&s->ready, 1, __ATOMIC_SEQ_CST);
  while (__atomic_load_n(&s->gate, __ATOMIC_ACQUIRE) < round) sched_yield();
}

static void critical(struct shared *s) {
  long c;
  if (s->inside) __atomic_fetch_add(&s->violations, 1, __ATOMIC_RELAXED);
  s->inside = 1;
  c = s->counter;
  if ((c & 63) == 0) sched_yield(); /* sometimes give the others a chance to break in */
  s->counter = c + 1;
  s->inside = 0;
}

static int run_lock(usptr_t *a, long n, int variant) {
  struct shared *s = shared_of(a);
  long i;
  wait_gate(s, 1);
  for (i = 0; i < n; ++i) {
    int v = variant == 3 ? (int)(i % 3) : variant;
    if (v == 0) {
      if (ussetlock(s->lock) != 1) return 5;
    } else if (v == 1) {
      if (uswsetlock(s->lock, 50) != 1) return 5;
    } else {
      while (uscsetlock(s->lock, 10) != 1) sched_yield();
    }
    critical(s);
    if (usunsetlock(s->lock) != 0) return 6;
  }
  return 0;
}

static int run_sema(usptr_t *a, long n, int variant) {
  struct shared *s = shared_of(a);
  long i;
  wait_gate(s, 1);
  for (i = 0; i < n; ++i) {
    if (variant == 1 && (i & 1)) {
      while (uscpsema(s->sema) != 1) sched_yield();
    } else if (uspsema(s->sema) != 1) {
      return 5;
    }
    critical(s);
    if (usvsema(s->sema) != 0) return 6;
  }
  return 0;
}

static int run_barrier(usptr_t *a, int rounds, unsigned n, int me) {
  struct shared *s = shared_of(a);
  int r;
  unsigned j;
  for (r = 1; r <= rounds; ++r) {
    __atomic_store_n(&s->slots[me], r, __ATOMIC_RELEASE);
    errno = 0;
    barrier(s->bar, n);
    if (errno != 0) {
      fprintf(stderr, "helper %d: barrier: %s in round %d\n", me, strerror(errno), r);
      return 5;
    }
    for (j = 0; j < n; ++j) {
      if (__atomic_load_n(&s->slots[j], __ATOMIC_ACQUIRE) != r) {
        __atomic_fetch_add(&s->violations, 1, __ATOMIC_RELAXED);
      }
    }
    barrier(s->bar, n);
  }
  return 0;
}

static int run_cas(usptr_t *a, const char *path2, int me, int rounds) {
  struct shared *s = shared_of(a);
  usptr_t *b = join(path2);
  int r;
  for (r = 1; r <= rounds; ++r) {
    int w1, w2, w3;
    wait_gate(s, r);
    w1 = uscasinfo(b, 0, (void *)(__psint_t)(me + 1));
    w2 = uscas(&s->casword, 0, me + 1, a);
    w3 = uscas32(&s->cas32, 0, me + 1, a);
    printf("round %d %d %d %d\n", r, w1, w2, w3);
    fflush(stdout);
  }
  usdetach(b);
  return 0;
}

int main(int argc, char **argv) {
  const char *mode, *path;
  usptr_t *a;
  int rc = 0;
  if (argc < 3) {
    fprintf(stderr, "usage: ulocks_helper MODE PATH ...\n");
    return 2;
  }
  mode = argv[1];
  path = argv[2];
  if (strcmp(mode, "join") == 0 || strcmp(mode, "asuser") == 0) {
    if (strcmp(mode, "asuser") == 0 && argc > 3 && setuid((uid_t)atoi(argv[3])) != 0) {
      perror("setuid");
      return 2;
    }
    if (strcmp(mode, "join") == 0 && argc > 3) usconfig(CONF_INITUSERS, (unsigned)atoi(argv[3]));
    a = join(path);
    printf("ok %d\n", (int)getpid());
    fflush(stdout);
    drain_input();
    usdetach(a);
    return 0;
  }
  if (strcmp(mode, "squat") == 0) {
    void *want = (void *)(uintptr_t)strtoull(argv[3], NULL, 0);
    void *got = mmap(want, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (got != want) {
      printf("squat-failed %d\n", errno);
      return 0;
    }
    a = usinit(path);
    printf(a != NULL ? "ok\n" : "err %d\n", errno);
    return 0;
  }
  a = join(path);
  if (strcmp(mode, "read") == 0) {
    struct shared *s = (struct shared *)usgetinfo(a);
    ulock_t l = usnewlock(a);
    printf("info %p self %d text %s lock %p\n", (void *)s, s != NULL && s->self == s,
           s != NULL ? s->text : "-", l);
    usfreelock(l, a);
  } else if (strcmp(mode, "lock") == 0 && argc > 4) {
    rc = run_lock(a, atol(argv[3]), atoi(argv[4]));
  } else if (strcmp(mode, "sema") == 0 && argc > 4) {
    rc = run_sema(a, atol(argv[3]), atoi(argv[4]));
  } else if (strcmp(mode, "barrier") == 0 && argc > 5) {
    rc = run_barrier(a, atoi(argv[3]), (unsigned)atoi(argv[4]), atoi(argv[5]));
  } else if (strcmp(mode, "cas") == 0 && argc > 5) {
    rc = run_cas(a, argv[3], atoi(argv[4]), atoi(argv[5]));
  } else if (strcmp(mode, "hold") == 0) {
    struct shared *s = shared_of(a);
    if (ussetlock(s->lock) != 1) return 5;
    printf("held %d\n", (int)getpid());
    fflush(stdout);
    drain_input();
    usunsetlock(s->lock);
  } else if (strcmp(mode, "psema") == 0) {
    struct shared *s = shared_of(a);
    int r;
    printf("waiting\n");
    fflush(stdout);
    r = uspsema(s->sema);
    printf("got %d\n", r);
  } else if (strcmp(mode, "free") == 0 && argc > 3) {
    void *p = (void *)(uintptr_t)strtoull(argv[3], NULL, 0);
    size_t before = usmallocblksize(p, a);
    usfree(p, a);
    printf("freed %lu\n", (unsigned long)before);
  } else if (strcmp(mode, "party") == 0 && argc > 3) {
    struct shared *s = shared_of(a);
    printf("arriving\n");
    fflush(stdout);
    barrier(s->bar, (unsigned)atoi(argv[3]));
    printf("arrived\n");
    fflush(stdout);
    for (;;) pause();
  } else {
    fprintf(stderr, "ulocks_helper: bad mode or arguments\n");
    rc = 2;
  }
  fflush(stdout);
  usdetach(a);
  return rc;
}
