/* Helpers shared by the Criterion test files. */
#ifndef TC_TEST_COMMON_H
#define TC_TEST_COMMON_H

#include "crit.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_fixture.h"
#include "cache.h"
#include "tiercache.h"

/* A suite whose every test gets its own redis-server `srv`, started before
 * the test and stopped by its pid after it, also when the test fails. */
#define REDIS_SUITE(name)                                                    \
    static tcr_server srv;                                                   \
    static void setup(void)                                                  \
    {                                                                        \
        cr_assert_eq(tcr_start(&srv, NULL), 0, "redis-server did not start"); \
    }                                                                        \
    static void teardown(void)                                               \
    {                                                                        \
        tcr_stop(&srv);                                                      \
    }                                                                        \
    TestSuite(name, .init = setup, .fini = teardown)

/* How long a test waits for a condition before it fails: far longer than
 * any correct run needs, even under a sanitizer on a loaded 2-core machine,
 * so that only a behaviour that never happens runs into it. */
#define AWAIT_MS 30000

/* Poll pred(arg) until it holds; fail the test with the message (printf
 * format and arguments) if it has not held after AWAIT_MS. */
#define AWAIT(pred, arg, ...)                                                \
    cr_assert(tcr_wait((pred), (arg), AWAIT_MS), __VA_ARGS__)

/* Options for a test cache on server `s`, independent of the environment. */
/* Options for a test instance on `url`; test_opts() for one server. */
static inline tc_options url_opts(const char *url)
{
    tc_options o;
    memset(&o, 0, sizeof(o));
    o.url = url;
    o.ignore_env = TC_YES;
    /* Generous: a loaded 2-core CI machine (sanitizers, parallel suites)
     * can hold a healthy redis-server off the CPU for hundreds of ms. A
     * test about timeouts sets its own. */
    o.connect_timeout_ms = 2000;
    o.command_timeout_ms = 2000;
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 200;
    return o;
}

static inline tc_options test_opts(const tcr_server *s)
{
    return url_opts(s->url);
}

/* What a call answers while Redis is unreachable or hung. */
static inline int is_outage(tc_result r)
{
    return r == TC_L2_UNAVAILABLE || r == TC_TIMEOUT;
}

static inline tc_cache *must_create(const tc_options *o)
{
    tc_cache *c = NULL;
    tc_result r = tc_cache_create(o, &c);
    cr_assert_eq(r, TC_OK, "tc_cache_create: %s (%s)", tc_strerror(r),
                 tc_errmsg());
    return c;
}

/* Value of `key` through tc_get as a malloc'd string, or NULL with *res. */
static inline char *get_str(tc_cache *c, const char *key, tc_result *res)
{
    tc_value *v = NULL;
    char *s = NULL;
    tc_result r = tc_get(c, key, strlen(key), &v);
    if (res)
        *res = r;
    if (r == TC_OK) {
        s = malloc(tc_value_len(v) + 1);
        memcpy(s, tc_value_data(v), tc_value_len(v));
        s[tc_value_len(v)] = '\0';
        tc_value_release(v);
    }
    return s;
}

/* Copies value `v` (taken: released here; may be NULL, then `buf` is left
 * as it is) into `buf` of `cap` bytes as a string, cut to fit. */
static inline void value_into(char *buf, size_t cap, tc_value *v)
{
    if (v) {
        snprintf(buf, cap, "%.*s", (int)tc_value_len(v),
                 (const char *)tc_value_data(v));
        tc_value_release(v);
    }
}

static inline tc_result set_str(tc_cache *c, const char *key, const char *val,
                                uint64_t ttl)
{
    return tc_set(c, key, strlen(key), val, strlen(val), ttl);
}

static inline int value_is(tc_value *v, const char *want)
{
    int ok;
    if (!v)
        return want == NULL;
    ok = want && tc_value_len(v) == strlen(want) &&
         memcmp(tc_value_data(v), want, strlen(want)) == 0;
    tc_value_release(v);
    return ok;
}

/* Does L1 hold `key` with value `want` (NULL: hold nothing)? Its contents,
 * whether or not the bus lets it serve them right now. */
static inline int l1_holds(tc_cache *c, const char *key, const char *want)
{
    return value_is(tc__cache_l1_contents(c, key, strlen(key)), want);
}

/* Argument of l1_drops(): does cache `c` still hold `key` = `val`? */
typedef struct holds_arg {
    tc_cache *c;
    const char *key, *val;
} holds_arg;

