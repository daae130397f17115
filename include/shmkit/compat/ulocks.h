/* SPDX-License-Identifier: MIT */
/* <ulocks.h>: IRIX's shared arenas (usconfig, usinit, usmalloc …), locks, semaphores and
 * barriers for C (C89 to C17) and C++, built on shmkit's arena and sync layers.
 *
 * Source compatible with IRIX 6.5: the names, types and calling conventions are IRIX's (NULL or
 * -1 and errno on failure); the numeric values of the constants are not. Every process that
 * calls usinit() with one path gets the arena at one address, so pointers into it (usmalloc,
 * usgetinfo, lock and semaphore handles) are valid in all of them. The functions are part of
 * libshmkit: link with -lshmkit (and -lstdc++ -lpthread from C with the static library), or use
 * `pkg-config --libs --static shmkit`. What differs from IRIX: docs/porting-from-irix.md. */
#ifndef SHMKIT_COMPAT_ULOCKS_H
#define SHMKIT_COMPAT_ULOCKS_H

#include <malloc.h> /* struct mallinfo, M_MXFAST … M_KEEP */
#include <stddef.h> /* size_t, ptrdiff_t */
#include <stdint.h> /* int32_t, intptr_t */
#include <stdio.h>  /* FILE */
#include <sys/types.h> /* pid_t, mode_t */

#if defined(__GNUC__)
#  define SHMKIT_ULOCKS_API __attribute__((visibility("default")))
#else
#  define SHMKIT_ULOCKS_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Types ---- */

typedef struct usptr_s usptr_t;     /* an arena, as usinit() returns it */
typedef void *ulock_t;              /* a lock: a pointer into the arena, passed by value */
typedef void usema_t;               /* a semaphore: the API passes usema_t * */
typedef struct barrier_s barrier_t; /* a barrier */
typedef intptr_t __psint_t;         /* pointer-sized integers (the first datum as a number) */
typedef uintptr_t __psunsigned_t;

typedef struct lockmeter_s {
  int lm_spins; /* times the spin budget ran out while the lock was busy */
  int lm_tries; /* calls of ussetlock, uscsetlock and uswsetlock */
  int lm_hits;  /* acquisitions */
} lockmeter_t;

typedef struct lockdebug_s {
  int ld_owner_pid; /* the holder's pid, -1 when free */
} lockdebug_t;

typedef struct semameter_s {
  int sm_phits;    /* P's that got the semaphore without waiting */
  int sm_psemas;   /* P attempts (uspsema and uscpsema) */
  int sm_vsemas;   /* V's */
  int sm_vnowait;  /* V's with nobody waiting */
  int sm_nwait;    /* processes waiting now */
  int sm_maxnwait; /* most ever waiting at once */
} semameter_t;

typedef struct semadebug_s {
  int sd_owner_pid;  /* the last P's pid while it holds the semaphore, -1 if none */
  char *sd_owner_pc; /* the address its P was called from */
  int sd_last_pid;   /* the last process that did a P or V */
  char *sd_last_pc;  /* and where it called from */
} semadebug_t;

/* A semaphore history record (CONF_HISTON, CS_HISTON). Records live in the arena. */
typedef struct hist_s {
  usema_t *h_sem;         /* the semaphore */
  int h_op;               /* HOP_* */
  pid_t h_pid;            /* who did it */
  int h_scnt;             /* the count after the operation */
  pid_t h_wpid;           /* HOP_VWAKE: the pid woken when known, else 0 */
  char *h_cpc;            /* the address the call was made from */
  struct hist_s *h_next;  /* the next newer record, NULL for the newest */
  struct hist_s *h_last;  /* the next older record, NULL for the oldest */
} hist_t;

typedef struct histptr_s {
  hist_t *hp_current; /* the newest record: follow h_last to go back in time */
  int hp_entries;     /* records kept */
  int hp_errors;      /* events not logged (no room, or over CONF_HISTSIZE) */
} histptr_t;

/* ---- Constants (IRIX names; the values are shmkit's own) ---- */

