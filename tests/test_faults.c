/* A dead, hung or locked Redis: the cache fails fast with a distinct code,
 * never loses a write silently, and recovers without a new handle. */
#include "common.h"

REDIS_SUITE(faults);

static int set_works(void *p)
{
    return set_str(p, "probe", "1", 0) == TC_OK;
}

static tc_result load_fallback(void *ud, const void *key, size_t klen,
                               void **val, size_t *vlen)
{
    (void)key, (void)klen;
    ++*(int *)ud;
    *val = strdup("from-db");
    *vlen = 7;
    return TC_OK;
}

Test(faults, redis_not_running_at_create_then_recovers)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    tc_value *v = NULL;
    tc_result r;
    tc_health h;
    int loads = 0;
    tcr_kill(&srv);

    c = must_create(&o); /* an outage is not an error at create */
    r = tc_get(c, "k", 1, &v);
    cr_assert(is_outage(r), "get during outage: %s", tc_strerror(r));
    cr_assert_null(v);
    r = set_str(c, "k", "v", 0);
    cr_assert(is_outage(r), "a write during an outage must not report done");
    cr_assert(l1_holds(c, "k", NULL));
    /* Read-through still answers from the loader. */
    cr_assert_eq(tc_get_or_load(c, "k", 1, load_fallback, &loads, 0, &v),
                 TC_OK);
    cr_assert_eq(loads, 1);
    cr_assert_eq(memcmp(tc_value_data(v), "from-db", 7), 0);
    tc_value_release(v);
    cr_assert_neq(tc_cache_health(c, &h), TC_OK);
    cr_assert_eq(h.l2_up, 0);
    cr_assert_eq(h.breaker_open, 1);

    cr_assert_eq(tcr_restart(&srv), 0);
    AWAIT(set_works, c, "no recovery after restart");
    cr_assert_eq(tc_cache_health(c, &h), TC_OK);
    cr_assert_eq(h.l2_up, 1);
    tc_cache_destroy(c);
}

Test(faults, killed_mid_run_fails_fast_then_recovers)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_stats st;
    tc_result r;
    char *s;
    cr_assert_eq(set_str(c, "a", "1", 0), TC_OK);

    tcr_kill(&srv);
    /* Until the breaker opens, calls see the dead connection; after, they
     * fail without touching the network. Never TC_OK for a write. */
    for (int i = 0; i < 20; i++) {
        r = set_str(c, "b", "2", 0);
        cr_assert(is_outage(r), "write during outage returned %s",
                  tc_strerror(r));
        s = get_str(c, "zz", &r);
        cr_assert(is_outage(r), "read of an L2 key: %s", tc_strerror(r));
    }
    tc_cache_stats(c, &st);
    cr_assert_geq(st.breaker_opens, 1);
    cr_assert_geq(st.l2_errors, 3);

    cr_assert_eq(tcr_restart(&srv), 0);
    AWAIT(set_works, c, "no recovery after restart");
    /* The restarted server is empty: "a" is gone from L2, and the cache
     * must not serve it from an L1 that outlived the outage. */
    s = get_str(c, "a", &r);
    cr_assert_eq(r, TC_NOT_FOUND, "stale value after restart: %s", s);
    cr_assert_eq(set_str(c, "b", "2", 0), TC_OK);
    s = get_str(c, "b", &r);
    cr_assert_str_eq(s, "2");
    free(s);
    tc_cache_stats(c, &st);
    cr_assert_geq(st.l2_reconnects, 1);
    tc_cache_destroy(c);
}

/* A restart between two calls (no call saw the outage) must not cost the
 * next callers an error: idle connections the server closed are noticed
 * before they are used. */
Test(faults, first_calls_after_a_quick_restart_succeed)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_result r;
    char *s;
    cr_assert_eq(set_str(c, "a", "1", 0), TC_OK);
    cr_assert_eq(tcr_restart(&srv), 0);
    cr_assert_eq(set_str(c, "b", "2", 0), TC_OK, "write after restart: %s",
                 tc_errmsg());
    s = get_str(c, "b", &r);
    cr_assert_eq(r, TC_OK, "read after restart: %s", tc_strerror(r));
    cr_assert_str_eq(s, "2");
    free(s);
    tc_cache_destroy(c);
}

Test(faults, hung_redis_times_out_opens_breaker_and_recovers)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    tc_stats st;
    tc_result r;
    int timeouts = 0, unavailable = 0;
    o.command_timeout_ms = 200;
    c = must_create(&o);
    cr_assert_eq(set_str(c, "k", "v", 0), TC_OK);

    tcr_pause(&srv);
    /* kill() returns before the stop takes effect: a server still running
     * would answer the first call. */
    AWAIT(tcr_stopped, &srv, "redis-server never stopped");
    for (int i = 0; i < 10; i++) {
        char key[8];
        tc_value *v;
        snprintf(key, sizeof(key), "m%d", i);
        r = tc_get(c, key, strlen(key), &v);
        cr_assert(is_outage(r), "get on hung Redis: %s", tc_strerror(r));
        timeouts += r == TC_TIMEOUT;
        unavailable += r == TC_L2_UNAVAILABLE;
    }
    cr_assert_geq(timeouts, 1, "no call timed out");
    cr_assert_geq(unavailable, 1, "breaker never opened");
    tc_cache_stats(c, &st);
    cr_assert_geq(st.l2_timeouts, 1);
    cr_assert_geq(st.breaker_opens, 1);
    r = set_str(c, "k", "new", 0);
    cr_assert(is_outage(r));

    tcr_resume(&srv);
    AWAIT(set_works, c, "no recovery after SIGCONT");
    cr_assert_eq(set_str(c, "k", "new", 0), TC_OK);
    {
        char *s = get_str(c, "k", &r);
        cr_assert_str_eq(s, "new");
        free(s);
    }
    tc_cache_destroy(c);
}

