/*
 * Test fixture: a real redis-server per test, on a free TCP port (and a unix
 * socket) in a private temp dir. The server is started with
 * PR_SET_PDEATHSIG so it dies with the test process even when the test
 * crashes; tcr_stop() kills it by its own pid and removes the dir.
 */
#ifndef TC_REDIS_FIXTURE_H
#define TC_REDIS_FIXTURE_H

#include <sys/types.h>

typedef struct tcr_server {
    pid_t pid;
    int port;
    char dir[256];       /* private temp dir, removed by tcr_stop() */
    char sock[320];      /* unix socket path */
    char url[400];       /* redis://127.0.0.1:port */
    char unix_url[400];  /* unix://sock */
    char conf_extra[1024];
    /* TLS servers (tcr_start_tls): port is the TLS port, plain TCP is off,
     * url is rediss://127.0.0.1:port; the files below are in dir. */
    int tls;
    char ca_file[320];       /* the CA that signed server and client */
    char ca_dir[320];        /* a hashed directory holding that CA */
    char other_ca_file[320]; /* an unrelated CA (a "wrong CA") */
    char client_cert[320];   /* client certificate signed by ca_file */
    char client_key[320];
} tcr_server;

/** A TCP port on 127.0.0.1 that was free a moment ago, or -1. */
int tcr_free_port(void);
/** Start a server; `conf_extra` (may be NULL) is appended to its config
 *  (e.g. "requirepass secret\n"). Returns 0 once it answers PING, -1 on
 *  failure. */
int tcr_start(tcr_server *s, const char *conf_extra);
/** Start a TLS-only server (--port 0 --tls-port P) with a throwaway CA and
 *  certificates made by the `openssl` CLI in its temp dir. The server's
 *  certificate is valid for localhost, 127.0.0.1 and ::1; clients need no
 *  certificate unless `conf_extra` says "tls-auth-clients yes". Returns 0
 *  once it answers PING (on its unix socket), -1 on failure. */
int tcr_start_tls(tcr_server *s, const char *conf_extra);
/** Kill (SIGKILL) and reap the server, remove its dir. Idempotent. */
void tcr_stop(tcr_server *s);
/** Kill the server but keep its dir and port for tcr_restart(). */
void tcr_kill(tcr_server *s);
/** Start again on the same port and socket; 0 once it answers PING. */
int tcr_restart(tcr_server *s);
/** SIGSTOP / SIGCONT: a hung server whose connections stay open. */
void tcr_pause(tcr_server *s);
void tcr_resume(tcr_server *s);
/** Run one command on the server (redis-cli style argv, NULL-terminated);
 *  returns the reply as a malloc'd string (integers printed, arrays joined
 *  by '\n', nil as "(nil)") or NULL on connection error. `auth` may be NULL. */
char *tcr_cmd(const tcr_server *s, const char *auth, ...);
/** Wait until cond(arg) is non-zero, polling every ms up to `timeout_ms`.
 *  Returns 1 if the condition held, 0 on timeout. */
int tcr_wait(int (*cond)(void *), void *arg, int timeout_ms);
/** The state letter of process `pid` from /proc/<pid>/stat ('R', 'S',
 *  'T' once a SIGSTOP has taken effect, ...), or 0 when it cannot be read. */
char tcr_proc_state(pid_t pid);
/** 1 when the server process is stopped (SIGSTOP has taken effect: state
 *  'T' in /proc/<pid>/stat), 0 otherwise. A predicate for tcr_wait(). */
int tcr_stopped(void *s);
/** Now on CLOCK_BOOTTIME (the library's clock) in ms, for waits derived
 *  from a lease or a TTL. */
double tcr_now_ms(void);
/** Sleep until tcr_now_ms() >= `when_ms` (a deadline derived from a lease
 *  or a TTL: the passing of that time is what is under test). */
void tcr_sleep_until_ms(double when_ms);
/** Sleep ms milliseconds (for pacing load, never for synchronisation). */
void tcr_sleep_ms(int ms);

#endif