/* usconfig commands */
#define CONF_INITSIZE 1
#define CONF_INITUSERS 2
#define CONF_GETSIZE 3
#define CONF_GETUSERS 4
#define CONF_LOCKTYPE 5
#define CONF_ARENATYPE 6
#define CONF_CHMOD 7
#define CONF_ATTACHADDR 8
#define CONF_AUTOGROW 9
#define CONF_AUTORESV 10
#define CONF_HISTON 11
#define CONF_HISTOFF 12
#define CONF_HISTSIZE 13
#define CONF_HISTFETCH 14
#define CONF_HISTRESET 15
#define CONF_STHREADIOON 16
#define CONF_STHREADIOOFF 17
#define CONF_STHREADMISCON 18
#define CONF_STHREADMISCOFF 19
#define CONF_STHREADMALLOCON 20
#define CONF_STHREADMALLOCOFF 21

/* lock types (CONF_LOCKTYPE) and arena types (CONF_ARENATYPE) */
#define US_NODEBUG 0
#define US_DEBUG 1
#define US_DEBUGPLUS 2
#define US_GENERAL 0
#define US_SHAREDONLY 1

/* usctllock commands */
#define CL_METERFETCH 1
#define CL_METERRESET 2
#define CL_DEBUGFETCH 3
#define CL_DEBUGRESET 4

/* usctlsema commands */
#define CS_METERON 1
#define CS_METEROFF 2
#define CS_METERFETCH 3
#define CS_METERRESET 4
#define CS_DEBUGON 5
#define CS_DEBUGOFF 6
#define CS_DEBUGFETCH 7
#define CS_DEBUGRESET 8
#define CS_HISTON 9
#define CS_HISTOFF 10
#define CS_RECURSIVEON 11
#define CS_RECURSIVEOFF 12

/* history operations (hist_t.h_op). IRIX names HOP_PWOKE and HOP_VWAKE; the rest are ours. */
#define HOP_PHIT 1    /* uspsema got the semaphore at once */
#define HOP_PSLEEP 2  /* uspsema found it taken and waits */
#define HOP_PWOKE 3   /* a waiting uspsema got it */
#define HOP_VNOWAKE 4 /* usvsema with nobody waiting */
#define HOP_VWAKE 5   /* usvsema that handed it to a waiter */
#define HOP_CPHIT 6   /* uscpsema got it */
#define HOP_CPMISS 7  /* uscpsema did not */

/* usmallopt options: glibc's <malloc.h> defines the first four (same values) */
#ifndef M_MXFAST
#  define M_MXFAST 1
#endif
#ifndef M_NLBLKS
#  define M_NLBLKS 2
#endif
#ifndef M_GRAIN
#  define M_GRAIN 3
#endif
#ifndef M_KEEP
#  define M_KEEP 4
#endif
#ifndef M_DEBUG
#  define M_DEBUG 5
#endif
#ifndef M_BLKSZ
#  define M_BLKSZ 6
#endif
#ifndef M_MXCHK
#  define M_MXCHK 7
#endif
#ifndef M_FREEHD
#  define M_FREEHD 8
#endif
#ifndef M_CLRONFREE
#  define M_CLRONFREE 9
#endif
#ifndef M_CRLOCK
#  define M_CRLOCK 10
#endif

/* Non-zero: the calls trace what they do (_utrace) or print their errors (_uerror) on stderr.
 * usinit sets them from the environment variables USTRACE and USERROR. */
SHMKIT_ULOCKS_API extern int _utrace;
SHMKIT_ULOCKS_API extern int _uerror;

/* ---- Arenas ---- */

SHMKIT_ULOCKS_API ptrdiff_t usconfig(int cmd, ...);
SHMKIT_ULOCKS_API usptr_t *usinit(const char *filename);
SHMKIT_ULOCKS_API int usadd(usptr_t *u);
SHMKIT_ULOCKS_API void usdetach(usptr_t *u);

/* ---- Allocation ---- */