/* A predicate for tcr_wait(): L1 no longer holds key = val. */
static inline int l1_drops(void *p)
{
    holds_arg *a = p;
    return !l1_holds(a->c, a->key, a->val);
}

/* The tail of every fill-race test: a read of `key` that began before a
 * write of `fresh` may answer the old value, but that value must not have
 * entered L1 after the write's invalidation (fills_skipped grew past
 * `st0`), and once the fill hook is gone the next read sees `fresh`. */
static inline void expect_stale_fill_skipped(tc_cache *b, const char *key,
                                             const char *old,
                                             const char *fresh,
                                             const tc_stats *st0)
{
    tc_stats st;
    char *s;
    cr_assert(!l1_holds(b, key, old), "stale fill entered L1");
    tc_cache_stats(b, &st);
    cr_assert_geq(st.fills_skipped, st0->fills_skipped + 1);
    tc__cache_set_fill_hook(b, NULL, NULL);
    s = get_str(b, key, NULL);
    cr_assert_str_eq(s, fresh);
    free(s);
}

/* Would a read be answered from L1 with `want` (NULL: not from L1)? */
static inline int l1_serves(tc_cache *c, const char *key, const char *want)
{
    tc_value *v = NULL;
    tc_peek(c, key, strlen(key), &v);
    return value_is(v, want);
}

static inline int read_then_served(void *p)
{
    holds_arg *a = p;
    tc_result r;
    char *s = get_str(a->c, a->key, &r);
    int ok = r == TC_OK && strcmp(s, a->val) == 0;
    free(s);
    return ok && l1_serves(a->c, a->key, a->val);
}

/* Fill c's L1 with key through a read, until L1 serves it. Two correct
 * behaviours can undo a single read's fill: an invalidation published
 * before the read but delivered after it, and a bus thread starved past
 * its lease (ThreadSanitizer, a loaded machine), which makes L1 step aside
 * for a moment. So read again rather than fail. */
static inline void warm(tc_cache *c, const char *key, const char *want)
{
    holds_arg a = {c, key, want};
    AWAIT(read_then_served, &a, "%s=%s never served from L1", key, want);
}

/* Argument of members_trusted(). */
typedef struct members_arg {
    const tcr_server *srv;
    const char *channel; /* NULL: the default channel */
    unsigned lease_ms;
} members_arg;

/* A predicate for tcr_wait(): strict writers on this channel get a list of
 * members from the count script (lease.c), not "unknown", which it answers
 * for a lease after the members set was (re)built, the channel's first
 * heartbeat included, and which makes every strict write wait its lease. */
static inline int members_trusted(void *p)
{
    const members_arg *a = p;
    char members[256], clock[256], epoch[256], lease[16];
    const char *ch = tc__channel_stem(a->channel ? a->channel
                                                 : "__tiercache:invalidate");
    char *s;
    int ok;
    snprintf(members, sizeof(members), "__tiercache:%s:members", ch);
    snprintf(clock, sizeof(clock), "__tiercache:%s:clock", ch);
    snprintf(epoch, sizeof(epoch), "__tiercache:%s:epoch", ch);
    snprintf(lease, sizeof(lease), "%u", a->lease_ms ? a->lease_ms : 100);
    s = tcr_cmd(a->srv, NULL, "EVAL", tc__bus_count_script(), "3", members,
                clock, epoch, lease, NULL);
    ok = s && strcmp(s, "0") != 0;
    free(s);
    return ok;
}

/* Argument of member_idle(). */
typedef struct idle_arg {
    const tcr_server *srv;
    const tc_cache *c;
} idle_arg;

/* A predicate for tcr_wait(): c's bus went idle (lease.c): its entry in
 * the default channel's members set is an idle one (negative score). */
static inline int member_idle(void *p)
{
    const idle_arg *a = p;
    char *s = tcr_cmd(a->srv, NULL, "ZSCORE", "__tiercache:invalidate:members",
                      tc_cache_instance_id(a->c), NULL);
    int idle = s && s[0] == '-';
    free(s);
    return idle;
}

/* Calls of `cmd` (lower case, e.g. "eval") since the last CONFIG
 * RESETSTAT, from INFO commandstats; 0 when none. */
static inline long long command_calls(const tcr_server *srv, const char *cmd)
{
    char *s = tcr_cmd(srv, NULL, "INFO", "commandstats", NULL), *p;
    char pat[64];
    long long n = 0;
    snprintf(pat, sizeof(pat), "cmdstat_%s:calls=", cmd);
    if (s && (p = strstr(s, pat)))
        n = atoll(p + strlen(pat));
    free(s);
    return n;
}

#endif
