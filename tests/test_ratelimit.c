/* Rate limiting: the limit holds in total across instances sharing one
 * Redis, resets with its window, and while Redis is down a per-process
 * limiter decides (and says so) until Redis answers again. */
#include <pthread.h>

#include "common.h"
#include "ratelocal.h"

REDIS_SUITE(ratelimit);

/* Options for the tests that assert Redis decided: a reply slower than the
 * usual 300 ms on a loaded machine must not turn into a local decision. */
static tc_options rl_opts(void)
{
    tc_options o = test_opts(&srv);
    o.command_timeout_ms = 10000;
    return o;
}

#define NINST 3

typedef struct hammer {
    tc_cache *c;
    const char *key;
    uint64_t limit, window_ms;
    tc_rate_algo algo;
    int tries;
    int allowed, fallbacks, errors;
} hammer;

static void *hammer_run(void *p)
{
    hammer *h = p;
    for (int i = 0; i < h->tries; i++) {
        tc_rate_result rr;
        tc_result r = tc_rate_limit_ex(h->c, h->key, strlen(h->key), h->limit,
                                       h->window_ms, h->algo, &rr);
        if (r != TC_OK) {
            h->errors++;
            continue;
        }
        h->allowed += rr.allowed;
        h->fallbacks += rr.fallback;
    }
    return NULL;
}

/* `tries` requests from each of NINST instances at once, one thread each;
 * returns how many were allowed in total. */
static int across_instances(tc_cache **cs, const char *key, uint64_t limit,
                            uint64_t window_ms, tc_rate_algo algo, int tries,
                            int *fallbacks)
{
    hammer h[NINST];
    pthread_t t[NINST];
    int total = 0;
    *fallbacks = 0;
    for (int i = 0; i < NINST; i++) {
        h[i] = (hammer){cs[i], key, limit, window_ms, algo, tries, 0, 0, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, hammer_run, &h[i]), 0);
    }
    for (int i = 0; i < NINST; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(h[i].errors, 0, "instance %d: %d errors", i,
                     h[i].errors);
        total += h[i].allowed;
        *fallbacks += h[i].fallbacks;
    }
    return total;
}

static void make_instances(tc_cache **cs)
{
    tc_options o = rl_opts();
    o.key_prefix = "app:";
    for (int i = 0; i < NINST; i++)
        cs[i] = must_create(&o);
}

static void destroy_instances(tc_cache **cs)
{
    for (int i = 0; i < NINST; i++)
        tc_cache_destroy(cs[i]);
}

/* Seed 004's limits: chat 20/min, auth 5 per 15 min. The windows are far
 * longer than the test, so every request falls in one window. */
Test(ratelimit, chat_20_per_minute_holds_in_total_across_3_instances)
{
    tc_cache *cs[NINST];
    int fb;
    make_instances(cs);
    cr_assert_eq(across_instances(cs, "chat:user1", 20, 60000,
                                  TC_RATE_SLIDING, 20, &fb),
                 20, "sliding: the limit did not hold in total");
    cr_assert_eq(fb, 0, "Redis was up: no request may be decided locally");
    cr_assert_eq(across_instances(cs, "chat:user2", 20, 60000, TC_RATE_FIXED,
                                  20, &fb),
                 20, "fixed: the limit did not hold in total");
    cr_assert_eq(fb, 0);
    destroy_instances(cs);
}