SHMKIT_ULOCKS_API void *usmalloc(size_t size, usptr_t *handle);
SHMKIT_ULOCKS_API void usfree(void *ptr, usptr_t *handle);
SHMKIT_ULOCKS_API void *usrealloc(void *ptr, size_t size, usptr_t *handle);
SHMKIT_ULOCKS_API void *uscalloc(size_t nelem, size_t elsize, usptr_t *handle);
SHMKIT_ULOCKS_API void *usrecalloc(void *ptr, size_t nelem, size_t elsize, usptr_t *handle);
SHMKIT_ULOCKS_API void *usmemalign(size_t align, size_t size, usptr_t *handle);
SHMKIT_ULOCKS_API size_t usmallocblksize(void *ptr, usptr_t *handle);
SHMKIT_ULOCKS_API int usmallopt(int cmd, int value, usptr_t *handle);
SHMKIT_ULOCKS_API struct mallinfo usmallinfo(usptr_t *handle);

/* ---- The first datum, compare-and-swap ---- */

SHMKIT_ULOCKS_API void usputinfo(usptr_t *handle, void *info);
SHMKIT_ULOCKS_API void *usgetinfo(usptr_t *handle);
SHMKIT_ULOCKS_API int uscasinfo(usptr_t *handle, void *oldval, void *newval);
SHMKIT_ULOCKS_API int uscas(void *destp, ptrdiff_t oldval, ptrdiff_t newval, usptr_t *u);
SHMKIT_ULOCKS_API int uscas32(void *destp, int32_t oldval, int32_t newval, usptr_t *u);

/* ---- Locks ---- */

SHMKIT_ULOCKS_API ulock_t usnewlock(usptr_t *handle);
SHMKIT_ULOCKS_API int usinitlock(ulock_t lock);
SHMKIT_ULOCKS_API void usfreelock(ulock_t lock, usptr_t *handle);
SHMKIT_ULOCKS_API int ussetlock(ulock_t lock);
SHMKIT_ULOCKS_API int uscsetlock(ulock_t lock, unsigned spins);
SHMKIT_ULOCKS_API int uswsetlock(ulock_t lock, unsigned spins);
SHMKIT_ULOCKS_API int ustestlock(ulock_t lock);
SHMKIT_ULOCKS_API int usunsetlock(ulock_t lock);
SHMKIT_ULOCKS_API int usctllock(ulock_t lock, int cmd, ...);
SHMKIT_ULOCKS_API int usdumplock(ulock_t lock, FILE *fd, const char *str);

/* ---- Semaphores ---- */

SHMKIT_ULOCKS_API usema_t *usnewsema(usptr_t *handle, int val);
SHMKIT_ULOCKS_API int usinitsema(usema_t *sema, int val);
SHMKIT_ULOCKS_API void usfreesema(usema_t *sema, usptr_t *handle);
SHMKIT_ULOCKS_API int uspsema(usema_t *sema);
SHMKIT_ULOCKS_API int uscpsema(usema_t *sema);
SHMKIT_ULOCKS_API int usvsema(usema_t *sema);
SHMKIT_ULOCKS_API int ustestsema(usema_t *sema);
SHMKIT_ULOCKS_API int usctlsema(usema_t *sema, int cmd, ...);
SHMKIT_ULOCKS_API int usdumpsema(usema_t *sema, FILE *fd, const char *str);

/* Pollable semaphores: declared so that programs build; usopenpollsema fails with ENXIO
 * (no pollable semaphore device on Linux), so they behave as ordinary semaphores that nobody
 * has opened (see the porting notes). */
SHMKIT_ULOCKS_API usema_t *usnewpollsema(usptr_t *handle, int val);
SHMKIT_ULOCKS_API int usopenpollsema(usema_t *sema, mode_t acc);
SHMKIT_ULOCKS_API int usclosepollsema(usema_t *sema);
SHMKIT_ULOCKS_API int usfreepollsema(usema_t *sema, usptr_t *handle);

/* ---- Barriers ---- */

SHMKIT_ULOCKS_API barrier_t *new_barrier(usptr_t *handle);
SHMKIT_ULOCKS_API void init_barrier(barrier_t *b);
SHMKIT_ULOCKS_API void barrier(barrier_t *b, unsigned n);
SHMKIT_ULOCKS_API void free_barrier(barrier_t *b);

#ifdef __cplusplus
}
#endif

#endif /* SHMKIT_COMPAT_ULOCKS_H */
