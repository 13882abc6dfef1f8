/* Tags (issue 11, seed 002): tc_set_tagged and tc_invalidate_tags against
 * a real redis-server, across instances, in batches, and while Redis is
 * down. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

REDIS_SUITE(tags);

#define TAGS(...) (sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *)), \
                  (const char *[]){__VA_ARGS__}

static tc_options strict_opts(void)
{
    tc_options o = test_opts(&srv);
    o.coherence = TC_COHERENCE_STRICT;
    o.command_timeout_ms = 5000;
    o.lease_ms = 2000;
    return o;
}

static tc_result set_tagged(tc_cache *c, const char *key, const char *val,
                            size_t ntags, const char *const *tags)
{
    return tc_set_tagged(c, key, strlen(key), val, strlen(val), NULL, ntags,
                         tags);
}

/* Is `key` absent from L2 (asked of Redis directly)? */
static int l2_lacks(const char *key)
{
    char *s = tcr_cmd(&srv, NULL, "EXISTS", key, NULL);
    int gone = s && strcmp(s, "0") == 0;
    free(s);
    return gone;
}

static void strict_pair(tc_cache **a, tc_cache **b)
{
    tc_options o = strict_opts();
    members_arg ma = {&srv, NULL, o.lease_ms};
    *a = must_create(&o);
    *b = must_create(&o);
    AWAIT(members_trusted, &ma, "the members set was never trusted");
}

/* Seed 002's own sequence: USER_RUNS carries ['user', 'runs'], and
 * invalidating a tag deletes exactly the keys carrying it, in L2 and in
 * another instance's L1, before the call returns (strict mode). */
Test(tags, invalidating_a_tag_deletes_its_keys_everywhere)
{
    tc_cache *a, *b;
    uint64_t deleted = 99;
    strict_pair(&a, &b);
    cr_assert_eq(set_tagged(a, "profile:1", "p", TAGS("user")), TC_OK, "%s",
                 tc_errmsg());
    cr_assert_eq(set_tagged(a, "runs:1", "r", TAGS("user", "runs")), TC_OK,
                 "%s", tc_errmsg());
    cr_assert_eq(set_tagged(a, "shoes:1", "s", TAGS("user", "shoes")), TC_OK,
                 "%s", tc_errmsg());
    cr_assert_eq(set_tagged(a, "feed:1", "f", TAGS("social", "feed")), TC_OK,
                 "%s", tc_errmsg());
    warm(b, "profile:1", "p");
    warm(b, "runs:1", "r");
    warm(b, "shoes:1", "s");
    warm(b, "feed:1", "f");

    cr_assert_eq(tc_invalidate_tags(a, TAGS("runs"), &deleted), TC_OK, "%s",
                 tc_errmsg());
    cr_assert_eq(deleted, 1);
    cr_assert(l2_lacks("runs:1"));
    cr_assert(!l1_serves(b, "runs:1", "r"), "b served a key of the tag");
    cr_assert(l1_serves(b, "profile:1", "p"), "an untouched key was dropped");

    cr_assert_eq(tc_invalidate_tags(a, TAGS("user", "feed"), &deleted), TC_OK,
                 "%s", tc_errmsg());
    cr_assert_eq(deleted, 3, "runs:1 was already gone: %llu",
                 (unsigned long long)deleted);
    cr_assert(l2_lacks("profile:1") && l2_lacks("shoes:1") &&
              l2_lacks("feed:1"));
    cr_assert(!l1_serves(b, "profile:1", "p"));
    cr_assert(!l1_serves(b, "shoes:1", "s"));
    cr_assert(!l1_serves(b, "feed:1", "f"));

    /* A tag with nothing under it is not an error. */
    cr_assert_eq(tc_invalidate_tags(a, TAGS("leaderboard"), &deleted), TC_OK);
    cr_assert_eq(deleted, 0);
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

/* More keys than one batch: every one is deleted, the other instance
 * serves none of them, and the tag's sets are gone afterwards. */
Test(tags, a_tag_larger_than_a_batch_is_emptied)
{
    enum { N = 2500 };
    tc_cache *a, *b;
    uint64_t deleted = 0;
    char key[32], *s;
    strict_pair(&a, &b);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "item:%d", i);
        cr_assert_eq(set_tagged(a, key, "v", TAGS("bulk")), TC_OK, "%s",
                     tc_errmsg());
    }
    warm(b, "item:7", "v");
    warm(b, "item:2499", "v");
    cr_assert_eq(tc_invalidate_tags(a, TAGS("bulk"), &deleted), TC_OK, "%s",
                 tc_errmsg());
    cr_assert_eq(deleted, N);
    s = tcr_cmd(&srv, NULL, "EVAL", "return #redis.call('KEYS', 'item:*')",
                "0", NULL);
    cr_assert_str_eq(s, "0");
    free(s);
    s = tcr_cmd(&srv, NULL, "EXISTS", "__tiercache:invalidate:tag:bulk",
                "__tiercache:invalidate:tagdrain:bulk", NULL);
    cr_assert_str_eq(s, "0");
    free(s);
    cr_assert(!l1_serves(b, "item:7", "v"));
    cr_assert(!l1_serves(b, "item:2499", "v"));
    tc_cache_destroy(a);
    tc_cache_destroy(b);
}

/* A tag that cannot be recorded (its set's key holds a string) stores
 * nothing: a value that a tag could never invalidate would be served. */