Test(ratelimit, auth_5_per_15_minutes_holds_in_total_across_3_instances)
{
    tc_cache *cs[NINST];
    tc_rate_result rr;
    int fb;
    make_instances(cs);
    cr_assert_eq(across_instances(cs, "auth:1.2.3.4", 5, 900000,
                                  TC_RATE_SLIDING, 10, &fb),
                 5);
    cr_assert_eq(fb, 0);
    /* Denied from every instance, with the time until a slot frees. */
    for (int i = 0; i < NINST; i++) {
        cr_assert_eq(tc_rate_limit(cs[i], "auth:1.2.3.4", 12, 5, 900000, &rr),
                     TC_OK);
        cr_assert_eq(rr.allowed, 0);
        cr_assert_eq(rr.remaining, 0);
        cr_assert(rr.reset_ms > 0 && rr.reset_ms <= 900000, "reset %llu",
                  (unsigned long long)rr.reset_ms);
    }
    /* The limit lives under the key prefix, in a namespace of its own. */
    {
        char *n = tcr_cmd(&srv, NULL, "ZCARD", "app:__tiercache:rl:auth:1.2.3.4",
                          NULL);
        cr_assert_str_eq(n, "5");
        free(n);
    }
    cr_assert_eq(across_instances(cs, "auth:5.6.7.8", 5, 900000, TC_RATE_FIXED,
                                  10, &fb),
                 5);
    destroy_instances(cs);
}

Test(ratelimit, remaining_counts_down)
{
    tc_options o = rl_opts();
    tc_cache *c = must_create(&o);
    tc_rate_result rr;
    for (uint64_t i = 1; i <= 4; i++) {
        cr_assert_eq(tc_rate_limit(c, "k", 1, 4, 60000, &rr), TC_OK);
        cr_assert_eq(rr.allowed, 1);
        cr_assert_eq(rr.remaining, 4 - i);
        cr_assert(rr.reset_ms > 0 && rr.reset_ms <= 60000);
    }
    cr_assert_eq(tc_rate_limit(c, "k", 1, 4, 60000, &rr), TC_OK);
    cr_assert_eq(rr.allowed, 0);
    tc_cache_destroy(c);
}

typedef struct again_arg {
    tc_cache *c;
    tc_rate_algo algo;
    int fallback; /* what the deciding side must be */
} again_arg;

#define SHORT_MS 2000

static int allowed_again(void *p)
{
    again_arg *a = p;
    tc_rate_result rr;
    return tc_rate_limit_ex(a->c, "burst", 5, 3, SHORT_MS, a->algo, &rr) ==
               TC_OK &&
           rr.allowed && rr.fallback == a->fallback;
}

/* Use up a short window, then await its reset. */
static void window_resets(tc_cache *c, tc_rate_algo algo, int fallback)
{
    tc_rate_result rr;
    again_arg a = {c, algo, fallback};
    double t0 = tcr_now_ms();
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(tc_rate_limit_ex(c, "burst", 5, 3, SHORT_MS, algo, &rr),
                     TC_OK);
        cr_assert_eq(rr.fallback, fallback);
        cr_assert_eq(rr.allowed, 1, "request %d of 3 denied", i);
    }
    cr_assert_eq(tc_rate_limit_ex(c, "burst", 5, 3, SHORT_MS, algo, &rr),
                 TC_OK);
    /* Allowed only if the window really passed (a stalled machine). */
    cr_assert(!rr.allowed || tcr_now_ms() - t0 >= SHORT_MS,
              "a 4th request allowed within the window");
    AWAIT(allowed_again, &a, "the window never reset");
}

Test(ratelimit, short_window_resets)
{
    tc_options o = rl_opts();
    tc_cache *c = must_create(&o);
    window_resets(c, TC_RATE_SLIDING, 0);
    tc_cache_destroy(c);
    c = must_create(&o);
    window_resets(c, TC_RATE_FIXED, 0);
    tc_cache_destroy(c);
}

typedef struct decided_arg {
    tc_cache *c;
    const char *key;
} decided_arg;

static int redis_decides(void *p)
{
    decided_arg *a = p;
    tc_rate_result rr;
    return tc_rate_limit(a->c, a->key, strlen(a->key), 20, 60000, &rr) ==
               TC_OK &&
           rr.fallback == 0;
}