/* Without a bus, an L1 hit keeps answering while Redis is down. */
Test(faults, l1_hits_survive_outage_without_bus)
{
    tc_options o = test_opts(&srv);
    tc_cache *c;
    o.coherence = TC_COHERENCE_NONE;
    c = must_create(&o);
    cr_assert_eq(set_str(c, "k", "v", 0), TC_OK);
    tcr_kill(&srv);
    cr_assert(l1_holds(c, "k", "v"));
    {
        tc_result r;
        char *s = get_str(c, "k", &r);
        cr_assert_eq(r, TC_OK);
        cr_assert_str_eq(s, "v");
        free(s);
    }
    tc_cache_destroy(c);
}

/* With a bus, L1 is not served once the bus cannot prove it is alive:
 * invalidations could be getting lost. */
static int l1_not_servable(void *p)
{
    return !l1_serves(p, "k", "v");
}

Test(faults, l1_not_served_when_bus_is_down)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_value *v;
    cr_assert_eq(set_str(c, "k", "v", 0), TC_OK);
    cr_assert(l1_holds(c, "k", "v"));
    tcr_kill(&srv);
    AWAIT(l1_not_servable, c, "L1 still served with the bus down");
    cr_assert(is_outage(tc_get(c, "k", 1, &v)));
    tc_cache_destroy(c);
}

static tcr_server asrv;

static void auth_setup(void)
{
    cr_assert_eq(tcr_start(&asrv, "requirepass s3cret-pw\n"
                                  "user alice on >alice-pw ~* &* +@all\n"),
                 0);
}

static void auth_teardown(void)
{
    tcr_stop(&asrv);
}

Test(faults, auth_password, .init = auth_setup, .fini = auth_teardown)
{
    tc_options o = test_opts(&asrv);
    tc_cache *c;
    char *s;
    o.password = "s3cret-pw";
    c = must_create(&o);
    cr_assert_eq(set_str(c, "k", "v", 0), TC_OK, "%s", tc_errmsg());
    s = get_str(c, "k", NULL);
    cr_assert_str_eq(s, "v");
    free(s);
    tc_cache_destroy(c);
}

Test(faults, auth_password_in_url, .init = auth_setup, .fini = auth_teardown)
{
    tc_options o = test_opts(&asrv);
    tc_cache *c;
    char url[512];
    snprintf(url, sizeof(url), "redis://:s3cret-pw@127.0.0.1:%d/2", asrv.port);
    o.url = url;
    c = must_create(&o);
    cr_assert_eq(set_str(c, "k", "v", 0), TC_OK, "%s", tc_errmsg());
    tc_cache_destroy(c);
    {
        char *n = tcr_cmd(&asrv, "s3cret-pw", "EVAL",
                          "redis.call('SELECT', 2) return redis.call('GET','k')",
                          "0", NULL);
        cr_assert_str_eq(n, "v", "value not in db 2");
        free(n);
    }
}

Test(faults, auth_acl_user, .init = auth_setup, .fini = auth_teardown)
{
    tc_options o = test_opts(&asrv);
    tc_cache *c;
    o.username = "alice";
    o.password = "alice-pw";
    c = must_create(&o);
    cr_assert_eq(set_str(c, "k", "v", 0), TC_OK, "%s", tc_errmsg());
    tc_cache_destroy(c);
}

Test(faults, wrong_password_is_a_clear_error, .init = auth_setup,
     .fini = auth_teardown)
{
    tc_options o = test_opts(&asrv);
    tc_cache *c = NULL;
    tc_result r;
    o.password = "wrong-hunter2";
    r = tc_cache_create(&o, &c);
    cr_assert_eq(r, TC_AUTH, "got %s", tc_strerror(r));
    cr_assert_null(c);
    cr_assert(strstr(tc_errmsg(), "AUTH") != NULL, "%s", tc_errmsg());
    cr_assert(strstr(tc_errmsg(), "hunter2") == NULL, "password leaked: %s",
              tc_errmsg());

    o.username = "alice";
    o.password = "not-alice-pw";
    cr_assert_eq(tc_cache_create(&o, &c), TC_AUTH);
    cr_assert(strstr(tc_errmsg(), "alice") != NULL, "%s", tc_errmsg());
    cr_assert(strstr(tc_errmsg(), "not-alice-pw") == NULL);

    o.username = NULL;
    o.password = NULL;
    cr_assert_eq(tc_cache_create(&o, &c), TC_AUTH);
    cr_assert(strstr(tc_errmsg(), "password") != NULL, "%s", tc_errmsg());
}
