/* SPDX-License-Identifier: MIT */
/* The IRIX compat layer (<ulocks.h>) tested from C with real processes: unrelated ones started
 * with fork + exec (ulocks_helper, and the seed's examples under examples/irix), and forked
 * children for what IRIX did with sproc (usadd, US_SHAREDONLY).
 *
 *   ulocks_test [--list] [test ...]      (no test: all of them)
 *
 * Each test runs in a child process of its own, in a process group of its own, with a fresh
 * directory /tmp/shmkit-test-<pid>-<test>-XXXXXX for its arena files. Whatever happens to the
 * test (failure, crash, time-out) the runner kills the group, reaps every process of it and
 * removes the directory. */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "arena_stuff.h"
#include "compat_test.h"

/* ---- Harness ---- */

static char g_dir[512];
static int g_failures;

static int check_(int ok, const char *what, const char *file, int line) {
  if (!ok) {
    int e = errno;
    fprintf(stderr, "%s:%d: CHECK failed: %s (errno %d: %s)\n", file, line, what, e, strerror(e));
    ++g_failures;
  }
  return ok;
}
#define CHECK(cond) check_((cond) != 0, #cond, __FILE__, __LINE__)
#define REQUIRE(cond) \
  do {                \
    if (!CHECK(cond)) return; \
  } while (0)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

/* A file name inside this test's directory (one of a few rotating buffers). */
static const char *in_dir(const char *name) {
  static char bufs[8][600];
  static int next;
  char *b = bufs[next++ & 7];
  snprintf(b, sizeof bufs[0], "%s/%s", g_dir, name);
  return b;
}

/* ---- Processes ---- */

struct proc {
  pid_t pid;
  int in;  /* its stdin (write end), -1 once closed */
  int out; /* its stdout (read end) */
};