Test(ratelimit, redis_down_local_limit_holds_then_redis_decides_again)
{
    tc_cache *cs[NINST];
    tc_stats st;
    tc_rate_result rr;
    decided_arg d;
    int fb;
    make_instances(cs);
    cr_assert_eq(across_instances(cs, "chat:u", 20, 60000, TC_RATE_SLIDING, 5,
                                  &fb),
                 15);
    cr_assert_eq(fb, 0);

    tcr_kill(&srv);
    /* Each process now holds the limit on its own, and says so. */
    for (int i = 0; i < NINST; i++) {
        int allowed = 0;
        for (int j = 0; j < 30; j++) {
            cr_assert_eq(tc_rate_limit(cs[i], "chat:u", 6, 20, 60000, &rr),
                         TC_OK, "no answer while Redis is down");
            cr_assert_eq(rr.fallback, 1, "not reported as a fallback");
            allowed += rr.allowed;
        }
        cr_assert_eq(allowed, 20, "instance %d: local limit allowed %d", i,
                     allowed);
        tc_cache_stats(cs[i], &st);
        cr_assert_eq(st.rate_fallbacks, 30);
    }
    cr_assert_eq(across_instances(cs, "auth:x", 5, 900000, TC_RATE_FIXED, 8,
                                  &fb),
                 5 * NINST);
    cr_assert_eq(fb, 8 * NINST);

    cr_assert_eq(tcr_restart(&srv), 0);
    d = (decided_arg){cs[0], "probe"};
    AWAIT(redis_decides, &d, "Redis never decided again after the restart");
    for (int i = 1; i < NINST; i++) {
        d.c = cs[i];
        AWAIT(redis_decides, &d, "instance %d stayed on its fallback", i);
    }
    /* A fresh Redis counts afresh, in total again. */
    cr_assert_eq(across_instances(cs, "chat:u", 20, 60000, TC_RATE_SLIDING,
                                  20, &fb),
                 20);
    cr_assert_eq(fb, 0);
    destroy_instances(cs);
}

Test(ratelimit, disabled_cache_limits_locally)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    tc_rate_result rr;
    int allowed = 0;
    o.enabled = TC_NO;
    c = must_create(&o);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(tc_rate_limit(c, "k", 1, 5, 900000, &rr), TC_OK);
        cr_assert_eq(rr.fallback, 1);
        allowed += rr.allowed;
    }
    cr_assert_eq(allowed, 5);
    tc_cache_destroy(c);
}

/* A stream of new keys cannot grow the local table: it evicts, and a limit
 * in use afterwards still holds. */
Test(ratelimit, hostile_key_stream_stays_bounded)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    tc_rate_result rr;
    tc_stats st;
    char key[32];
    int allowed = 0;
    o.enabled = TC_NO;
    c = must_create(&o);
    for (int i = 0; i < 50000; i++) {
        int n = snprintf(key, sizeof(key), "ip:%d", i);
        cr_assert_eq(tc_rate_limit(c, key, (size_t)n, 5, 60000, &rr), TC_OK);
        cr_assert_eq(rr.allowed, 1);
    }
    tc_cache_stats(c, &st);
    cr_assert_geq(st.rate_local_evictions, 50000 - 4096,
                  "only %llu evictions: the table grew",
                  (unsigned long long)st.rate_local_evictions);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(tc_rate_limit(c, "victim", 6, 5, 60000, &rr), TC_OK);
        allowed += rr.allowed;
    }
    cr_assert_eq(allowed, 5);
    tc_cache_destroy(c);
}

