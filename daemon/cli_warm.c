/* tiercache warm: store key/value lines in batches (one transaction and
 * one invalidation message per batch), reporting progress after each
 * batch; or, through a daemon, read a list of keys so that its L1 holds
 * them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define DEFAULT_BATCH 500
/* A TC.SETMANY within tiercached's default --max-args (65536). */
#define DAEMON_MAX_BATCH 32000
/* An MGET within tiercached's default --max-keys (16384). */
#define DAEMON_MAX_MGET 16384

/* The lines of a file: keys and, for key/value files, values (pointers
 * into `text`, NUL-terminated in place). */
typedef struct lines {
    char *text;
    const char **keys, **vals;
    size_t *klens, *vlens;
    size_t n;
} lines;

static void lines_free(lines *l)
{
    free(l->text);
    free(l->keys);
    free(l->vals);
    free(l->klens);
    free(l->vlens);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    if (!f) {
        cli_err("%s: %s", path, strerror(errno));
        return NULL;
    }
    do {
        if (cap - len < 65536) {
            char *p = realloc(buf, cap = cap * 2 + 65536 + 1);
            if (!p) {
                free(buf);
                fclose(f);
                cli_err("%s: out of memory", path);
                return NULL;
            }
            buf = p;
        }
        got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
    } while (got);
    if (ferror(f)) {
        cli_err("%s: read error", path);
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* Split `path` into lines (empty ones and those starting with '#' are
 * skipped); with `pairs`, each is "key<TAB>value" or "key value" (the
 * first tab, else the first space). 0, or -1 after printing why. */
static int read_lines(const char *path, int pairs, lines *l)
{
    size_t cap = 0, lineno = 0;
    char *p, *nl;
    memset(l, 0, sizeof(*l));
    if (!(l->text = slurp(path)))
        return -1;
    for (p = l->text; *p; p = nl) {
        char *sep, *end;
        lineno++;
        nl = strchr(p, '\n');
        end = nl ? nl : p + strlen(p);
        nl = nl ? nl + 1 : end;
        if (end > p && end[-1] == '\r')
            end--;
        *end = '\0';
        if (!*p || *p == '#')
            continue;
        if (l->n == cap) {
            cap = cap * 2 + 1024;
            if (!(l->keys = realloc(l->keys, cap * sizeof(*l->keys))) ||
                !(l->vals = realloc(l->vals, cap * sizeof(*l->vals))) ||
                !(l->klens = realloc(l->klens, cap * sizeof(*l->klens))) ||
                !(l->vlens = realloc(l->vlens, cap * sizeof(*l->vlens)))) {
                cli_err("%s: out of memory", path);
                return -1;
            }
        }
        l->keys[l->n] = p;
        l->vals[l->n] = "";
        if (pairs) {
            if (!(sep = strchr(p, '\t')) && !(sep = strchr(p, ' '))) {
                cli_err("%s:%zu: no value (\"key<TAB>value\")", path, lineno);
                return -1;
            }
            *sep = '\0';
            l->vals[l->n] = sep + 1;
        }
        l->klens[l->n] = strlen(l->keys[l->n]);
        l->vlens[l->n] = (size_t)(end - (char *)l->vals[l->n]);
        if (!pairs)
            l->vlens[l->n] = 0;
        l->n++;
    }
    return 0;
}

static void on_progress(void *ud, size_t done, size_t total)
{
    cli_progress(ud, "warm", done, total);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int set_via_redis(cli_target *t, const cli_args *a, const lines *l)
{
    tc_result r = tc_set_many(t->c, l->n, (const void *const *)l->keys,
                              l->klens, (const void *const *)l->vals,
                              l->vlens, a->ttl_ms, a->batch ? a->batch
                                                            : DEFAULT_BATCH,
                              on_progress, (void *)a);
    if (r != TC_OK) {
        cli_err("warm: %s (%s)", tc_strerror(r), tc_errmsg());
        return r == TC_L2_UNAVAILABLE || r == TC_TIMEOUT ? CLI_DOWN
                                                         : CLI_FAILED;
    }
    return CLI_OK;
}

/* TC.SETMANY ttl k v ... per batch. */
static int set_via_daemon(cli_target *t, const cli_args *a, const lines *l)
{
    size_t batch = a->batch ? a->batch : DEFAULT_BATCH, done = 0;
    if (batch > DAEMON_MAX_BATCH)
        batch = DAEMON_MAX_BATCH;
    const char **argv = malloc((2 + 2 * batch) * sizeof(*argv));
    size_t *lens = malloc((2 + 2 * batch) * sizeof(*lens));
    char ttl[24];
    int rc = CLI_OK;
    if (!argv || !lens) {
        free(argv);
        free(lens);
        cli_err("out of memory");
        return CLI_FAILED;
    }
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)a->ttl_ms);
    argv[0] = "TC.SETMANY";
    lens[0] = 10;
    argv[1] = ttl;
    lens[1] = strlen(ttl);
    while (done < l->n && rc == CLI_OK) {
        size_t n = l->n - done < batch ? l->n - done : batch;
        redisReply *rep;
        for (size_t i = 0; i < n; i++) {
            argv[2 + 2 * i] = l->keys[done + i];
            lens[2 + 2 * i] = l->klens[done + i];
            argv[3 + 2 * i] = l->vals[done + i];
            lens[3 + 2 * i] = l->vlens[done + i];
        }
        if (!(rep = cli_daemon_cmd(t, (int)(2 + 2 * n), argv, lens))) {
            rc = CLI_DOWN;
            break;
        }
        if (rep->type == REDIS_REPLY_ERROR) {
            cli_err("warm: after %zu of %zu keys: %s", done, l->n, rep->str);
            rc = CLI_FAILED;
        } else {
            done += n;
            cli_progress(a, "warm", done, l->n);
        }
        freeReplyObject(rep);
    }
    free(argv);
    free(lens);
    return rc;
}

/* MGET per batch through the daemon: its misses fill its L1. */
static int read_via_daemon(cli_target *t, const cli_args *a, const lines *l,
                           size_t *found)
{
    size_t batch = a->batch ? a->batch : DEFAULT_BATCH, done = 0;
    if (batch > DAEMON_MAX_MGET)
        batch = DAEMON_MAX_MGET;
    const char **argv = malloc((1 + batch) * sizeof(*argv));
    size_t *lens = malloc((1 + batch) * sizeof(*lens));
    int rc = CLI_OK;
    *found = 0;
    if (!argv || !lens) {
        free(argv);
        free(lens);
        cli_err("out of memory");
        return CLI_FAILED;
    }
    argv[0] = "MGET";
    lens[0] = 4;
    while (done < l->n && rc == CLI_OK) {
        size_t n = l->n - done < batch ? l->n - done : batch;
        redisReply *rep;
        for (size_t i = 0; i < n; i++) {
            argv[1 + i] = l->keys[done + i];
            lens[1 + i] = l->klens[done + i];
        }
        if (!(rep = cli_daemon_cmd(t, (int)(1 + n), argv, lens))) {
            rc = CLI_DOWN;
            break;
        }
        if (rep->type != REDIS_REPLY_ARRAY) {
            cli_err("warm: after %zu of %zu keys: %s", done, l->n,
                    rep->type == REDIS_REPLY_ERROR ? rep->str
                                                   : "unexpected reply");
            rc = CLI_FAILED;
        } else {
            for (size_t i = 0; i < rep->elements; i++)
                *found += rep->element[i]->type == REDIS_REPLY_STRING;
            done += n;
            cli_progress(a, "warm", done, l->n);
        }
        freeReplyObject(rep);
    }
    free(argv);
    free(lens);
    return rc;
}

int cli_warm(const cli_args *a)
{
    cli_target t;
    lines l;
    size_t found = 0;
    double t0;
    int rc;
    if (read_lines(a->file ? a->file : a->keys_file, a->file != NULL, &l)) {
        lines_free(&l);
        return CLI_FAILED;
    }
    if ((rc = cli_target_open(a, &t)) != CLI_OK) {
        lines_free(&l);
        return CLI_DOWN;
    }
    t0 = now_s();
    if (a->keys_file)
        rc = read_via_daemon(&t, a, &l, &found);
    else
        rc = t.rc ? set_via_daemon(&t, a, &l) : set_via_redis(&t, a, &l);
    if (rc == CLI_OK && a->keys_file)
        printf("warmed %zu key(s) into the daemon's L1 (%zu absent from "
               "Redis) in %.2f s\n", found, l.n - found, now_s() - t0);
    else if (rc == CLI_OK)
        printf("warmed %zu key(s) in %.2f s\n", l.n, now_s() - t0);
    cli_target_close(&t);
    lines_free(&l);
    return rc;
}