static int spawn(struct proc *p, const char *const *argv) {
  int in[2], out[2];
  if (pipe(in) != 0 || pipe(out) != 0) return -1;
  fflush(NULL);
  p->pid = fork();
  if (p->pid < 0) return -1;
  if (p->pid == 0) {
    int fd;
    dup2(in[0], 0);
    dup2(out[1], 1);
    for (fd = 3; fd < 1024; ++fd) close(fd);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  p->in = in[1];
  p->out = out[0];
  return 0;
}

/* Reads one line of p's output (without the newline); -1 on end of output or time-out. */
static int read_line(struct proc *p, char *buf, size_t size, int timeout_ms) {
  size_t n = 0;
  double end = now_s() + timeout_ms / 1000.0;
  while (n + 1 < size) {
    struct pollfd pfd;
    char c;
    int left = (int)((end - now_s()) * 1000);
    pfd.fd = p->out;
    pfd.events = POLLIN;
    if (left <= 0 || poll(&pfd, 1, left) <= 0) break;
    if (read(p->out, &c, 1) != 1) break;
    if (c == '\n') {
      buf[n] = '\0';
      return (int)n;
    }
    buf[n++] = c;
  }
  buf[n] = '\0';
  return -1;
}

/* Reads lines until one starts with `prefix` (copied to buf); 0 if found. */
static int expect_line(struct proc *p, const char *prefix, char *buf, size_t size, int timeout_ms) {
  while (read_line(p, buf, size, timeout_ms) >= 0) {
    if (strncmp(buf, prefix, strlen(prefix)) == 0) return 0;
  }
  fprintf(stderr, "pid %d: no line starting with \"%s\"\n", (int)p->pid, prefix);
  return -1;
}

static void close_input(struct proc *p) {
  if (p->in >= 0) close(p->in);
  p->in = -1;
}

/* Closes its input and waits: the exit status, 128 + signal, or -1 after killing it on
 * time-out. */
static int finish(struct proc *p, int timeout_ms) {
  double end = now_s() + timeout_ms / 1000.0;
  int status = 0;
  close_input(p);
  for (;;) {
    pid_t r = waitpid(p->pid, &status, WNOHANG);
    if (r == p->pid) break;
    if (r < 0 || now_s() > end) {
      kill(p->pid, SIGKILL);
      waitpid(p->pid, &status, 0);
      close(p->out);
      fprintf(stderr, "pid %d: timed out\n", (int)p->pid);
      return -1;
    }
    sleep_ms(2);
  }
  close(p->out);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void kill_proc(struct proc *p) {
  int status;
  kill(p->pid, SIGKILL);
  waitpid(p->pid, &status, 0);
  close_input(p);
  close(p->out);
}

/* Runs a helper to completion and returns its exit status; its first line goes to buf. */
static int run(const char *const *argv, char *buf, size_t size) {
  struct proc p;
  if (spawn(&p, argv) != 0) return -1;
  if (buf != NULL && read_line(&p, buf, size, 30000) < 0 && size > 0) buf[0] = '\0';
  return finish(&p, 30000);
}

/* Forks a child that runs fn(arg) and exits with its result. */
static pid_t fork_child(int (*fn)(void *), void *arg) {
  pid_t pid;
  fflush(NULL);
  pid = fork();
  if (pid == 0) _exit(fn(arg));
  return pid;
}

static int wait_child(pid_t pid, int timeout_ms) {
  struct proc p;
  int fds[2];
  if (pipe(fds) != 0) return -1;
  close(fds[1]);
  p.pid = pid;
  p.in = -1;
  p.out = fds[0];
  return finish(&p, timeout_ms);
}

/* Waits until *word reaches `value` (another process writes it). */
static int wait_for(int *word, int value, int timeout_ms) {
  double end = now_s() + timeout_ms / 1000.0;
  while (__atomic_load_n(word, __ATOMIC_ACQUIRE) < value) {
    if (now_s() > end) return -1;
    sleep_ms(1);
  }
  return 0;
}

/* A fresh arena at `name` with a struct shared (lock, semaphore, barrier) as its first datum. */
static struct shared *make_shared(usptr_t *a) {
  struct shared *s = (struct shared *)uscalloc(1, sizeof *s, a);
  if (s == NULL) return NULL;
  s->self = s;
  s->lock = usnewlock(a);
  s->sema = usnewsema(a, 1);
  s->bar = new_barrier(a);
  snprintf(s->text, sizeof s->text, "made by %d", (int)getpid());
  usputinfo(a, s);
  return s->lock != NULL && s->sema != NULL && s->bar != NULL ? s : NULL;
}

static const char *g_helper = ULOCKS_HELPER;
static const char *g_worker = IRIX_WORKER;
static const char *g_make_arena = IRIX_MAKE_ARENA;

/* ---- usconfig ---- */

static void test_usconfig(void) {
  usptr_t *a;
  struct stat st;
  ptrdiff_t size;
  void *blocks[256];
  int n = 0, i;
  /* The set commands return the previous value (the seed's Example 3-2 tests != 0: wrong). */
  CHECK(usconfig(CONF_INITUSERS, 12u) == 8);
  CHECK(usconfig(CONF_INITUSERS, 8u) == 12);
  CHECK(usconfig(CONF_INITSIZE, 65536u) == 65536);
  CHECK(usconfig(CONF_LOCKTYPE, US_DEBUG) == US_NODEBUG);
  CHECK(usconfig(CONF_LOCKTYPE, US_NODEBUG) == US_DEBUG);
  CHECK(usconfig(CONF_ARENATYPE, US_SHAREDONLY) == US_GENERAL);
  CHECK(usconfig(CONF_ARENATYPE, US_GENERAL) == US_SHAREDONLY);
  CHECK(usconfig(CONF_AUTOGROW, 0u) == 1);
  CHECK(usconfig(CONF_AUTOGROW, 1u) == 0);
  CHECK(usconfig(CONF_AUTORESV, 1u) == 0);
  CHECK(usconfig(CONF_AUTORESV, 0u) == 1);
  CHECK((void *)usconfig(CONF_ATTACHADDR, (void *)~(uintptr_t)0) == (void *)~(uintptr_t)0);
  CHECK(usconfig(CONF_STHREADIOOFF) == 1);
  CHECK(usconfig(CONF_STHREADIOON) == 0);
  CHECK(usconfig(CONF_STHREADMISCOFF) == 1);
  CHECK(usconfig(CONF_STHREADMISCON) == 0);
  CHECK(usconfig(CONF_STHREADMALLOCOFF) == 1);
  CHECK(usconfig(CONF_STHREADMALLOCON) == 0);
  /* Errors: EINVAL, and the setting is unchanged. */
  errno = 0;
  CHECK(usconfig(CONF_INITSIZE, 0u) == -1 && errno == EINVAL);
  CHECK(usconfig(CONF_INITSIZE, 4095u) == -1 && errno == EINVAL);
  CHECK(usconfig(CONF_INITUSERS, 10001u) == -1 && errno == EINVAL);
  CHECK(usconfig(CONF_INITUSERS, 0u) == -1 && errno == EINVAL);
  CHECK(usconfig(CONF_ARENATYPE, 7u) == -1 && errno == EINVAL);
  CHECK(usconfig(CONF_LOCKTYPE, 9u) == -1 && errno == EINVAL);
  CHECK(usconfig(999) == -1 && errno == EINVAL);
  CHECK(usconfig(-1) == -1 && errno == EINVAL);
  CHECK(usconfig(CONF_GETSIZE, (usptr_t *)NULL) == -1 && errno == EINVAL);
  CHECK(usconfig(CONF_GETUSERS, (usptr_t *)NULL) == -1 && errno == EINVAL);
  CHECK(usconfig(CONF_INITSIZE, 65536u) == 65536);
  CHECK(usconfig(CONF_INITUSERS, 8u) == 8);

  /* IRIX's defaults: 64 KB (all of it: header, locks and blocks), 8 users, mode 0600. */
  a = usinit(in_dir("default"));
  REQUIRE(a != NULL);
  CHECK(usconfig(CONF_GETSIZE, a) == 65536);
  CHECK(usconfig(CONF_GETUSERS, a) == 8);
  CHECK(stat(in_dir("default"), &st) == 0 && (st.st_mode & 0777) == 0600);
  CHECK(st.st_size <= usconfig(CONF_GETSIZE, a)); /* autogrow: the file grows as used */
  errno = 0;
  CHECK(usconfig(CONF_HISTFETCH, a, (histptr_t *)NULL) == -1 && errno == EINVAL);
  usdetach(a);

  /* A bigger arena, no autogrow: the file has its full size at once, and it fills up. */
  CHECK(usconfig(CONF_INITSIZE, 1u << 20) == 65536);
  CHECK(usconfig(CONF_INITUSERS, 20u) == 8);
  CHECK(usconfig(CONF_AUTOGROW, 0u) == 1);
  a = usinit(in_dir("big"));
  REQUIRE(a != NULL);
  size = usconfig(CONF_GETSIZE, a);
  CHECK(size == 1 << 20);
  CHECK(usconfig(CONF_GETUSERS, a) == 20);
  CHECK(stat(in_dir("big"), &st) == 0 && st.st_size == (off_t)(1 << 20));
  while (n < 256 && (blocks[n] = usmalloc(100000, a)) != NULL) ++n;
  CHECK(n < 256 && errno == ENOMEM);
  /* Blocks of 100 000 bytes take 25 pages each, their headers included: ten would fill the
     pages of 1 MB that the arena's metadata leaves; the IRIX header and the names take one. */
  CHECK(n == 9 || n == 10);
  errno = 0;
  CHECK(usmalloc((1u << 20) + 1, a) == NULL && errno == ENOMEM); /* more than fits */
  for (i = 0; i < n; ++i) usfree(blocks[i], a);
  CHECK((blocks[0] = usmalloc(100000, a)) != NULL);
  usdetach(a);
}

/* ---- Same address in every process ---- */

static void test_same_address(void) {
  const char *p = in_dir("arena");
  char line[256], addr[64];
  void *info = NULL, *lock = NULL;
  int self = 0, i;
  struct shared *s;
  usptr_t *a = usinit(p), *b, *c;
  REQUIRE(a != NULL);
  REQUIRE((s = make_shared(a)) != NULL);
  for (i = 0; i < 3; ++i) {
    const char *argv[] = {g_helper, "read", p, NULL};
    char text[64];
    CHECK(run(argv, line, sizeof line) == 0);
    CHECK(sscanf(line, "info %p self %d text %63s", &info, &self, text) == 3);
    CHECK(info == (void *)s && self == 1);
    CHECK(strstr(line, s->text) != NULL);
    /* A lock the joiner made lies in the creator's arena too. */
    CHECK(strstr(line, "lock ") != NULL && sscanf(strstr(line, "lock "), "lock %p", &lock) == 1);
    CHECK((char *)lock > (char *)s - usconfig(CONF_GETSIZE, a) &&
          (char *)lock < (char *)s + usconfig(CONF_GETSIZE, a));
  }
  /* A joiner whose copy of that range is taken fails with EBUSY, never maps elsewhere. */
  snprintf(addr, sizeof addr, "%#lx", (unsigned long)((uintptr_t)s & ~(uintptr_t)4095));
  {
    const char *argv[] = {g_helper, "squat", p, addr, NULL};
    CHECK(run(argv, line, sizeof line) == 0);
    snprintf(addr, sizeof addr, "err %d", EBUSY);
    CHECK(strcmp(line, addr) == 0);
  }
  /* CONF_ATTACHADDR: the creator picks the address; left set, the next usinit fails. */
  if (sizeof(void *) == 8) {
    char *want = (char *)(uintptr_t)0x300000000000ull;
    void *q;
    CHECK(usconfig(CONF_ATTACHADDR, (void *)want) == (ptrdiff_t)~(uintptr_t)0);
    b = usinit(in_dir("fixed"));
    REQUIRE(b != NULL);
    q = usmalloc(64, b);
    CHECK((char *)q >= want && (char *)q < want + usconfig(CONF_GETSIZE, b));
    errno = 0;
    CHECK(usinit(in_dir("fixed2")) == NULL && errno == EBUSY);
    CHECK(usconfig(CONF_ATTACHADDR, (void *)~(uintptr_t)0) == (ptrdiff_t)want);
    c = usinit(in_dir("fixed2"));
    CHECK(c != NULL);
    /* A joiner of "fixed" maps it at `want` though its own CONF_ATTACHADDR is unset. */
    usputinfo(b, q);
    {
      const char *argv[] = {g_helper, "read", in_dir("fixed"), NULL};
      CHECK(run(argv, line, sizeof line) == 0);
      CHECK(sscanf(line, "info %p", &info) == 1 && info == q);
    }
    usdetach(c);
    usdetach(b);
  }
  usdetach(a);
}

/* ---- Create-or-join races, with the seed's Example 3-3 ---- */

static void join_race(int workers, int count) {
  const char *p = in_dir("race");
  struct proc procs[32];
  char line[256], users[16], num[16];
  int setups = 0, setup_pid = 0, i;
  usptr_t *a;
  arenaStuff_t *stuff;
  unlink(p);
  snprintf(users, sizeof users, "%d", workers + 4);
  snprintf(num, sizeof num, "%d", count);
  for (i = 0; i < workers; ++i) {
    const char *argv[] = {g_worker, "-g", "-w", "-u", users, "-n", num, p, NULL};
    REQUIRE(spawn(&procs[i], argv) == 0);
  }
  /* Open the gate for all at once: they usinit the same new path together. */
  for (i = 0; i < workers; ++i) CHECK(write(procs[i].in, "go\n", 3) == 3);
  for (i = 0; i < workers; ++i) {
    int by = 0;
    while (read_line(&procs[i], line, sizeof line, 30000) >= 0) {
      if (strncmp(line, "setUpArena by ", 14) == 0) {
        ++setups;
        setup_pid = atoi(line + 14);
        CHECK(setup_pid == (int)procs[i].pid);
      } else if (sscanf(line, "joined %*d joinedProcs=%*d setUpBy=%d", &by) == 1) {
        CHECK(by != 0);
      } else if (strncmp(line, "ready", 5) == 0) {
        break;
      }
    }
    CHECK(strncmp(line, "ready", 5) == 0);
  }
  CHECK(setups == 1); /* exactly one won uscasinfo and set the arena up */
  /* Join as well, while they all hold the arena: the work and the count are all there. */
  a = usinit(p);
  REQUIRE(a != NULL);
  stuff = (arenaStuff_t *)usgetinfo(a);
  REQUIRE(stuff != NULL);
  CHECK(stuff->setUpBy == setup_pid);
  CHECK(stuff->joinedProcs == workers);
  CHECK(*stuff->work == (long)workers * count);
  for (i = 0; i < workers; ++i) close_input(&procs[i]);
  for (i = 0; i < workers; ++i) CHECK(finish(&procs[i], 30000) == 0);
  CHECK(stuff->joinedProcs == 0); /* every one resigned (Example 3-4) */
  CHECK(access(p, F_OK) == 0);    /* and nobody removed the file */
  usdetach(a);
}

static void test_create_join_race(void) {
  int round;
  for (round = 0; round < 3; ++round) join_race(16, 300);
  join_race(4, 2000);
}

/* ---- The user limit: the ninth process fails at once with EUSERS ---- */

struct pipes {
  int ready[2];
  int release[2];
  usptr_t *arena;
  struct shared *s;
};

static int child_user(void *arg) {
  struct pipes *p = (struct pipes *)arg;
  char c;
  if (usadd(p->arena) != 0) return 10;
  if (ussetlock(p->s->lock) != 1) return 11;
  ++p->s->counter;
  usunsetlock(p->s->lock);
  if (write(p->ready[1], "o", 1) != 1) return 12;
  close(p->release[1]);
  while (read(p->release[0], &c, 1) == 1) {
  }
  return 0;
}

static int child_ninth(void *arg) {
  struct pipes *p = (struct pipes *)arg;
  errno = 0;
  if (usadd(p->arena) != -1 || errno != EUSERS) return 20;
  errno = 0;
  if (ussetlock(p->s->lock) != -1 || errno != EUSERS) return 21; /* automatic usadd */
  errno = 0;
  if (usmalloc(8, p->arena) != NULL || errno != EUSERS) return 22;
  return 0;
}

static void test_user_limit(void) {
  const char *p = in_dir("limit");
  struct proc holders[8];
  char line[128], expect[32];
  int i;
  struct pipes pp;
  pid_t kids[8];
  usptr_t *a = usinit(p);
  REQUIRE(a != NULL);
  REQUIRE(make_shared(a) != NULL);
  /* Unrelated processes: this one and seven more make eight users... */
  for (i = 0; i < 7; ++i) {
    const char *argv[] = {g_helper, "join", p, NULL};
    REQUIRE(spawn(&holders[i], argv) == 0);
    CHECK(read_line(&holders[i], line, sizeof line, 30000) >= 0 && strncmp(line, "ok ", 3) == 0);
  }
  /* ...and the ninth gets EUSERS at once. */
  snprintf(expect, sizeof expect, "err %d", EUSERS);
  {
    const char *argv[] = {g_helper, "join", p, NULL};
    double t0 = now_s();
    CHECK(run(argv, line, sizeof line) == 3);
    CHECK(strcmp(line, expect) == 0);
    CHECK(now_s() - t0 < 10);
  }
  {
    const char *argv[] = {g_worker, "-n", "1", p, NULL};
    CHECK(run(argv, NULL, 0) == 1); /* joinArena reports the error */
  }
  /* A user that dies gives its place back. */
  kill_proc(&holders[0]);
  {
    const char *argv[] = {g_helper, "join", p, NULL};
    CHECK(run(argv, line, sizeof line) == 0 && strncmp(line, "ok ", 3) == 0);
  }
  for (i = 1; i < 7; ++i) CHECK(finish(&holders[i], 30000) == 0);
  usdetach(a);

  /* Forked children of a US_SHAREDONLY arena (what sproc did): the eighth child cannot join,
   * by usadd or by using a lock. */
  CHECK(usconfig(CONF_ARENATYPE, US_SHAREDONLY) == US_GENERAL);
  pp.arena = usinit(in_dir("sharedonly"));
  REQUIRE(pp.arena != NULL);
  CHECK(access(in_dir("sharedonly"), F_OK) != 0); /* no file: nobody else can join */
  REQUIRE((pp.s = make_shared(pp.arena)) != NULL);
  REQUIRE(pipe(pp.ready) == 0 && pipe(pp.release) == 0);
  for (i = 0; i < 7; ++i) {
    char c;
    kids[i] = fork_child(child_user, &pp);
    CHECK(read(pp.ready[0], &c, 1) == 1);
  }
  kids[7] = fork_child(child_ninth, &pp);
  CHECK(wait_child(kids[7], 30000) == 0);
  close(pp.release[1]);
  for (i = 0; i < 7; ++i) CHECK(wait_child(kids[i], 30000) == 0);
  CHECK(pp.s->counter == 7);
  usdetach(pp.arena);

  /* CONF_INITUSERS raises the limit. */
  CHECK(usconfig(CONF_ARENATYPE, US_GENERAL) == US_SHAREDONLY);
  CHECK(usconfig(CONF_INITUSERS, 12u) == 8);
  a = usinit(in_dir("twelve"));
  REQUIRE(a != NULL);
  for (i = 0; i < 8; ++i) {
    const char *argv[] = {g_helper, "join", in_dir("twelve"), NULL};
    REQUIRE(spawn(&holders[i], argv) == 0);
    CHECK(read_line(&holders[i], line, sizeof line, 30000) >= 0 && strncmp(line, "ok ", 3) == 0);
  }
  for (i = 0; i < 8; ++i) CHECK(finish(&holders[i], 30000) == 0);
  usdetach(a);
}

/* ---- Forked children: usadd, inherited handles ---- */

static int child_locker(void *arg) {
  struct pipes *p = (struct pipes *)arg;
  int i;
  if (usinit(in_dir("fork")) != p->arena) return 30; /* already mapped: the same handle */
  if (usadd(p->arena) != 0) return 31;
  for (i = 0; i < 5000; ++i) {
    if (ussetlock(p->s->lock) != 1) return 32;
    ++p->s->counter;
    usunsetlock(p->s->lock);
  }
  return 0;
}

static int child_idle(void *arg) {
  /* Never uses the arena, then detaches: must not disturb the parent. */
  usdetach(((struct pipes *)arg)->arena);
  return 0;
}

static void test_fork_usadd(void) {
  struct pipes pp;
  pid_t kids[4];
  void *blocks[1000];
  int i;
  const char *argv[] = {g_helper, "read", in_dir("fork"), NULL};
  char line[256];
  pp.arena = usinit(in_dir("fork"));
  REQUIRE(pp.arena != NULL);
  REQUIRE((pp.s = make_shared(pp.arena)) != NULL);
  for (i = 0; i < 3; ++i) kids[i] = fork_child(child_locker, &pp);
  kids[3] = fork_child(child_idle, &pp);
  for (i = 0; i < 4; ++i) CHECK(wait_child(kids[i], 30000) == 0);
  CHECK(pp.s->counter == 15000);
  /* The parent's allocation caches are still its own (200 blocks, 23 KB of the 64 KB). */
  for (i = 0; i < 200; ++i) CHECK((blocks[i] = usmalloc((size_t)(16 + i % 200), pp.arena)) != NULL);
  for (i = 0; i < 200; ++i) usfree(blocks[i], pp.arena);
  CHECK(run(argv, line, sizeof line) == 0 && strstr(line, "self 1") != NULL);
  usdetach(pp.arena);
}

/* ---- US_SHAREDONLY and /dev/zero: private to a process and its children ---- */

static int child_sharedonly(void *arg) {
  struct pipes *p = (struct pipes *)arg;
  struct shared *s = (struct shared *)usgetinfo(p->arena);
  if (s != p->s || s->self != s) return 40;
  if (ussetlock(s->lock) != 1) return 41;
  s->casword = (long)usnewlock(p->arena); /* made by the child, used by the parent */
  usunsetlock(s->lock);
  return s->casword != 0 ? 0 : 42;
}

static void test_sharedonly(void) {
  struct pipes pp;
  const char *p = in_dir("private");
  char line[256];
  usptr_t *z1, *z2;
  char *m1, *m2;
  CHECK(usconfig(CONF_ARENATYPE, US_SHAREDONLY) == US_GENERAL);
  pp.arena = usinit(p);
  REQUIRE(pp.arena != NULL);
  CHECK(usconfig(CONF_ARENATYPE, US_GENERAL) == US_SHAREDONLY);
  REQUIRE((pp.s = make_shared(pp.arena)) != NULL);
  CHECK(wait_child(fork_child(child_sharedonly, &pp), 30000) == 0);
  CHECK(ussetlock((ulock_t)pp.s->casword) == 1 && usunsetlock((ulock_t)pp.s->casword) == 0);
  /* An unrelated process naming the same path makes an arena of its own. */
  {
    const char *argv[] = {g_helper, "read", p, NULL};
    CHECK(run(argv, line, sizeof line) == 0);
    CHECK(strstr(line, "self 0") != NULL);
  }
  usdetach(pp.arena);
  /* Each usinit("/dev/zero") is a new, private arena. */
  z1 = usinit("/dev/zero");
  z2 = usinit("/dev/zero");
  REQUIRE(z1 != NULL && z2 != NULL);
  CHECK(z1 != z2);
  m1 = (char *)usmalloc(10, z1);
  m2 = (char *)usmalloc(10, z2);
  CHECK(m1 != NULL && m2 != NULL && m1 != m2);
  usputinfo(z1, m1);
  CHECK(usgetinfo(z2) == NULL);
  usdetach(z1);
  usdetach(z2);
}

/* ---- Allocation ---- */

static long in_use(usptr_t *a) {
  struct mallinfo mi = usmallinfo(a);
  return (long)mi.uordblks + mi.usmblks;
}

static void test_alloc(void) {
  static const size_t sizes[] = {1, 7, 16, 100, 1000, 5000, 40000, 100000};
  static const size_t aligns[] = {8, 16, 64, 256, 4096, 65536};
  usptr_t *a = usinit(in_dir("alloc"));
  unsigned char *p, *q;
  size_t i, j;
  long before, after;
  struct mallinfo mi;
  char line[128], arg[64];
  REQUIRE(a != NULL);
  /* The default 64 KB arena holds small blocks; a block larger than it gets NULL. */
  {
    static void *small[4096];
    size_t k = 0, bytes = 0;
    while (k < 4096 && (small[k] = usmalloc(16 + (k * 37) % 241, a)) != NULL) bytes += 16 + (k++ * 37) % 241;
    CHECK(k < 4096 && errno == ENOMEM);
    CHECK(bytes >= 65536 / 2); /* tested more closely by the C++ capacity tests */
    while (k > 0) usfree(small[--k], a);
    errno = 0;
    CHECK(usmalloc(65536, a) == NULL && errno == ENOMEM);
  }
  usdetach(a);
  /* The rest needs blocks up to 300 000 bytes: a 1 MB arena. */
  CHECK(usconfig(CONF_INITSIZE, 1u << 20) == 65536);
  a = usinit(in_dir("alloc-1m"));
  CHECK(usconfig(CONF_INITSIZE, 65536u) == 1 << 20);
  REQUIRE(a != NULL);
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
    size_t bs;
    p = (unsigned char *)usmalloc(sizes[i], a);
    REQUIRE(p != NULL);
    CHECK((uintptr_t)p % 16 == 0); /* aligned for any type */
    bs = usmallocblksize(p, a);
    CHECK(bs >= sizes[i]);
    memset(p, 0xab, bs); /* all of it is usable */
    usfree(p, a);
  }
  for (i = 0; i < sizeof aligns / sizeof aligns[0]; ++i) {
    p = (unsigned char *)usmemalign(aligns[i], 100, a);
    CHECK(p != NULL && (uintptr_t)p % aligns[i] == 0);
    usfree(p, a);
  }
  errno = 0;
  CHECK(usmemalign(3, 100, a) == NULL && errno == EINVAL);
  CHECK(usmemalign(4, 100, a) == NULL && errno == EINVAL); /* below a word */
  /* Zeroing, even over memory that was dirty. */
  p = (unsigned char *)usmalloc(1000, a);
  memset(p, 0xff, 1000);
  usfree(p, a);
  p = (unsigned char *)uscalloc(100, 10, a);
  REQUIRE(p != NULL);
  for (j = 0; j < 1000 && p[j] == 0; ++j) {
  }
  CHECK(j == 1000);
  usfree(p, a);
  errno = 0;
  CHECK(uscalloc((size_t)-1 / 2, 4, a) == NULL && errno == ENOMEM);
  /* Reallocation keeps the contents, across size classes and into whole frames. */
  p = (unsigned char *)usmalloc(10, a);
  for (j = 0; j < 10; ++j) p[j] = (unsigned char)(j + 1);
  {
    static const size_t grow[] = {100, 5000, 100000, 300000, 5};
    for (i = 0; i < sizeof grow / sizeof grow[0]; ++i) {
      q = (unsigned char *)usrealloc(p, grow[i], a);
      REQUIRE(q != NULL);
      for (j = 0; j < 5; ++j) CHECK(q[j] == (unsigned char)(j + 1));
      CHECK(usmallocblksize(q, a) >= grow[i]);
      p = q;
    }
  }
  usfree(p, a);
  p = (unsigned char *)usrealloc(NULL, 50, a);
  CHECK(p != NULL);
  before = in_use(a);
  CHECK(usrealloc(p, 0, a) == NULL); /* size 0 frees */
  CHECK(in_use(a) < before);
  /* usrecalloc: growth is zeroed, and so is what a shrink cut off. */
  p = (unsigned char *)usrecalloc(NULL, 10, 1, a);
  REQUIRE(p != NULL);
  for (j = 0; j < 10; ++j) CHECK(p[j] == 0);
  memset(p, 0x55, 10);
  p = (unsigned char *)usrecalloc(p, 3000, 1, a);
  REQUIRE(p != NULL);
  for (j = 0; j < 3000; ++j) {
    if (p[j] != (j < 10 ? 0x55 : 0)) {
      CHECK(p[j] == (j < 10 ? 0x55 : 0));
      break;
    }
  }
  memset(p, 0x66, 3000);
  p = (unsigned char *)usrecalloc(p, 5, 1, a);
  p = (unsigned char *)usrecalloc(p, 20, 1, a);
  REQUIRE(p != NULL);
  for (j = 5; j < 20; ++j) CHECK(p[j] == 0);
  CHECK(usrecalloc(p, (size_t)-1 / 2, 4, a) == NULL && p[0] == 0x66); /* untouched */
  usfree(p, a);
  /* Size 0 is a valid, freeable block; NULL frees nothing. */
  p = (unsigned char *)usmalloc(0, a);
  CHECK(p != NULL);
  usfree(p, a);
  usfree(NULL, a);
  /* usmallinfo follows what is in use. */
  before = in_use(a);
  p = (unsigned char *)usmalloc(5000, a);
  after = in_use(a);
  CHECK(after >= before + 5000);
  usfree(p, a);
  CHECK(in_use(a) == before);
  mi = usmallinfo(a);
  CHECK(mi.arena > 0 && mi.arena <= usconfig(CONF_GETSIZE, a));
  /* usmallopt: valid values are accepted, invalid ones refused. */
  CHECK(usmallopt(M_MXFAST, 0, a) == 0);
  CHECK(usmallopt(M_NLBLKS, 100, a) == 0);
  CHECK(usmallopt(M_GRAIN, 16, a) == 0);
  CHECK(usmallopt(M_KEEP, 1, a) == 0);
  CHECK(usmallopt(M_BLKSZ, 8192, a) == 0);
  CHECK(usmallopt(M_MXCHK, 100, a) == 0);
  CHECK(usmallopt(M_FREEHD, 1, a) == 0);
  CHECK(usmallopt(M_CRLOCK, 1, a) == 0);
  CHECK(usmallopt(M_BLKSZ, 100, a) != 0);
  CHECK(usmallopt(M_GRAIN, 0, a) != 0);
  CHECK(usmallopt(M_NLBLKS, -1, a) != 0);
  CHECK(usmallopt(12345, 1, a) != 0);
  /* M_DEBUG checks the arena on every call; M_CLRONFREE fills freed blocks. */
  CHECK(usmallopt(M_DEBUG, 1, a) == 0);
  CHECK(usmallopt(M_CLRONFREE, 0x5a, a) == 0);
  p = (unsigned char *)usmalloc(64, a);
  REQUIRE(p != NULL);
  memset(p, 0x11, 64);
  usfree(p, a);
  for (j = 16; j < 64; ++j) CHECK(p[j] == 0x5a);
  CHECK(usmallopt(M_DEBUG, 0, a) == 0);
  /* A block made here is freed by another process. */
  p = (unsigned char *)usmalloc(3000, a);
  REQUIRE(p != NULL);
  before = in_use(a);
  snprintf(arg, sizeof arg, "%#lx", (unsigned long)(uintptr_t)p);
  {
    const char *argv[] = {g_helper, "free", in_dir("alloc-1m"), arg, NULL};
    size_t freed = 0;
    CHECK(run(argv, line, sizeof line) == 0);
    CHECK(sscanf(line, "freed %lu", (unsigned long *)&freed) == 1 && freed >= 3000);
    CHECK(in_use(a) <= before - 3000);
  }
  usdetach(a);
}

/* ---- Locks and semaphores as mutual exclusion across 4 processes ---- */

static void race_four(const char *p, struct shared *s, const char *mode, long iters) {
  struct proc procs[4];
  char num[16], variant[16];
  int i;
  s->counter = 0;
  __atomic_store_n(&s->ready, 0, __ATOMIC_RELEASE);
  __atomic_store_n(&s->gate, 0, __ATOMIC_RELEASE);
  __atomic_store_n(&s->violations, 0, __ATOMIC_RELEASE);
  snprintf(num, sizeof num, "%ld", iters);
  for (i = 0; i < 4; ++i) {
    const char *argv[] = {g_helper, mode, p, num, variant, NULL};
    snprintf(variant, sizeof variant, "%d", i);
    REQUIRE(spawn(&procs[i], argv) == 0);
  }
  CHECK(wait_for(&s->ready, 4, 30000) == 0);
  __atomic_store_n(&s->gate, 1, __ATOMIC_RELEASE);
  for (i = 0; i < 4; ++i) CHECK(finish(&procs[i], 120000) == 0);
  CHECK(s->counter == 4 * iters);
  CHECK(__atomic_load_n(&s->violations, __ATOMIC_ACQUIRE) == 0);
}

static void test_locks(void) {
  const char *p = in_dir("locks");
  usptr_t *a = usinit(p);
  struct shared *s;
  struct proc holder;
  char line[64];
  REQUIRE(a != NULL);
  REQUIRE((s = make_shared(a)) != NULL);
  race_four(p, s, "lock", 20000); /* ussetlock, uswsetlock, uscsetlock, all three */
  CHECK(ustestlock(s->lock) == 0);
  /* One process: the return values IRIX programs test. */
  CHECK(ussetlock(s->lock) == 1);
  CHECK(ustestlock(s->lock) == 1);
  CHECK(uscsetlock(s->lock, 5) == 0); /* held (by us: a double trip is refused) */
  errno = 0;
  CHECK(ussetlock(s->lock) == -1 && errno == EDEADLK);
  CHECK(usunsetlock(s->lock) == 0);
  CHECK(ustestlock(s->lock) == 0);
  CHECK(usunsetlock(s->lock) == 0); /* unsetting a free lock is harmless */
  CHECK(uscsetlock(s->lock, 1) == 1);
  CHECK(usinitlock(s->lock) == 0 && ustestlock(s->lock) == 0);
  CHECK(uswsetlock(s->lock, 10) == 1 && usunsetlock(s->lock) == 0);
  /* Held by another process: we cannot take it, nor release it. */
  {
    const char *argv[] = {g_helper, "hold", p, NULL};
    REQUIRE(spawn(&holder, argv) == 0);
    CHECK(expect_line(&holder, "held", line, sizeof line, 30000) == 0);
    CHECK(ustestlock(s->lock) == 1);
    CHECK(uscsetlock(s->lock, 100) == 0);
    errno = 0;
    CHECK(usunsetlock(s->lock) == -1 && errno == EPERM);
    CHECK(ustestlock(s->lock) == 1);
    close_input(&holder); /* it releases */
    CHECK(ussetlock(s->lock) == 1);
    CHECK(usunsetlock(s->lock) == 0);
    CHECK(finish(&holder, 30000) == 0);
  }
  usfreelock(s->lock, a);
  usdetach(a);
}

static void test_semaphores(void) {
  const char *p = in_dir("semas");
  usptr_t *a = usinit(p);
  struct shared *s;
  usema_t *t;
  struct proc waiter;
  char line[64];
  int i;
  REQUIRE(a != NULL);
  REQUIRE((s = make_shared(a)) != NULL);
  race_four(p, s, "sema", 20000); /* uspsema, and uscpsema loops */
  CHECK(ustestsema(s->sema) == 1);
  /* Counting, conditional P, limits. */
  REQUIRE((t = usnewsema(a, 0)) != NULL);
  CHECK(uscpsema(t) == 0);
  CHECK(usvsema(t) == 0 && usvsema(t) == 0);
  CHECK(ustestsema(t) == 2);
  CHECK(uspsema(t) == 1 && uscpsema(t) == 1 && uscpsema(t) == 0);
  CHECK(ustestsema(t) == 0);
  errno = 0;
  CHECK(usnewsema(a, -1) == NULL && errno == EINVAL);
  CHECK(usnewsema(a, 30001) == NULL && errno == EINVAL);
  CHECK(usinitsema(t, 30000) == -1 && errno == EINVAL);
  CHECK(usinitsema(t, 3) == 0 && ustestsema(t) == 3);
  CHECK(usinitsema(t, 0) == 0);
  /* A P that must wait: the count goes negative, a V from here wakes the other process. */
  s->sema = t;
  {
    const char *argv[] = {g_helper, "psema", p, NULL};
    REQUIRE(spawn(&waiter, argv) == 0);
    CHECK(expect_line(&waiter, "waiting", line, sizeof line, 30000) == 0);
    for (i = 0; i < 10000 && ustestsema(t) != -1; ++i) sleep_ms(1);
    CHECK(ustestsema(t) == -1);
    CHECK(usvsema(t) == 0);
    CHECK(expect_line(&waiter, "got", line, sizeof line, 30000) == 0 && strcmp(line, "got 1") == 0);
    CHECK(finish(&waiter, 30000) == 0);
    CHECK(ustestsema(t) == 0);
  }
  /* Recursive: the holder of a mutual-exclusion semaphore may take it again. */
  CHECK(usinitsema(t, 1) == 0);
  CHECK(usctlsema(t, CS_RECURSIVEON) == 0);
  CHECK(uspsema(t) == 1 && uspsema(t) == 1 && uscpsema(t) == 1);
  CHECK(usvsema(t) == 0 && usvsema(t) == 0);
  CHECK(ustestsema(t) == 0); /* still held once */
  CHECK(usvsema(t) == 0 && ustestsema(t) == 1);
  CHECK(usctlsema(t, CS_RECURSIVEOFF) == 0);
  CHECK(uspsema(t) == 1 && uscpsema(t) == 0 && usvsema(t) == 0);
  usfreesema(t, a);
  /* Pollable semaphores: no descriptor on Linux. */
  REQUIRE((t = usnewpollsema(a, 1)) != NULL);
  errno = 0;
  CHECK(usopenpollsema(t, 0600) == -1 && errno == ENXIO);
  CHECK(uspsema(t) == 1);
  CHECK(uspsema(t) == -1 && errno == EBADF); /* would queue: nobody can be told */
  CHECK(usvsema(t) == 0 && uscpsema(t) == 1 && usvsema(t) == 0);
  CHECK(usclosepollsema(t) == -1 && errno == EBADF);
  CHECK(usfreepollsema(t, a) == 0);
  usdetach(a);
}

/* ---- Barriers across generations ---- */

static void barrier_run(const char *p, int parties, int rounds) {
  struct proc procs[8];
  char r[16], n[16], idx[16];
  int i;
  snprintf(r, sizeof r, "%d", rounds);
  snprintf(n, sizeof n, "%d", parties);
  for (i = 0; i < parties; ++i) {
    const char *argv[] = {g_helper, "barrier", p, r, n, idx, NULL};
    snprintf(idx, sizeof idx, "%d", i);
    REQUIRE(spawn(&procs[i], argv) == 0);
  }
  for (i = 0; i < parties; ++i) CHECK(finish(&procs[i], 120000) == 0);
}

static void test_barriers(void) {
  const char *p = in_dir("barrier");
  usptr_t *a = usinit(p);
  struct shared *s;
  struct proc party;
  char line[64];
  REQUIRE(a != NULL);
  REQUIRE((s = make_shared(a)) != NULL);
  barrier_run(p, 4, 300);
  barrier_run(p, 3, 100); /* another count: set up again on first use */
  CHECK(__atomic_load_n(&s->violations, __ATOMIC_ACQUIRE) == 0);
  errno = 0;
  barrier(s->bar, 1); /* alone: returns at once */
  CHECK(errno == 0);
  barrier(s->bar, 0);
  CHECK(errno == EINVAL);
  errno = 0;
  barrier(s->bar, 257); /* IRIX: EPROCLIM */
  CHECK(errno == EINVAL);
  init_barrier(s->bar);
  barrier_run(p, 2, 50);
  /* A party that dies while waiting has arrived: the round completes without it. And a new
   * team may use the barrier after the old one exited (IRIX barriers have no members). */
  {
    const char *argv[] = {g_helper, "party", p, "3", NULL};
    REQUIRE(spawn(&party, argv) == 0);
    CHECK(expect_line(&party, "arriving", line, sizeof line, 30000) == 0);
    sleep_ms(200);
    kill_proc(&party);
    barrier_run(p, 2, 1); /* with the dead party's arrival, two more make the three */
    barrier_run(p, 3, 20);
  }
  /* init_barrier releases whoever waits in an unfinished round. */
  {
    const char *argv[] = {g_helper, "party", p, "2", NULL};
    REQUIRE(spawn(&party, argv) == 0);
    CHECK(expect_line(&party, "arriving", line, sizeof line, 30000) == 0);
    sleep_ms(200);
    init_barrier(s->bar);
    CHECK(expect_line(&party, "arrived", line, sizeof line, 30000) == 0);
    kill_proc(&party);
  }
  free_barrier(s->bar);
  usdetach(a);
}

/* ---- uscasinfo, uscas, uscas32 races: exactly one winner ---- */

static void test_cas_race(void) {
  enum { kHelpers = 8, kRounds = 5 };
  const char *p = in_dir("cas"), *p2 = in_dir("cas-datum");
  struct proc procs[kHelpers];
  char line[128], idx[16], rounds[16];
  int i, r;
  usptr_t *a, *b;
  struct shared *s;
  long word = 5;
  int32_t w32 = 5;
  CHECK(usconfig(CONF_INITUSERS, 16u) == 8);
  a = usinit(p);
  b = usinit(p2);
  REQUIRE(a != NULL && b != NULL);
  REQUIRE((s = make_shared(a)) != NULL);
  CHECK(usgetinfo(b) == NULL);
  snprintf(rounds, sizeof rounds, "%d", kRounds);
  for (i = 0; i < kHelpers; ++i) {
    const char *argv[] = {g_helper, "cas", p, p2, idx, rounds, NULL};
    snprintf(idx, sizeof idx, "%d", i);
    REQUIRE(spawn(&procs[i], argv) == 0);
  }
  for (r = 1; r <= kRounds; ++r) {
    int wins[3] = {0, 0, 0}, winner[3] = {-1, -1, -1};
    CHECK(wait_for(&s->ready, kHelpers * r, 30000) == 0);
    __atomic_store_n(&s->gate, r, __ATOMIC_RELEASE);
    for (i = 0; i < kHelpers; ++i) {
      int rr = 0, w[3] = {0, 0, 0}, k;
      CHECK(read_line(&procs[i], line, sizeof line, 30000) >= 0);
      CHECK(sscanf(line, "round %d %d %d %d", &rr, &w[0], &w[1], &w[2]) == 4 && rr == r);
      for (k = 0; k < 3; ++k) {
        if (w[k] == 1) {
          ++wins[k];
          winner[k] = i;
        }
      }
    }
    CHECK(wins[0] == 1 && wins[1] == 1 && wins[2] == 1);
    CHECK(usgetinfo(b) == (void *)(__psint_t)(winner[0] + 1));
    CHECK(s->casword == winner[1] + 1 && s->cas32 == winner[2] + 1);
    usputinfo(b, NULL);
    s->casword = 0;
    s->cas32 = 0;
  }
  for (i = 0; i < kHelpers; ++i) CHECK(finish(&procs[i], 30000) == 0);
  /* The plain semantics. */
  CHECK(uscasinfo(b, (void *)1, (void *)2) == 0 && usgetinfo(b) == NULL);
  CHECK(uscasinfo(b, NULL, (void *)s) == 1 && usgetinfo(b) == (void *)s);
  CHECK(uscas(&word, 4, 6, a) == 0 && word == 5);
  CHECK(uscas(&word, 5, 6, a) == 1 && word == 6);
  CHECK(uscas32(&w32, 5, -7, a) == 1 && w32 == -7);
  CHECK(uscas32(NULL, 0, 1, a) == 0);
  usdetach(b);
  usdetach(a);
}

/* ---- Metering ---- */

static int meter_is(ulock_t l, int tries, int hits, int spins) {
  lockmeter_t m;
  if (usctllock(l, CL_METERFETCH, &m) != 0) return 0;
  if (m.lm_tries != tries || m.lm_hits != hits || m.lm_spins != spins) {
    fprintf(stderr, "lockmeter: tries %d hits %d spins %d, expected %d %d %d\n", m.lm_tries,
            m.lm_hits, m.lm_spins, tries, hits, spins);
    return 0;
  }
  return 1;
}

static void test_lock_meter(void) {
  const char *p = in_dir("meter");
  usptr_t *a, *plain;
  struct shared *s;
  struct proc holder;
  lockdebug_t d;
  lockmeter_t m;
  char line[64];
  int i, holder_pid = 0;
  FILE *f;
  CHECK(usconfig(CONF_LOCKTYPE, US_DEBUG) == US_NODEBUG);
  a = usinit(p);
  REQUIRE(a != NULL);
  REQUIRE((s = make_shared(a)) != NULL);
  CHECK(meter_is(s->lock, 0, 0, 0));
  CHECK(usctllock(s->lock, CL_DEBUGFETCH, &d) == 0 && d.ld_owner_pid == -1);
  for (i = 0; i < 3; ++i) CHECK(ussetlock(s->lock) == 1 && usunsetlock(s->lock) == 0);
  CHECK(meter_is(s->lock, 3, 3, 0));
  CHECK(ussetlock(s->lock) == 1);
  CHECK(usctllock(s->lock, CL_DEBUGFETCH, &d) == 0 && d.ld_owner_pid == (int)getpid());
  CHECK(usunsetlock(s->lock) == 0);
  CHECK(uscsetlock(s->lock, 1) == 1 && usunsetlock(s->lock) == 0);
  CHECK(meter_is(s->lock, 5, 5, 0));
  /* Contended: the try fails, its spin budget runs out once, and the holder is reported. */
  {
    const char *argv[] = {g_helper, "hold", p, NULL};
    REQUIRE(spawn(&holder, argv) == 0);
    CHECK(expect_line(&holder, "held", line, sizeof line, 30000) == 0);
    CHECK(sscanf(line, "held %d", &holder_pid) == 1);
    CHECK(meter_is(s->lock, 6, 6, 0)); /* the helper's ussetlock counts too */
    CHECK(uscsetlock(s->lock, 3) == 0);
    CHECK(meter_is(s->lock, 7, 6, 1));
    CHECK(usctllock(s->lock, CL_DEBUGFETCH, &d) == 0 && d.ld_owner_pid == holder_pid);
    f = tmpfile();
    CHECK(f != NULL && usdumplock(s->lock, f, "dump") == 0);
    if (f != NULL) {
      rewind(f);
      CHECK(fgets(line, sizeof line, f) != NULL && strstr(line, "held") != NULL);
      fclose(f);
    }
    close_input(&holder);
    CHECK(finish(&holder, 30000) == 0);
  }
  CHECK(ussetlock(s->lock) == 1 && usunsetlock(s->lock) == 0);
  CHECK(usctllock(s->lock, CL_METERFETCH, &m) == 0 && m.lm_tries == 8 && m.lm_hits == 7);
  CHECK(usctllock(s->lock, CL_METERRESET) == 0 && meter_is(s->lock, 0, 0, 0));
  CHECK(usctllock(s->lock, CL_DEBUGRESET) == 0);
  CHECK(usctllock(s->lock, CL_DEBUGFETCH, &d) == 0 && d.ld_owner_pid == -1);
  errno = 0;
  CHECK(usctllock(s->lock, 99) == -1 && errno == EINVAL);
  CHECK(usctllock(s->lock, CL_METERFETCH, (lockmeter_t *)NULL) == -1 && errno == EINVAL);
  /* US_NODEBUG locks keep no figures. */
  CHECK(usconfig(CONF_LOCKTYPE, US_NODEBUG) == US_DEBUG);
  plain = usinit(in_dir("plain"));
  REQUIRE(plain != NULL);
  {
    ulock_t l = usnewlock(plain);
    errno = 0;
    CHECK(l != NULL && usctllock(l, CL_METERFETCH, &m) == -1 && errno == EINVAL);
  }
  usdetach(plain);
  usdetach(a);
}

static int sema_meter_is(usema_t *t, int phits, int psemas, int vsemas, int vnowait, int nwait,
                         int maxnwait) {
  semameter_t m;
  if (usctlsema(t, CS_METERFETCH, &m) != 0) return 0;
  if (m.sm_phits != phits || m.sm_psemas != psemas || m.sm_vsemas != vsemas ||
      m.sm_vnowait != vnowait || m.sm_nwait != nwait || m.sm_maxnwait != maxnwait) {
    fprintf(stderr, "semameter: %d %d %d %d %d %d, expected %d %d %d %d %d %d\n", m.sm_phits,
            m.sm_psemas, m.sm_vsemas, m.sm_vnowait, m.sm_nwait, m.sm_maxnwait, phits, psemas,
            vsemas, vnowait, nwait, maxnwait);
    return 0;
  }
  return 1;
}

static void test_sema_meter(void) {
  const char *p = in_dir("smeter");
  usptr_t *a = usinit(p);
  struct shared *s;
  usema_t *t;
  struct proc waiter;
  semadebug_t d;
  semameter_t sm;
  char line[64];
  int i;
  FILE *f;
  REQUIRE(a != NULL);
  REQUIRE((s = make_shared(a)) != NULL);
  t = s->sema;
  errno = 0;
  CHECK(usctlsema(t, CS_METERFETCH, &sm) == -1 && errno == EINVAL); /* off */
  CHECK(usctlsema(t, CS_METERON) == 0);
  CHECK(sema_meter_is(t, 0, 0, 0, 0, 0, 0));
  CHECK(uspsema(t) == 1);
  CHECK(sema_meter_is(t, 1, 1, 0, 0, 0, 0));
  CHECK(usvsema(t) == 0);
  CHECK(sema_meter_is(t, 1, 1, 1, 1, 0, 0));
  CHECK(uscpsema(t) == 1 && uscpsema(t) == 0);
  CHECK(sema_meter_is(t, 2, 3, 1, 1, 0, 0));
  /* A waiter in another process. */
  {
    const char *argv[] = {g_helper, "psema", p, NULL};
    REQUIRE(spawn(&waiter, argv) == 0);
    CHECK(expect_line(&waiter, "waiting", line, sizeof line, 30000) == 0);
    for (i = 0; i < 10000 && ustestsema(t) != -1; ++i) sleep_ms(1);
    CHECK(sema_meter_is(t, 2, 4, 1, 1, 1, 1));
    CHECK(usvsema(t) == 0);
    CHECK(expect_line(&waiter, "got", line, sizeof line, 30000) == 0);
    CHECK(finish(&waiter, 30000) == 0);
    CHECK(sema_meter_is(t, 2, 4, 2, 1, 0, 1));
  }
  CHECK(usctlsema(t, CS_METERRESET) == 0 && sema_meter_is(t, 0, 0, 0, 0, 0, 0));
  CHECK(usctlsema(t, CS_METEROFF) == 0);
  CHECK(usctlsema(t, CS_METERFETCH, &sm) == -1 && errno == EINVAL);
  /* Debug data: the holder and where it called from. */
  CHECK(usinitsema(t, 1) == 0);
  CHECK(usctlsema(t, CS_DEBUGFETCH, &d) == -1 && errno == EINVAL);
  CHECK(usctlsema(t, CS_DEBUGON) == 0);
  CHECK(uspsema(t) == 1);
  CHECK(usctlsema(t, CS_DEBUGFETCH, &d) == 0);
  CHECK(d.sd_owner_pid == (int)getpid() && d.sd_owner_pc != NULL && d.sd_last_pid == (int)getpid());
  CHECK(usvsema(t) == 0);
  CHECK(usctlsema(t, CS_DEBUGFETCH, &d) == 0 && d.sd_owner_pid == -1);
  CHECK(usctlsema(t, CS_DEBUGRESET) == 0);
  CHECK(usctlsema(t, CS_DEBUGFETCH, &d) == 0 && d.sd_last_pid == -1);
  CHECK(usctlsema(t, CS_DEBUGOFF) == 0);
  errno = 0;
  CHECK(usctlsema(t, 99) == -1 && errno == EINVAL);
  f = tmpfile();
  CHECK(f != NULL && usdumpsema(t, f, "dump") == 0);
  if (f != NULL) {
    rewind(f);
    CHECK(fgets(line, sizeof line, f) != NULL && strstr(line, "count 1") != NULL);
    fclose(f);
  }
  usdetach(a);
}

static void test_history(void) {
  usptr_t *a = usinit(in_dir("hist"));
  usema_t *old, *t;
  histptr_t h;
  hist_t *r;
  int n = 0;
  static const int ops[] = {HOP_PHIT, HOP_VNOWAKE, HOP_CPHIT, HOP_CPMISS, HOP_VNOWAKE};
  REQUIRE(a != NULL);
  REQUIRE((old = usnewsema(a, 1)) != NULL);
  errno = 0;
  CHECK(usconfig(CONF_HISTFETCH, a, &h) == -1 && errno == EINVAL); /* history is off */
  CHECK(usctlsema(old, CS_HISTON) == -1 && errno == EINVAL);
  CHECK(usconfig(CONF_HISTON, a) == 0);
  REQUIRE((t = usnewsema(a, 1)) != NULL); /* made with history on */
  CHECK(uspsema(t) == 1 && usvsema(t) == 0);
  CHECK(uscpsema(t) == 1 && uscpsema(t) == 0 && usvsema(t) == 0);
  CHECK(uspsema(old) == 1 && usvsema(old) == 0); /* not logged */
  CHECK(usconfig(CONF_HISTFETCH, a, &h) == 0);
  CHECK(h.hp_entries == 5 && h.hp_errors == 0);
  for (r = h.hp_current; r != NULL; r = r->h_last) {
    CHECK(r->h_sem == t && r->h_pid == getpid() && r->h_cpc != NULL);
    if (n < 5) CHECK(r->h_op == ops[4 - n]);
    if (r->h_op == HOP_CPMISS) CHECK(r->h_scnt == 0);
    if (r->h_last != NULL) CHECK(r->h_last->h_next == r);
    ++n;
  }
  CHECK(n == 5);
  /* A limit: what does not fit is counted as not logged. */
  CHECK(usconfig(CONF_HISTRESET, a) == 0);
  CHECK(usconfig(CONF_HISTFETCH, a, &h) == 0 && h.hp_entries == 0 && h.hp_current == NULL);
  CHECK(usconfig(CONF_HISTSIZE, a, 2u) == 0);
  CHECK(usctlsema(old, CS_HISTON) == 0);
  CHECK(uspsema(old) == 1 && usvsema(old) == 0 && uscpsema(old) == 1 && usvsema(old) == 0);
  CHECK(usconfig(CONF_HISTFETCH, a, &h) == 0 && h.hp_entries == 2 && h.hp_errors == 2);
  CHECK(usconfig(CONF_HISTOFF, a) == 0);
  CHECK(usconfig(CONF_HISTFETCH, a, &h) == -1 && errno == EINVAL);
  usdetach(a);
}

/* ---- A holder that dies ---- */

static void test_dead_holder(void) {
  const char *p = in_dir("dead");
  usptr_t *a = usinit(p);
  struct shared *s;
  struct proc holder;
  char line[64];
  double t0;
  REQUIRE(a != NULL);
  REQUIRE((s = make_shared(a)) != NULL);
  {
    const char *argv[] = {g_helper, "hold", p, NULL};
    REQUIRE(spawn(&holder, argv) == 0);
    CHECK(expect_line(&holder, "held", line, sizeof line, 30000) == 0);
    kill_proc(&holder);
  }
  t0 = now_s();
  CHECK(ussetlock(s->lock) == 1); /* handed over, never a hang */
  CHECK(now_s() - t0 < 10);
  CHECK(usunsetlock(s->lock) == 0);
  CHECK(ussetlock(s->lock) == 1 && usunsetlock(s->lock) == 0);
  usdetach(a);
}

/* ---- Bad arguments: the IRIX error, never a crash ---- */

static void test_bad_args(void) {
  const char *foreign = in_dir("foreign.txt");
  static const char text[] = "not an arena, and it must stay as it is\n";
  char back[sizeof text];
  usptr_t *a;
  struct stat st;
  FILE *f;
  int x = 0;
  void *block;
  ulock_t l;
  usema_t *t;
  usptr_t *fake = (usptr_t *)&x;
  /* usinit */
  f = fopen(foreign, "w");
  REQUIRE(f != NULL);
  fputs(text, f);
  fclose(f);
  errno = 0;
  CHECK(usinit(foreign) == NULL && errno == EINVAL);
  f = fopen(foreign, "r");
  REQUIRE(f != NULL);
  CHECK(fread(back, 1, sizeof back, f) == sizeof text - 1 && memcmp(back, text, sizeof text - 1) == 0);
  fclose(f);
  CHECK(stat(foreign, &st) == 0 && st.st_size == (off_t)(sizeof text - 1));
  errno = 0;
  CHECK(usinit(NULL) == NULL && errno == EINVAL);
  CHECK(usinit("") == NULL && errno == ENOENT);
  CHECK(usinit(in_dir("no/such/dir")) == NULL && errno == ENOENT);
  errno = 0;
  CHECK(usinit(g_dir) == NULL && errno != 0); /* a directory */
  /* A null, foreign or detached arena. */
  errno = 0;
  CHECK(usmalloc(8, NULL) == NULL && errno == EINVAL);
  CHECK(usmalloc(8, fake) == NULL && errno == EINVAL);
  CHECK(uscalloc(1, 8, NULL) == NULL && usrealloc(NULL, 8, NULL) == NULL);
  CHECK(usmemalign(64, 8, NULL) == NULL && usrecalloc(NULL, 1, 8, NULL) == NULL);
  CHECK(usmallocblksize(&x, NULL) == 0);
  CHECK(usmallopt(M_DEBUG, 1, NULL) != 0);
  CHECK(usmallinfo(NULL).arena == 0);
  usfree(&x, NULL);
  CHECK(usnewlock(NULL) == NULL && errno == EINVAL);
  CHECK(usnewsema(NULL, 1) == NULL && errno == EINVAL);
  CHECK(new_barrier(NULL) == NULL && errno == EINVAL);
  CHECK(usgetinfo(NULL) == NULL && errno == EINVAL);
  usputinfo(NULL, &x);
  CHECK(uscasinfo(NULL, NULL, &x) == 0);
  CHECK(usadd(NULL) == -1 && errno == EINVAL);
  CHECK(usconfig(CONF_CHMOD, (usptr_t *)NULL, 0644u) == -1 && errno == EINVAL);
  CHECK(usconfig(CONF_HISTON, fake) == -1 && errno == EINVAL);
  usdetach(NULL);
  usdetach(fake);
  a = usinit(in_dir("ok"));
  REQUIRE(a != NULL);
  block = usmalloc(256, a);
  REQUIRE(block != NULL);
  /* Bad lock, semaphore and barrier handles. */
  errno = 0;
  CHECK(ussetlock(NULL) == -1 && errno == EINVAL);
  CHECK(ussetlock(&x) == -1 && errno == EINVAL);
  CHECK(ussetlock(block) == -1 && errno == EINVAL); /* in the arena, but not a lock */
  CHECK(usunsetlock(&x) == -1 && uscsetlock(&x, 1) == -1 && uswsetlock(&x, 1) == -1);
  CHECK(ustestlock(NULL) == -1 && usinitlock(NULL) == -1);
  CHECK(usctllock(NULL, CL_METERRESET) == -1 && usdumplock(NULL, stderr, "") == -1);
  usfreelock(NULL, a);
  usfreelock(&x, a);
  CHECK(uspsema(NULL) == -1 && errno == EINVAL);
  CHECK(usvsema(&x) == -1 && uscpsema(block) == -1 && usinitsema(NULL, 1) == -1);
  errno = 0;
  CHECK(ustestsema(NULL) == -1 && errno == EINVAL);
  CHECK(usctlsema(NULL, CS_METERON) == -1 && usdumpsema(&x, stderr, "") == -1);
  usfreesema(NULL, a);
  errno = 0;
  barrier(NULL, 2);
  CHECK(errno == EINVAL);
  errno = 0;
  barrier((barrier_t *)block, 2);
  CHECK(errno == EINVAL);
  init_barrier(NULL);
  free_barrier((barrier_t *)&x);
  /* Freed objects are recognised. */
  l = usnewlock(a);
  t = usnewsema(a, 1);
  REQUIRE(l != NULL && t != NULL);
  usfreelock(l, a);
  usfreesema(t, a);
  errno = 0;
  CHECK(ussetlock(l) == -1 && errno == EINVAL);
  CHECK(uspsema(t) == -1 && errno == EINVAL);
  /* Foreign pointers to the allocator. */
  errno = 0;
  CHECK(usmallocblksize(&x, a) == 0 && errno == EINVAL);
  CHECK(usrealloc(&x, 10, a) == NULL);
  usfree(&x, a);
  usfree(block, a);
  /* A detached arena is no arena. */
  usdetach(a);
  errno = 0;
  CHECK(usmalloc(8, a) == NULL && errno == EINVAL);
  CHECK(usgetinfo(a) == NULL && errno == EINVAL);
  CHECK(usconfig(CONF_GETSIZE, a) == -1 && errno == EINVAL);
}

/* ---- The file's permissions govern access ---- */

static void test_permissions(void) {
  const char *p = in_dir("perm");
  usptr_t *a = usinit(p);
  struct stat st;
  char line[64], expect[32], uid[16];
  int root = geteuid() == 0;
  REQUIRE(a != NULL);
  CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
  CHECK(usconfig(CONF_CHMOD, a, 0640u) == 0);
  CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0640);
  CHECK(chmod(g_dir, 0711) == 0);
  snprintf(expect, sizeof expect, "err %d", EACCES);
  snprintf(uid, sizeof uid, "%d", 65534);
  /* As root, another user is refused by the mode; else we refuse ourselves with mode 0. */
  if (!root) CHECK(usconfig(CONF_CHMOD, a, 0u) == 0);
  {
    const char *argv[] = {g_helper, root ? "asuser" : "join", p, root ? uid : NULL, NULL};
    CHECK(run(argv, line, sizeof line) == 3 && strcmp(line, expect) == 0);
  }
  CHECK(usconfig(CONF_CHMOD, a, root ? 0666u : 0600u) == 0);
  {
    const char *argv[] = {g_helper, root ? "asuser" : "join", p, root ? uid : NULL, NULL};
    CHECK(run(argv, line, sizeof line) == 0 && strncmp(line, "ok ", 3) == 0);
  }
  usdetach(a);
}

