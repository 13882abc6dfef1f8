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
    char cert_dir[256];      /* where server.crt/key are: dir, or the dir
                                of the server whose CA this one shares */
    int sentinel;            /* 1: a redis-sentinel process (tcr_sentinels) */
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
/** tcr_start_tls() with the CA and certificates of `certs` (a TLS server
 *  started before, borrowed; its dir holds them, so stop it last), so
 *  that servers of one topology trust each other. */
int tcr_start_tls_sharing(tcr_server *s, const char *conf_extra,
                          const tcr_server *certs);
/** Start a redis-sentinel process (same conventions as tcr_start: free
 *  port, unix socket, private dir; its config file is writable, as Sentinel
 *  needs). `conf_extra` holds its "sentinel ..." lines. */
int tcr_start_sentinel(tcr_server *s, const char *conf_extra);

/* A Sentinel topology on loopback: one master, one replica (replicaof),
 * three sentinels monitoring the master under `name` with quorum 2 and
 * short timings (down-after-milliseconds 1000, failover-timeout 5000). */
typedef struct tcr_sentinels {
    tcr_server master, replica;
    tcr_server sentinel[3];
    char name[64];
    char url[600]; /* redis-sentinel://127.0.0.1:p1,127.0.0.1:p2,.../name */
} tcr_sentinels;

/** tcr_sentinels_start() with every server and sentinel TLS-only (one
 *  CA, the master's: t->master.ca_file) and tls-replication on, so the
 *  replica and the sentinels talk TLS too. */
int tcr_sentinels_start_tls(tcr_sentinels *t, const char *name,
                            int timeout_ms);
/** Start it all and wait (up to `timeout_ms`) until the replica is in sync
 *  and every sentinel knows the replica and the other two sentinels (what
 *  a failover needs). 0 on success, -1 after stopping what started. */
int tcr_sentinels_start(tcr_sentinels *t, const char *name, int timeout_ms);
/** Stop every process by pid, remove the dirs. Idempotent. */
void tcr_sentinels_stop(tcr_sentinels *t);
/** Wait (up to `timeout_ms`) until the replica has processed everything
 *  the master had written when this was called (its slave_repl_offset
 *  reaches the master's master_repl_offset). 1 when it has, 0 otherwise.
 *  Not WAIT: WAIT counts replicas that have the calling connection's own
 *  writes, and a fresh connection has none. */
int tcr_replica_caught_up(const tcr_sentinels *t, int timeout_ms);
/** The master's port according to sentinel i, or -1 when it does not
 *  answer. */
int tcr_sentinel_master_port(const tcr_sentinels *t, int i);
/** 1 when every live sentinel names `port` as the master and the server
 *  `s` on that port says ROLE master. */
int tcr_sentinels_agree(const tcr_sentinels *t, const tcr_server *s);

/** Kill (SIGKILL) and reap the server, remove its dir. Idempotent. */
void tcr_stop(tcr_server *s);
/** Kill the server but keep its dir and port for tcr_restart(). */
void tcr_kill(tcr_server *s);
/** Start again on the same port and socket; 0 once it answers PING. */
int tcr_restart(tcr_server *s);
/** SIGSTOP / SIGCONT: a hung server whose connections stay open. */
void tcr_pause(tcr_server *s);
void tcr_resume(tcr_server *s);
/** A hiredis connection to the unix socket `path`, with `timeout_s` for
 *  the connect and for every command after it; NULL when it cannot
 *  connect. The caller owns it (redisFree). */
struct redisContext *tcr_connect_unix(const char *path, int timeout_s);
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
