#include "pin.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "client.h"
#include "cmd_impl.h"
#include "log.h"
#include "workers.h"

/* A pin thread needs little stack: replies live on the heap. */
#define PIN_STACK (256 * 1024)

enum { STREAM_NONE = 0, STREAM_PUBSUB = 1, STREAM_MONITOR = 2 };

struct tcd_pin {
    tcd_server *srv;
    tcd_client *client;      /* loop only; NULL once released */
    atomic_int refs;         /* loop, thread, each push in flight */
    pthread_mutex_t mu;
    tcd_job *job;            /* mu: the next job to run */
    int stop;                /* mu: released; the thread ends */
    int hungup;              /* mu: no blocking command starts */
    int interruptible;       /* mu: a blocking command is running */
    tc_session *sess;        /* the thread's; read under mu to interrupt */
    int wake[2];             /* pipe, loop -> thread */
    atomic_size_t push_bytes; /* pushes not yet delivered */
    atomic_int paused;       /* the client's output is over --max-output */
    int streaming;           /* thread only: STREAM_* */
    unsigned long long token; /* thread only: pub/sub probes */
};

static void unref(tcd_pin *p)
{
    if (atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static void wake(tcd_pin *p)
{
    ssize_t n = write(p->wake[1], "x", 1); /* full pipe: already woken */
    (void)n;
}

static int name_is(const tcd_req *r, const char *word)
{
    return tcd_arg_is(r, 0, word);
}

/* ---- the thread ---------------------------------------------------------- */

/* Hand a message Redis pushed to the loop, which delivers it in order. */
static void push(tcd_pin *p, const tc_reply *rep, const char *err,
                 int close_after)
{
    tcd_job *j = calloc(1, sizeof(*j));
    if (!j)
        return; /* out of memory: the message is lost, as on a full buffer */
    j->srv = p->srv;
    j->pin = p;
    j->close_after = close_after;
    if (err)
        tcd_reply_error(&j->out, err);
    else
        tcd_reply_redis(&j->out, rep);
    atomic_fetch_add(&p->refs, 1);
    atomic_fetch_add(&p->push_bytes, tcd_buf_pending(&j->out));
    tcd_workers_complete(p->srv->workers, j);
}

static void drop_session(tcd_pin *p)
{
    pthread_mutex_lock(&p->mu);
    tc_session_close(p->sess);
    p->sess = NULL;
    pthread_mutex_unlock(&p->mu);
    p->streaming = STREAM_NONE;
}

/* The session failed: its state (database, WATCH, subscriptions) is gone,
 * so the client goes too, after the error, as if Redis had closed it. */
static void session_failed(tcd_pin *p, tcd_job *job, tc_result rc)
{
    tcd_buf_consume(&job->out, tcd_buf_pending(&job->out));
    tcd_reply_tc_error(&job->out, rc);
    job->close_after = 1;
    drop_session(p);
}

/* In pub/sub mode, is Redis still in it? A PING answers ["pong", token]
 * while subscribed, the bulk token once not; messages before it are
 * pushed. 1, 0, or -1 when the session failed. */
static int still_subscribed(tcd_pin *p)
{
    char tok[48];
    const char *argv[2] = {"PING", tok};
    size_t argl[2] = {4, 0};
    argl[1] = (size_t)snprintf(tok, sizeof(tok), "tiercached-probe-%llu",
                               ++p->token);
    if (tc_session_send(p->sess, 2, argv, argl) != TC_OK)
        return -1;
    for (;;) {
        tc_reply *rep = NULL;
        const tc_reply *a, *b;
        if (tc_session_read(p->sess, -1, &rep) != TC_OK)
            return -1;
        if (tc_reply_type(rep) == TC_REPLY_STRING &&
            tc_reply_len(rep) == argl[1] &&
            !memcmp(tc_reply_str(rep), tok, argl[1])) {
            tc_reply_free(rep);
            return 0;
        }
        a = tc_reply_element(rep, 0);
        b = tc_reply_element(rep, 1);
        if (tc_reply_elements(rep) == 2 && tc_reply_len(a) == 4 &&
            !strncasecmp(tc_reply_str(a), "pong", 4) &&
            tc_reply_len(b) == argl[1] &&
            !memcmp(tc_reply_str(b), tok, argl[1])) {
            tc_reply_free(rep);
            return 1;
        }
        push(p, rep, NULL, 0);
        tc_reply_free(rep);
    }
}

static int starts_stream(const tcd_req *r)
{
    return name_is(r, "subscribe") || name_is(r, "psubscribe") ||
           name_is(r, "ssubscribe") ? STREAM_PUBSUB
           : name_is(r, "monitor")  ? STREAM_MONITOR
                                    : STREAM_NONE;
}

/* What Redis accepts from a client in RESP2 pub/sub mode. */
static int pubsub_command(const tcd_req *r)
{
    static const char *const ok[] = {"subscribe", "psubscribe", "ssubscribe",
                                     "unsubscribe", "punsubscribe",
                                     "sunsubscribe", "ping", "reset", "quit"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (name_is(r, ok[i]))
            return 1;
    return 0;
}

static void run_batch(tcd_pin *p, tcd_job *job)
{
    tcd_multi_args a;
    tc_reply *rep = NULL;
    tc_result rc;
    if (tcd_multi_args_make(job->batch, job->nbatch, &a) != 0) {
        tcd_reply_error(&job->out, "ERR out of memory");
        return;
    }
    rc = tc_session_multi(p->sess, job->nbatch, a.argcs, a.argvs, a.lens,
                          &rep);
    if (rc == TC_OK && !rep)
        tcd_buf_add(&job->out, "*-1\r\n", 5); /* a WATCH aborted it */
    else if (rc == TC_OK || rc == TC_BAD_ARGUMENT)
        tcd_multi_reply(&job->out, rc, rep, job->txn_local);
    else
        session_failed(p, job, rc);
    tcd_multi_args_free(&a);
}

/* Before a RESET in pub/sub or MONITOR mode closes the connection: what
 * Redis sends up to its +RESET (confirmations, messages, the replies to
 * commands sent just before) is pushed, in order, as Redis would send it
 * before +RESET. */
static void flush_stream(tcd_pin *p)
{
    const char *argv[1] = {"RESET"};
    size_t argl[1] = {5};
    if (tc_session_send(p->sess, 1, argv, argl) != TC_OK)
        return;
    for (;;) {
        tc_reply *rep = NULL;
        int done;
        if (tc_session_read(p->sess, -1, &rep) != TC_OK)
            return;
        done = tc_reply_type(rep) == TC_REPLY_STATUS &&
               tc_reply_len(rep) == 5 && !memcmp(tc_reply_str(rep), "RESET", 5);
        if (!done)
            push(p, rep, NULL, 0);
        tc_reply_free(rep);
        if (done)
            return;
    }
}

/* MULTI, EXEC or DISCARD that the loop sent here because the client was
 * in pub/sub mode, which it has left since: answered as the daemon's own
 * transaction commands would (the client has no MULTI of ours: it began
 * none while subscribed), MULTI starting one on the loop. */
static int txn_after_stream(tcd_job *job)
{
    tcd_req *r = job->req;
    if (name_is(r, "multi")) {
        tcd_reply_status(&job->out, "OK");
        job->pin_note |= TCD_PIN_NOTE_MULTI;
    } else if (name_is(r, "exec")) {
        tcd_reply_error(&job->out, "ERR EXEC without MULTI");
    } else if (name_is(r, "discard")) {
        tcd_reply_error(&job->out, "ERR DISCARD without MULTI");
    } else {
        return 0;
    }
    return 1;
}

static void run_job(tcd_pin *p, tcd_job *job)
{
    tcd_req *r = job->req;
    tc_reply *rep = NULL;
    tc_result rc;
    int blocking, mode;
    if (job->cmd && !strcmp(job->cmd->name, "reset")) {
        /* Closing the connection drops all its state in Redis (MULTI,
         * WATCH, SELECT, subscriptions, MONITOR, CLIENT TRACKING); what
         * Redis pushed before was handed on already, in order. */
        if (p->sess && p->streaming)
            flush_stream(p);
        drop_session(p);
        tcd_reply_status(&job->out, "RESET");
        job->pin_note = TCD_PIN_NOTE_UNPIN;
        return;
    }
    if (r && name_is(r, "multi")) /* only in pub/sub mode does it come */
        job->pin_note |= TCD_PIN_NOTE_HELD;
    if (!p->sess) {
        tc_session *s = NULL;
        if ((rc = tc_session_open(p->srv->cache, &s)) != TC_OK) {
            tcd_reply_tc_error(&job->out, rc);
            return;
        }
        pthread_mutex_lock(&p->mu);
        p->sess = s;
        pthread_mutex_unlock(&p->mu);
    }
    if (p->streaming && p->streaming != STREAM_MONITOR &&
        (job->batch || job->unwatch_reply || !pubsub_command(r))) {
        int still = still_subscribed(p);
        if (still < 0) {
            session_failed(p, job, TC_L2_UNAVAILABLE);
            return;
        }
        if (!still) {
            p->streaming = STREAM_NONE; /* unsubscribed from everything */
            job->pin_note |= TCD_PIN_NOTE_STREAM_END;
        }
    }
    if (!p->streaming && !job->batch && !job->unwatch_reply &&
        txn_after_stream(job))
        return;
    if ((job->batch || job->unwatch_reply) && p->streaming) {
        /* Redis refuses MULTI in pub/sub mode; after MONITOR, replies
         * would be mixed with its stream. */
        tcd_reply_error(&job->out, p->streaming == STREAM_MONITOR
                                       ? "ERR tiercached: no transactions "
                                         "on a connection in MONITOR mode"
                                       : "ERR Can't execute 'exec': only "
                                         "(P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE "
                                         "/ PING / QUIT / RESET are allowed "
                                         "in this context");
        return;
    }
    if (job->batch) {
        run_batch(p, job);
        return;
    }
    if (job->unwatch_reply) {
        const char *argv[1] = {"UNWATCH"};
        size_t argl[1] = {7};
        if ((rc = tc_session_command(p->sess, 1, argv, argl, &rep)) != TC_OK) {
            session_failed(p, job, rc);
            return;
        }
        tc_reply_free(rep);
        tcd_buf_add(&job->out, job->unwatch_reply, strlen(job->unwatch_reply));
        return;
    }
    mode = starts_stream(r);
    if (p->streaming || mode) {
        /* Its reply, an error included, comes as a message, in order. */
        if ((rc = tc_session_send(p->sess, r->argc,
                                  (const char *const *)r->argv, r->argl)) !=
            TC_OK)
            session_failed(p, job, rc);
        else if (!p->streaming)
            p->streaming = mode;
        return;
    }
    blocking = tc_command_is_blocking(p->srv->cache, r->argc,
                                      (const char *const *)r->argv, r->argl);
    pthread_mutex_lock(&p->mu);
    if ((p->stop || p->hungup) && blocking) { /* nobody would wait */
        pthread_mutex_unlock(&p->mu);
        tcd_reply_error(&job->out, "ERR tiercached: client closed");
        return;
    }
    p->interruptible = blocking;
    pthread_mutex_unlock(&p->mu);
    rc = tc_session_command(p->sess, r->argc, (const char *const *)r->argv,
                            r->argl, &rep);
    pthread_mutex_lock(&p->mu);
    p->interruptible = 0;
    pthread_mutex_unlock(&p->mu);
    if (rc == TC_OK || rc == TC_BAD_ARGUMENT) {
        tcd_forward_reply(&job->out, rc, rep);
    } else {
        session_failed(p, job, rc);
    }
}

/* Deliver what Redis pushed, until nothing more has arrived. */
static void read_stream(tcd_pin *p)
{
    while (p->streaming && !atomic_load(&p->paused) &&
           atomic_load(&p->push_bytes) < p->srv->cfg->max_output) {
        tc_reply *rep = NULL;
        tc_result rc = tc_session_read(p->sess, 0, &rep);
        if (rc == TC_TIMEOUT)
            return;
        if (rc != TC_OK) {
            push(p, NULL, "ERR tiercached: the Redis connection of this "
                          "client was lost", 1);
            drop_session(p);
            return;
        }
        push(p, rep, NULL, 0);
        tc_reply_free(rep);
    }
}

static void *pin_main(void *arg)
{
    tcd_pin *p = arg;
    tcd_server *srv = p->srv;
    for (;;) {
        struct pollfd pfd[2];
        tcd_job *job;
        int stop, n = 1;
        char buf[64];
        pthread_mutex_lock(&p->mu);
        job = p->job;
        p->job = NULL;
        stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (job) {
            run_job(p, job);
            tcd_workers_complete(srv->workers, job);
            continue;
        }
        if (stop)
            break;
        read_stream(p);
        pfd[0] = (struct pollfd){p->wake[0], POLLIN, 0};
        if (p->streaming && !atomic_load(&p->paused) &&
            atomic_load(&p->push_bytes) < srv->cfg->max_output)
            pfd[n++] = (struct pollfd){tc_session_fd(p->sess), POLLIN, 0};
        if (poll(pfd, (nfds_t)n, -1) < 0 && errno != EINTR)
            break;
        if (pfd[0].revents)
            while (read(p->wake[0], buf, sizeof(buf)) > 0)
                ;
    }
    drop_session(p);
    atomic_fetch_sub_explicit(&srv->counters.pinned, 1, memory_order_relaxed);
    pthread_mutex_lock(&srv->pins_mu);
    srv->pins_live--;
    pthread_cond_broadcast(&srv->pins_cv);
    pthread_mutex_unlock(&srv->pins_mu);
    unref(p);
    return NULL;
}

/* ---- the loop's side ----------------------------------------------------- */

tcd_pin *tcd_pin_start(tcd_client *cl)
{
    tcd_server *srv = cl->srv;
    tcd_pin *p;
    pthread_attr_t attr;
    pthread_t th;
    int ok;
    pthread_mutex_lock(&srv->pins_mu);
    ok = srv->pins_live < srv->cfg->max_pinned;
    if (ok)
        srv->pins_live++;
    pthread_mutex_unlock(&srv->pins_mu);
    if (!ok)
        return NULL;
    p = calloc(1, sizeof(*p));
    if (!p || pipe(p->wake) != 0) {
        free(p);
        goto fail;
    }
    fcntl(p->wake[0], F_SETFL, O_NONBLOCK);
    fcntl(p->wake[1], F_SETFL, O_NONBLOCK);
    fcntl(p->wake[0], F_SETFD, FD_CLOEXEC);
    fcntl(p->wake[1], F_SETFD, FD_CLOEXEC);
    p->srv = srv;
    p->client = cl;
    atomic_init(&p->refs, 2);
    pthread_mutex_init(&p->mu, NULL);
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, PIN_STACK);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    ok = pthread_create(&th, &attr, pin_main, p) == 0;
    pthread_attr_destroy(&attr);
    if (ok) {
        TCD_COUNT(srv, pinned_total, 1);
        TCD_COUNT(srv, pinned, 1);
        return p;
    }
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
    free(p);
fail:
    pthread_mutex_lock(&srv->pins_mu);
    srv->pins_live--;
    pthread_cond_broadcast(&srv->pins_cv);
    pthread_mutex_unlock(&srv->pins_mu);
    return NULL;
}

void tcd_pin_submit(tcd_pin *p, tcd_job *job)
{
    pthread_mutex_lock(&p->mu);
    p->job = job;
    pthread_mutex_unlock(&p->mu);
    wake(p);
}

void tcd_pin_release(tcd_pin *p)
{
    p->client = NULL;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    if (p->interruptible && p->sess)
        tc_session_interrupt(p->sess); /* a BLPOP nobody waits for */
    pthread_mutex_unlock(&p->mu);
    wake(p);
    unref(p);
}

void tcd_pin_hangup(tcd_pin *p)
{
    pthread_mutex_lock(&p->mu);
    p->hungup = 1;
    if (p->interruptible && p->sess)
        tc_session_interrupt(p->sess);
    pthread_mutex_unlock(&p->mu);
}

/* A message Redis pushed came before the reply of every command of the
 * client not yet answered: insert it before the first unfinished slot. */
static void insert_slot(tcd_client *cl, tcd_job *j)
{
    tcd_job **at = &cl->head;
    while (*at && (*at)->done)
        at = &(*at)->next;
    j->next = *at;
    *at = j;
    if (!j->next)
        cl->tail = j;
    cl->queued++;
    tcd_client_charge(cl, j);
}

tcd_client *tcd_pin_deliver(tcd_server *srv, tcd_job *j)
{
    tcd_pin *p = j->pin;
    tcd_client *cl = p->client;
    size_t bytes = tcd_buf_pending(&j->out);
    size_t before = atomic_fetch_sub(&p->push_bytes, bytes);
    j->pin = NULL;
    if (cl && !cl->dead) {
        j->client = cl;
        j->done = 1;
        insert_slot(cl, j);
        if (tcd_client_reply_bytes(cl) > srv->cfg->max_output)
            atomic_store(&p->paused, 1);
    } else {
        tcd_buf_free(&j->out);
        free(j);
        cl = NULL;
    }
    if (before >= srv->cfg->max_output && before - bytes < srv->cfg->max_output)
        wake(p);
    unref(p);
    return cl;
}

void tcd_pin_drained(tcd_client *cl)
{
    if (cl->pin && atomic_exchange(&cl->pin->paused, 0))
        wake(cl->pin);
}

void tcd_pin_wait_all(tcd_server *srv)
{
    pthread_mutex_lock(&srv->pins_mu);
    while (srv->pins_live > 0)
        pthread_cond_wait(&srv->pins_cv, &srv->pins_mu);
    pthread_mutex_unlock(&srv->pins_mu);
}

void tcd_pin_noted(tcd_client *cl, tcd_job *job)
{
    int note = job->pin_note;
    job->pin_note = 0;
    if (cl->dead)
        return;
    if ((note & TCD_PIN_NOTE_UNPIN) && cl->pin) {
        tcd_pin_release(cl->pin); /* its thread ends; a new pin may come */
        cl->pin = NULL;
        cl->was_pinned = 0;
    }
    if (note & (TCD_PIN_NOTE_UNPIN | TCD_PIN_NOTE_STREAM_END))
        cl->pin_streaming = 0;
    if (note & TCD_PIN_NOTE_MULTI)
        cl->multi = 1;
    if (note & (TCD_PIN_NOTE_UNPIN | TCD_PIN_NOTE_HELD))
        cl->pin_hold = 0; /* the client's next write resumes its input */
}

int tcd_pin_runs(const tcd_job *job)
{
    if (job->batch)
        return 1;
    return strcmp(job->cmd->name, "info") != 0 &&
           strcmp(job->cmd->name, "tc.invalidate") != 0;
}