/* ---- Life cycle: an arena every user has left starts afresh ---- */

static void test_life_cycle(void) {
  const char *p = in_dir("life");
  usptr_t *a, *b;
  char line[256];
  int c;
  struct stat st;
  /* A worker sets it up and leaves: nobody holds it, so the next usinit makes it anew. */
  {
    const char *argv[] = {g_worker, "-k", "-n", "5", p, NULL};
    CHECK(run(argv, line, sizeof line) == 0 && strncmp(line, "setUpArena by", 13) == 0);
  }
  a = usinit(p);
  REQUIRE(a != NULL);
  CHECK(usgetinfo(a) == NULL);
  /* While we hold it, its contents stay: the first worker sets up, the second joins. */
  {
    const char *argv[] = {g_worker, "-n", "5", p, NULL};
    CHECK(run(argv, line, sizeof line) == 0 && strncmp(line, "setUpArena by", 13) == 0);
    CHECK(run(argv, line, sizeof line) == 0 && strncmp(line, "joined", 6) == 0);
    CHECK(usgetinfo(a) != NULL && *((arenaStuff_t *)usgetinfo(a))->work == 10);
  }
  /* A second usinit of the same path in one process is the same arena, counted once. */
  b = usinit(p);
  CHECK(b == a);
  usdetach(b);
  CHECK(usgetinfo(a) != NULL);
  usdetach(a);
  errno = 0;
  CHECK(usgetinfo(a) == NULL && errno == EINVAL);
  /* Example 3-2: an empty file from mkstemp becomes an arena of the asked size and users. */
  {
    const char *argv[] = {g_make_arena, "-d", g_dir, "-s", "300000", "-n", "3", "-k", NULL};
    char path[512];
    long size = 0;
    int users = 0;
    CHECK(run(argv, line, sizeof line) == 0);
    CHECK(sscanf(line, "arena %511s at %*p size %ld users %d", path, &size, &users) == 3);
    CHECK(size >= 300000 && users == 3);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    c = unlink(path);
    CHECK(c == 0);
  }
}

