/* SPDX-License-Identifier: MIT */
/* <ulocks.h> compiles in every C standard from C89 and in C++ (built with -fsyntax-only by
 * tests/compat/CMakeLists.txt). It names every type, constant and function of the header. */
#include <ulocks.h>

#ifdef __cplusplus
#  define NULLPTR 0
#else
#  define NULLPTR ((void *)0)
#endif

int header_check(usptr_t *u, ulock_t l, usema_t *s, barrier_t *b);

int header_check(usptr_t *u, ulock_t l, usema_t *s, barrier_t *b) {
  lockmeter_t lm;
  lockdebug_t ld;
  semameter_t sm;
  semadebug_t sd;
  histptr_t hp;
  hist_t *h;
  struct mallinfo mi;
  __psint_t datum = (__psint_t)usgetinfo(u);
  __psunsigned_t udatum = (__psunsigned_t)datum;
  int cmds[] = {CONF_INITSIZE, CONF_INITUSERS, CONF_GETSIZE, CONF_GETUSERS, CONF_LOCKTYPE,
                CONF_ARENATYPE, CONF_CHMOD, CONF_ATTACHADDR, CONF_AUTOGROW, CONF_AUTORESV,
                CONF_HISTON, CONF_HISTOFF, CONF_HISTSIZE, CONF_HISTFETCH, CONF_HISTRESET,
                CONF_STHREADIOON, CONF_STHREADIOOFF, CONF_STHREADMISCON, CONF_STHREADMISCOFF,
                CONF_STHREADMALLOCON, CONF_STHREADMALLOCOFF, US_NODEBUG, US_DEBUG, US_DEBUGPLUS,
                US_GENERAL, US_SHAREDONLY, CL_METERFETCH, CL_METERRESET, CL_DEBUGFETCH,
                CL_DEBUGRESET, CS_METERON, CS_METEROFF, CS_METERFETCH, CS_METERRESET, CS_DEBUGON,
                CS_DEBUGOFF, CS_DEBUGFETCH, CS_DEBUGRESET, CS_HISTON, CS_HISTOFF, CS_RECURSIVEON,
                CS_RECURSIVEOFF, HOP_PHIT, HOP_PSLEEP, HOP_PWOKE, HOP_VNOWAKE, HOP_VWAKE,
                HOP_CPHIT, HOP_CPMISS, M_MXFAST, M_NLBLKS, M_GRAIN, M_KEEP, M_DEBUG, M_BLKSZ,
                M_MXCHK, M_FREEHD, M_CLRONFREE, M_CRLOCK};
  int r = cmds[0] + _utrace + _uerror + (int)udatum;
  void *p = usmalloc(8, u);
  long w = 0;
  int32_t w32 = 0;
  r += (int)usconfig(CONF_INITSIZE, 65536u) + (int)usconfig(CONF_GETSIZE, u);
  r += usadd(u);
  p = usrealloc(p, 16, u);
  p = usrecalloc(p, 2, 16, u);
  usfree(p, u);
  p = uscalloc(2, 8, u);
  usfree(p, u);
  p = usmemalign(64, 8, u);
  r += (int)usmallocblksize(p, u) + usmallopt(M_GRAIN, 16, u);
  mi = usmallinfo(u);
  r += mi.arena;
  usputinfo(u, p);
  r += uscasinfo(u, p, NULLPTR) + uscas(&w, 0, 1, u) + uscas32(&w32, 0, 1, u);
  l = usnewlock(u);
  r += usinitlock(l) + ussetlock(l) + uscsetlock(l, 1) + uswsetlock(l, 1) + ustestlock(l);
  r += usunsetlock(l) + usctllock(l, CL_METERFETCH, &lm) + usctllock(l, CL_DEBUGFETCH, &ld);
  r += usdumplock(l, stderr, "lock");
  usfreelock(l, u);
  s = usnewsema(u, 1);
  r += usinitsema(s, 1) + uspsema(s) + uscpsema(s) + usvsema(s) + ustestsema(s);
  r += usctlsema(s, CS_METERFETCH, &sm) + usctlsema(s, CS_DEBUGFETCH, &sd);
  r += usdumpsema(s, stderr, "sema");
  usfreesema(s, u);
  s = usnewpollsema(u, 1);
  r += usopenpollsema(s, 0600) + usclosepollsema(s) + usfreepollsema(s, u);
  b = new_barrier(u);
  init_barrier(b);
  barrier(b, 2);
  free_barrier(b);
  r += (int)usconfig(CONF_HISTFETCH, u, &hp);
  h = hp.hp_current;
  r += h != NULLPTR ? h->h_op + h->h_scnt + (int)hp.hp_entries : 0;
  r += lm.lm_hits + ld.ld_owner_pid + sm.sm_phits + sd.sd_owner_pid;
  usdetach(usinit("/var/tmp/arena"));
  usdetach(u);
  return r;
}