Test(ratelimit, bad_arguments)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_rate_result rr;
    cr_assert_eq(tc_rate_limit(c, "k", 1, 0, 1000, &rr), TC_BAD_ARGUMENT);
    cr_assert_eq(tc_rate_limit(c, "k", 1, TC_RATE_LIMIT_MAX + 1ULL, 1000, &rr),
                 TC_BAD_ARGUMENT);
    cr_assert_eq(tc_rate_limit(c, "k", 1, 5, 0, &rr), TC_BAD_ARGUMENT);
    cr_assert_eq(tc_rate_limit(c, "k", 1, 5, 1000, NULL), TC_BAD_ARGUMENT);
    cr_assert_eq(tc_rate_limit(c, "", 0, 5, 1000, &rr), TC_BAD_ARGUMENT);
    cr_assert_eq(tc_rate_limit_ex(c, "k", 1, 5, 1000, (tc_rate_algo)7, &rr),
                 TC_BAD_ARGUMENT);
    cr_assert_eq(tc_rate_limit(NULL, "k", 1, 5, 1000, &rr), TC_BAD_ARGUMENT);
    tc_cache_destroy(c);
}

/* The local sliding counter on a clock the test sets. */
Test(ratelimit, local_sliding_counter_weights_the_previous_window)
{
    tc__ratelocal *t = tc__ratelocal_create();
    tc_rate_result rr;
    int allowed = 0;
    cr_assert_not_null(t);
    for (int i = 0; i < 12; i++) {
        tc__ratelocal_decide(t, 42, 10, 1000, TC_RATE_SLIDING, 5000, &rr);
        allowed += rr.allowed;
    }
    cr_assert_eq(allowed, 10);
    tc__ratelocal_decide(t, 42, 10, 1000, TC_RATE_SLIDING, 5999, &rr);
    cr_assert_eq(rr.allowed, 0);
    /* Next window starts: the previous one still fully overlaps. */
    tc__ratelocal_decide(t, 42, 10, 1000, TC_RATE_SLIDING, 6000, &rr);
    cr_assert_eq(rr.allowed, 0);
    /* Half-way: half of the previous 10 still count. */
    allowed = 0;
    for (int i = 0; i < 8; i++) {
        tc__ratelocal_decide(t, 42, 10, 1000, TC_RATE_SLIDING, 6500, &rr);
        allowed += rr.allowed;
    }
    cr_assert_eq(allowed, 5);
    /* Two windows later nothing counts. */
    tc__ratelocal_decide(t, 42, 10, 1000, TC_RATE_SLIDING, 8000, &rr);
    cr_assert_eq(rr.allowed, 1);
    cr_assert_eq(rr.remaining, 9);
    /* Fixed: the full limit again at once when the window ends. */
    for (int i = 0; i < 10; i++)
        tc__ratelocal_decide(t, 7, 10, 1000, TC_RATE_FIXED, 100, &rr);
    tc__ratelocal_decide(t, 7, 10, 1000, TC_RATE_FIXED, 1099, &rr);
    cr_assert_eq(rr.allowed, 0);
    cr_assert_eq(rr.reset_ms, 1);
    tc__ratelocal_decide(t, 7, 10, 1000, TC_RATE_FIXED, 1100, &rr);
    cr_assert_eq(rr.allowed, 1);
    tc__ratelocal_destroy(t);
}

/* A hung Redis (SIGSTOP): the call waits out its command timeout, then the
 * local limiter decides; once Redis runs again it decides again. */
Test(ratelimit, hung_redis_times_out_into_the_local_limiter)
{
    tc_options o = test_opts(&srv); /* 300 ms command timeout */
    tc_cache *c = must_create(&o);
    tc_rate_result rr;
    decided_arg d = {c, "probe"};
    cr_assert_eq(tc_rate_limit(c, "k", 1, 5, 60000, &rr), TC_OK);
    tcr_pause(&srv);
    AWAIT(tcr_stopped, &srv, "redis-server never stopped");
    cr_assert_eq(tc_rate_limit(c, "k", 1, 5, 60000, &rr), TC_OK);
    cr_assert_eq(rr.fallback, 1, "a timed-out check must be decided locally");
    cr_assert_eq(rr.allowed, 1);
    tcr_resume(&srv);
    AWAIT(redis_decides, &d, "Redis never decided again after SIGCONT");
    tc_cache_destroy(c);
}