/* ---- The runner ---- */

struct test {
  const char *name;
  void (*fn)(void);
};

static const struct test g_tests[] = {
    {"usconfig", test_usconfig},
    {"same_address", test_same_address},
    {"create_join_race", test_create_join_race},
    {"user_limit", test_user_limit},
    {"fork_usadd", test_fork_usadd},
    {"sharedonly", test_sharedonly},
    {"alloc", test_alloc},
    {"locks", test_locks},
    {"semaphores", test_semaphores},
    {"barriers", test_barriers},
    {"cas_race", test_cas_race},
    {"lock_meter", test_lock_meter},
    {"sema_meter", test_sema_meter},
    {"history", test_history},
    {"dead_holder", test_dead_holder},
    {"bad_args", test_bad_args},
    {"permissions", test_permissions},
    {"life_cycle", test_life_cycle},
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int run_test(const struct test *t) {
  double t0 = now_s();
  int status = 0, result, k;
  pid_t pid, r;
  snprintf(g_dir, sizeof g_dir, "/tmp/shmkit-test-%d-%s-XXXXXX", (int)getpid(), t->name);
  if (mkdtemp(g_dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  fflush(NULL);
  pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    g_failures = 0;
    t->fn();
    fflush(NULL);
    _exit(g_failures != 0 ? 1 : 0);
  }
  setpgid(pid, pid);
  for (;;) {
    r = waitpid(pid, &status, WNOHANG);
    if (r == pid || r < 0) break;
    if (now_s() - t0 > 240) {
      fprintf(stderr, "%s: timed out\n", t->name);
      kill(-pid, SIGKILL);
    }
    sleep_ms(5);
  }
  /* Whatever is left of the test's processes goes; we are their subreaper. */
  kill(-pid, SIGKILL);
  for (k = 0; k < 2000; ++k) {
    const pid_t w = waitpid(-1, NULL, WNOHANG);
    if (w < 0 && errno == ECHILD) break;
    if (w <= 0) sleep_ms(5);
  }
  nftw(g_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  result = r == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
  if (r == pid && WIFSIGNALED(status)) fprintf(stderr, "%s: killed by signal %d\n", t->name, WTERMSIG(status));
  printf("%-18s %s (%.2f s)\n", t->name, result == 0 ? "ok" : "FAILED", now_s() - t0);
  fflush(stdout);
  return result;
}

int main(int argc, char **argv) {
  size_t i, count = sizeof g_tests / sizeof g_tests[0];
  int failed = 0, ran = 0, k;
  if (argc > 1 && strcmp(argv[1], "--list") == 0) {
    for (i = 0; i < count; ++i) printf("%s\n", g_tests[i].name);
    return 0;
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  signal(SIGPIPE, SIG_IGN);
  for (i = 0; i < count; ++i) {
    int wanted = argc == 1;
    for (k = 1; k < argc; ++k) wanted |= strcmp(argv[k], g_tests[i].name) == 0;
    if (!wanted) continue;
    ++ran;
    failed += run_test(&g_tests[i]);
  }
  if (ran == 0) {
    fprintf(stderr, "no such test\n");
    return 2;
  }
  printf("%d of %d tests passed\n", ran - failed, ran);
  return failed != 0 ? 1 : 0;
}