Test(tags, a_tag_that_cannot_be_recorded_stores_nothing)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_result r;
    char *s = tcr_cmd(&srv, NULL, "SET", "__tiercache:invalidate:tag:bad",
                      "not a set", NULL);
    free(s);
    r = set_tagged(c, "k", "v", TAGS("fine", "bad"));
    cr_assert_neq(r, TC_OK, "a write whose tag was refused succeeded");
    cr_assert(strstr(tc_errmsg(), "WRONGTYPE") != NULL, "%s", tc_errmsg());
    cr_assert(l2_lacks("k"), "the value was stored without its tag");
    cr_assert(l1_holds(c, "k", NULL), "L1 kept a copy of a failed write");
    tc_cache_destroy(c);
}

static long long pttl(const char *key)
{
    char *s = tcr_cmd(&srv, NULL, "PTTL", key, NULL);
    long long t = s ? atoll(s) : -3;
    free(s);
    return t;
}

/* A tag's set lives at least as long as every key under it. */
Test(tags, a_tag_set_outlives_its_keys)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_set_opts shortl = {60000, 0, 0}, longl = {3600000, 0, 0},
                none = {TC_TTL_NONE, 0, 0};
    const char *t[] = {"t"};
    const char *set = "__tiercache:invalidate:tag:t";
    cr_assert_eq(tc_set_tagged(c, "a", 1, "v", 1, &longl, 1, t), TC_OK);
    cr_assert_geq(pttl(set), 3500000);
    cr_assert_eq(tc_set_tagged(c, "b", 1, "v", 1, &shortl, 1, t), TC_OK);
    cr_assert_geq(pttl(set), 3500000, "a shorter key shortened the set");
    cr_assert_eq(tc_set_tagged(c, "n", 1, "v", 1, &none, 1, t), TC_OK);
    cr_assert_eq(pttl(set), -1, "a key without expiry under an expiring set");
    cr_assert_eq(tc_set_tagged(c, "b", 1, "v", 1, &shortl, 1, t), TC_OK);
    cr_assert_eq(pttl(set), -1);
    tc_cache_destroy(c);
}

/* A call that stopped half-way (here: its draining set left behind as a
 * crashed call would leave it) is finished by the next call for the tag,
 * together with the keys tagged since. */
Test(tags, a_drain_left_behind_is_finished_by_the_next_call)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    uint64_t deleted = 0;
    char *s;
    cr_assert_eq(set_tagged(c, "old1", "v", TAGS("t")), TC_OK);
    cr_assert_eq(set_tagged(c, "old2", "v", TAGS("t")), TC_OK);
    s = tcr_cmd(&srv, NULL, "RENAME", "__tiercache:invalidate:tag:t",
                "__tiercache:invalidate:tagdrain:t", NULL);
    cr_assert_str_eq(s, "OK");
    free(s);
    cr_assert_eq(set_tagged(c, "new1", "v", TAGS("t")), TC_OK);
    cr_assert_eq(tc_invalidate_tags(c, TAGS("t"), &deleted), TC_OK, "%s",
                 tc_errmsg());
    cr_assert_eq(deleted, 3);
    cr_assert(l2_lacks("old1") && l2_lacks("old2") && l2_lacks("new1"));
    tc_cache_destroy(c);
}

Test(tags, bad_arguments_are_refused_clearly)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_set_opts nx = {0, 0, TC_SET_NX};
    const char *many[65], *one[] = {"t"}, *empty[] = {""};
    char big[2048];
    const char *bigt[] = {big};
    for (int i = 0; i < 65; i++)
        many[i] = "t";
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(tc_set_tagged(c, "k", 1, "v", 1, &nx, 1, one),
                 TC_BAD_ARGUMENT);
    cr_assert_eq(tc_set_tagged(c, "k", 1, "v", 1, NULL, 65, many),
                 TC_BAD_ARGUMENT);
    cr_assert_eq(tc_set_tagged(c, "k", 1, "v", 1, NULL, 1, empty),
                 TC_BAD_ARGUMENT);
    cr_assert_eq(tc_set_tagged(c, "k", 1, "v", 1, NULL, 0, one),
                 TC_BAD_ARGUMENT);
    cr_assert_eq(tc_set_tagged(c, "k", 1, "v", 1, NULL, 1, bigt),
                 TC_TOO_LARGE);
    cr_assert_eq(tc_invalidate_tags(c, 1, empty, NULL), TC_BAD_ARGUMENT);
    cr_assert(l2_lacks("k"), "a refused call wrote");
    tc_cache_destroy(c);
}

static int tagged_write_works(void *c)
{
    return set_tagged(c, "k3", "v", TAGS("t")) == TC_OK;
}

/* Redis down: both calls fail fast with a clear result, nothing crashes,
 * and after the restart the tag works again without a new handle. */
Test(tags, redis_down_fails_clearly_and_recovers)
{
    tc_options o = test_opts(&srv);
    tc_cache *c = must_create(&o);
    tc_result r;
    uint64_t deleted = 0;
    cr_assert_eq(set_tagged(c, "k", "v", TAGS("t")), TC_OK, "%s", tc_errmsg());
    tcr_kill(&srv);
    r = set_tagged(c, "k2", "v", TAGS("t"));
    cr_assert(r == TC_L2_UNAVAILABLE || r == TC_TIMEOUT, "%s", tc_strerror(r));
    r = tc_invalidate_tags(c, TAGS("t"), NULL);
    cr_assert(r == TC_L2_UNAVAILABLE || r == TC_TIMEOUT, "%s", tc_strerror(r));
    cr_assert_eq(tcr_restart(&srv), 0);
    AWAIT(tagged_write_works, c, "no tagged write after the restart: %s",
          tc_errmsg());
    cr_assert_eq(tc_invalidate_tags(c, TAGS("t"), &deleted), TC_OK, "%s",
                 tc_errmsg());
    cr_assert(l2_lacks("k3"));
    tc_cache_destroy(c);
}
