/* Configuration: tc_options_parse_url() and tc__config_resolve() with the
 * environment. Criterion runs each test in its own process, so setenv()
 * does not leak between tests; every test starts from a clean slate. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crit.h"

#include "config.h"
#include "error.h"
#include "parse.h"

static const char *const env_vars[] = {
    "REDIS_URL",        "REDIS_HOST",        "REDIS_PORT",
    "REDIS_PASSWORD",   "REDIS_USERNAME",    "REDIS_DB",
    "CACHE_KEY_PREFIX", "CACHE_DEFAULT_TTL", "CACHE_ENABLED",
    "TC_COHERENCE",
};

static void clean_env(void)
{
    for (size_t i = 0; i < sizeof(env_vars) / sizeof(env_vars[0]); i++)
        unsetenv(env_vars[i]);
}

TestSuite(parse);
TestSuite(url, .init = clean_env);
TestSuite(config, .init = clean_env);

/* Forget any earlier detail so a message is known to come from the call
 * under test. */
static void reset_errmsg(void)
{
    tc__fail(TC_OK, "%s", "");
}

static int within(const char *p, const char *buf, size_t len)
{
    return p >= buf && p < buf + len;
}

/* ------------------------------------------------------------------ */
/* parse.h: the one strict parser                                      */
/* ------------------------------------------------------------------ */

static int u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    return tc__parse_u64(s, strlen(s), lo, hi, out);
}

Test(parse, u64_accepts_plain_decimal_in_range)
{
    uint64_t v = 0;
    cr_assert_eq(u64("0", 0, 10, &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(u64("6379", 1, 65535, &v), 0);
    cr_assert_eq(v, 6379);
    cr_assert_eq(u64("007", 0, 10, &v), 0, "leading zeros are allowed");
    cr_assert_eq(v, 7);
    cr_assert_eq(u64("18446744073709551615", 0, UINT64_MAX, &v), 0);
    cr_assert_eq(v, UINT64_MAX);
    cr_assert_eq(u64("1", 1, 1, &v), 0);
    cr_assert_eq(u64("65535", 1, 65535, &v), 0);
}

Test(parse, u64_rejects_everything_else_and_leaves_out_alone)
{
    static const char *const bad[] = {
        "",  "-1", "+1", " 1", "1 ", "1x", "0x10", "1.5", "1e3", "\t1",
        "18446744073709551616", "99999999999999999999",
        "184467440737095516150"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 42;
        cr_assert_eq(u64(bad[i], 0, UINT64_MAX, &v), -1, "accepted \"%s\"",
                     bad[i]);
        cr_assert_eq(v, 42, "\"%s\" changed *out", bad[i]);
    }
}

Test(parse, u64_checks_the_range)
{
    uint64_t v = 42;
    cr_assert_eq(u64("0", 1, 65535, &v), -1);
    cr_assert_eq(u64("65536", 1, 65535, &v), -1);
    cr_assert_eq(v, 42);
}

Test(parse, u64_reads_only_n_bytes)
{
    uint64_t v = 0;
    /* The length bounds the number: a suffix outside it is not read, a
     * NUL inside it is not a digit. */
    cr_assert_eq(tc__parse_u64("6379 1", 4, 0, UINT64_MAX, &v), 0);
    cr_assert_eq(v, 6379);
    cr_assert_eq(tc__parse_u64("12\0003", 4, 0, UINT64_MAX, &v), -1);
    cr_assert_eq(tc__parse_u64("12", 0, 0, UINT64_MAX, &v), -1);
    cr_assert_eq(tc__parse_u64(NULL, 0, 0, UINT64_MAX, &v), -1);
}

static int i64(const char *s, int64_t *out)
{
    return tc__parse_i64(s, strlen(s), INT64_MIN, INT64_MAX, out);
}

Test(parse, i64_follows_string2ll)
{
    static const char *const bad[] = {"",   "-",  "+1", "01", "-0", "-01",
                                      " 1", "1 ", "--1", "1-",
                                      "9223372036854775808",
                                      "-9223372036854775809",
                                      "99999999999999999999"};
    int64_t v = 0;
    cr_assert_eq(i64("0", &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(i64("-5", &v), 0);
    cr_assert_eq(v, -5);
    cr_assert_eq(i64("9223372036854775807", &v), 0);
    cr_assert_eq(v, INT64_MAX);
    cr_assert_eq(i64("-9223372036854775808", &v), 0);
    cr_assert_eq(v, INT64_MIN);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 42;
        cr_assert_eq(i64(bad[i], &v), -1, "accepted \"%s\"", bad[i]);
        cr_assert_eq(v, 42);
    }
    cr_assert_eq(tc__parse_i64("-1", 2, 0, 10, &v), -1, "range");
    cr_assert_eq(tc__parse_i64("11", 2, 0, 10, &v), -1, "range");
}

Test(parse, octal_for_file_modes)
{
    uint64_t v = 0;
    cr_assert_eq(tc__parse_octal("0600", 4, 0777, &v), 0);
    cr_assert_eq(v, 0600);
    cr_assert_eq(tc__parse_octal("777", 3, 0777, &v), 0);
    cr_assert_eq(v, 0777);
    v = 42;
    cr_assert_eq(tc__parse_octal("0800", 4, 0777, &v), -1);
    cr_assert_eq(tc__parse_octal("1000", 4, 0777, &v), -1);
    cr_assert_eq(tc__parse_octal("", 0, 0777, &v), -1);
    cr_assert_eq(tc__parse_octal("-1", 2, 0777, &v), -1);
    cr_assert_eq(v, 42);
}

Test(parse, booleans)
{
    static const char *const yes[] = {"1", "true", "TRUE", "yes", "Yes", "on"};
    static const char *const no[] = {"0", "false", "no", "OFF", "off"};
    static const char *const bad[] = {"", "2", "maybe", "tru", "truee",
                                      " true", "y", "n"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        int b = 0;
        cr_assert_eq(tc__parse_bool(yes[i], strlen(yes[i]), &b), 0, "%s",
                     yes[i]);
        cr_assert_eq(b, 1, "%s", yes[i]);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        int b = 1;
        cr_assert_eq(tc__parse_bool(no[i], strlen(no[i]), &b), 0, "%s", no[i]);
        cr_assert_eq(b, 0, "%s", no[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int b = 7;
        cr_assert_eq(tc__parse_bool(bad[i], strlen(bad[i]), &b), -1, "%s",
                     bad[i]);
        cr_assert_eq(b, 7);
    }
    /* Only the first n bytes count. */
    {
        int b = 7;
        cr_assert_eq(tc__parse_bool("onward", 2, &b), 0);
        cr_assert_eq(b, 1);
    }
}

/* ------------------------------------------------------------------ */
/* tc_options_parse_url: accepted forms                                */
/* ------------------------------------------------------------------ */

static tc_options parse_ok(const char *url, char *storage, size_t len)
{
    tc_options o;
    tc_result r;
    memset(&o, 0, sizeof(o));
    r = tc_options_parse_url(&o, url, storage, len);
    cr_assert_eq(r, TC_OK, "%s: %s (%s)", url, tc_strerror(r), tc_errmsg());
    return o;
}

Test(url, host_only)
{
    char st[64];
    tc_options o = parse_ok("redis://cache.local", st, sizeof(st));
    cr_assert_str_eq(o.host, "cache.local");
    cr_assert(within(o.host, st, sizeof(st)), "host not in storage");
    cr_assert_eq(o.port, 0, "port not given: left as it was");
    cr_assert_eq(o.db, 0);
    cr_assert_null(o.unix_path);
    cr_assert_null(o.username);
    cr_assert_null(o.password);
}

Test(url, host_and_port)
{
    char st[64];
    tc_options o = parse_ok("redis://host:6380", st, sizeof(st));
    cr_assert_str_eq(o.host, "host");
    cr_assert_eq(o.port, 6380);
    cr_assert_eq(o.db, 0);
}

Test(url, host_port_db)
{
    char st[64];
    tc_options o = parse_ok("redis://host:6380/3", st, sizeof(st));
    cr_assert_str_eq(o.host, "host");
    cr_assert_eq(o.port, 6380);
    cr_assert_eq(o.db, 3);
}

Test(url, db_zero_forces_zero)
{
    /* opts.db == 0 means "default"; an explicit /0 must force db 0. */
    char st[64];
    tc_options o = parse_ok("redis://host/0", st, sizeof(st));
    cr_assert_eq(o.db, -1);
}

Test(url, trailing_slash_is_no_db)
{
    char st[64];
    tc_options o = parse_ok("redis://host:1/", st, sizeof(st));
    cr_assert_str_eq(o.host, "host");
    cr_assert_eq(o.db, 0);
}

Test(url, password_only_with_colon)
{
    char st[64];
    tc_options o = parse_ok("redis://:pass@host", st, sizeof(st));
    cr_assert_str_eq(o.host, "host");
    cr_assert_null(o.username);
    cr_assert_str_eq(o.password, "pass");
    cr_assert(within(o.password, st, sizeof(st)));
}

Test(url, user_password_percent_decoded)
{
    char st[64];
    tc_options o = parse_ok("redis://user:pa%40ss@host:1/2", st, sizeof(st));
    cr_assert_str_eq(o.username, "user");
    cr_assert_str_eq(o.password, "pa@ss");
    cr_assert_str_eq(o.host, "host");
    cr_assert_eq(o.port, 1);
    cr_assert_eq(o.db, 2);
}

Test(url, percent_decoding_in_user_and_escapes_are_case_insensitive)
{
    char st[64];
    tc_options o = parse_ok("redis://us%3Aer:p%2fw%2F@h", st, sizeof(st));
    cr_assert_str_eq(o.username, "us:er");
    cr_assert_str_eq(o.password, "p/w/");
    cr_assert_str_eq(o.host, "h");
}

Test(url, secret_without_colon_is_a_password)
{
    char st[64];
    tc_options o = parse_ok("redis://secret@host", st, sizeof(st));
    cr_assert_null(o.username);
    cr_assert_str_eq(o.password, "secret");
    cr_assert_str_eq(o.host, "host");
}

Test(url, ipv6_host)
{
    char st[64];
    tc_options o = parse_ok("redis://[::1]:6379", st, sizeof(st));
    cr_assert_str_eq(o.host, "::1");
    cr_assert_eq(o.port, 6379);
}

Test(url, unix_socket)
{
    char st[64];
    tc_options o = parse_ok("unix:///tmp/r.sock", st, sizeof(st));
    cr_assert_str_eq(o.unix_path, "/tmp/r.sock");
    cr_assert(within(o.unix_path, st, sizeof(st)));
    cr_assert_null(o.host);
    cr_assert_eq(o.db, 0);
}

Test(url, unix_socket_with_db)
{
    char st[64];
    tc_options o = parse_ok("unix:///tmp/r.sock?db=4", st, sizeof(st));
    cr_assert_str_eq(o.unix_path, "/tmp/r.sock");
    cr_assert_eq(o.db, 4);
}

Test(url, unix_socket_with_credentials)
{
    char st[64];
    tc_options o = parse_ok("unix://user:pw@/tmp/r.sock", st, sizeof(st));
    cr_assert_str_eq(o.unix_path, "/tmp/r.sock");
    cr_assert_str_eq(o.username, "user");
    cr_assert_str_eq(o.password, "pw");
}

Test(url, storage_of_url_length_is_enough)
{
    /* The documented minimum, for the URL with the most parts. */
    static const char *const urls[] = {
        "redis://user:pa%40ss@host:1/2", "redis://u:p@h", "redis://:p@h",
        "unix://user:pw@/tmp/r.sock?db=1", "redis://[::1]:6379"};
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        size_t n = strlen(urls[i]) + 1;
        char *st = malloc(n); /* exact size: ASan sees any overrun */
        tc_options o;
        memset(&o, 0, sizeof(o));
        cr_assert_eq(tc_options_parse_url(&o, urls[i], st, n), TC_OK, "%s: %s",
                     urls[i], tc_errmsg());
        free(st);
    }
}

/* ------------------------------------------------------------------ */
/* tc_options_parse_url: rejected forms                                */
/* ------------------------------------------------------------------ */

/* Rejected with TC_BAD_ARGUMENT, a detail, `opts` untouched; returns a
 * copy of the detail. */
static void parse_bad(const char *url, const char *mention)
{
    char st[256];
    tc_options o, before;
    tc_result r;
    memset(&o, 0, sizeof(o));
    o.host = "sentinel-host";
    o.port = 1234;
    o.db = 7;
    o.password = "sentinel-pw";
    o.url = "sentinel-url";
    before = o;
    reset_errmsg();
    r = tc_options_parse_url(&o, url, st, sizeof(st));
    cr_assert_eq(r, TC_BAD_ARGUMENT, "\"%s\" gave %s", url, tc_strerror(r));
    cr_assert(memcmp(&o, &before, sizeof(o)) == 0, "\"%s\" changed opts", url);
    cr_assert_gt(strlen(tc_errmsg()), 10, "\"%s\": no detail", url);
    if (mention)
        cr_assert(strstr(tc_errmsg(), mention) != NULL,
                  "\"%s\": detail \"%s\" does not mention \"%s\"", url,
                  tc_errmsg(), mention);
    cr_assert(strstr(tc_errmsg(), "hunter2") == NULL,
              "\"%s\": detail leaks the password: %s", url, tc_errmsg());
}

Test(url, malformed_urls_are_rejected)
{
    parse_bad("", NULL);
    parse_bad("http://x", "scheme");
    parse_bad("redis:/x", "scheme");
    parse_bad("redis+tls://x", "scheme");
    parse_bad("redis://", "host");
    parse_bad("redis://:6379", "host");
    parse_bad("redis://host:0", "port");
    parse_bad("redis://host:70000", "port");
    parse_bad("redis://host:65536", "port");
    parse_bad("redis://host:abc", "port");
    parse_bad("redis://host:", "port");
    parse_bad("redis://host:-1", "port");
    parse_bad("redis://host/abc", "database");
    parse_bad("redis://host/-1", "database");
    parse_bad("redis://host/1/2", "database");
    parse_bad("unix://relative", "absolute");
    parse_bad("unix://", "absolute");
    parse_bad("unix://u:p@relative", "absolute");
    parse_bad("redis://h?foo=1", "query");
    parse_bad("unix:///tmp/s?db=x", "db");
    parse_bad("redis://[::1", "[");
    parse_bad("redis://[::1]x", "]");
    parse_bad("redis://ho%zzst", "escape");
    parse_bad("redis://host%4", "escape");
    parse_bad("redis://u:p%g1@h", "escape");
    parse_bad("unix:///tmp/%zz", "escape");
    parse_bad("redis://ho st", "host");
}

Test(url, errors_never_show_the_password)
{
    parse_bad("redis://u:hunter2@host:99999", "port");
    parse_bad("redis://u:hunter2@host/x", "database");
    parse_bad("redis://:hunter2@h?x=1", "query");
    parse_bad("redis://u:hunter2%zz@h", "escape");
    parse_bad("redis://u:hunter2@", "host");
    parse_bad("rediss://u:hunter2@h:0", "port");
    parse_bad("unix://u:hunter2@relative", "absolute");
    parse_bad("redis://hunter2@[::1", "[");
}

Test(url, storage_too_small)
{
    char st[4];
    tc_options o, before;
    memset(&o, 0, sizeof(o));
    o.port = 99;
    before = o;
    cr_assert_eq(tc_options_parse_url(&o, "redis://longhostname:6380", st,
                                      sizeof(st)),
                 TC_BAD_ARGUMENT);
    cr_assert(memcmp(&o, &before, sizeof(o)) == 0, "opts changed");
    cr_assert_gt(strlen(tc_errmsg()), 0);
}

Test(url, null_arguments)
{
    char st[64];
    tc_options o;
    memset(&o, 0, sizeof(o));
    cr_assert_eq(tc_options_parse_url(NULL, "redis://h", st, sizeof(st)),
                 TC_BAD_ARGUMENT);
    cr_assert_eq(tc_options_parse_url(&o, NULL, st, sizeof(st)),
                 TC_BAD_ARGUMENT);
    cr_assert_eq(tc_options_parse_url(&o, "redis://h", NULL, 64),
                 TC_BAD_ARGUMENT);
}

/* ------------------------------------------------------------------ */
/* tc__config_resolve                                                  */
/* ------------------------------------------------------------------ */

static tc__config resolve_ok(const tc_options *o)
{
    tc__config c;
    tc_result r = tc__config_resolve(o, &c);
    cr_assert_eq(r, TC_OK, "%s (%s)", tc_strerror(r), tc_errmsg());
    return c;
}

/* Fails with TC_BAD_ARGUMENT, leaves nothing behind, and the detail names
 * `mention` and never the password "hunter2". */
static void resolve_bad(const tc_options *o, const char *mention)
{
    tc__config c;
    tc_result r;
    reset_errmsg();
    r = tc__config_resolve(o, &c);
    cr_assert_eq(r, TC_BAD_ARGUMENT, "gave %s", tc_strerror(r));
    cr_assert_gt(strlen(tc_errmsg()), 0, "no detail");
    if (mention)
        cr_assert(strstr(tc_errmsg(), mention) != NULL,
                  "detail \"%s\" does not name %s", tc_errmsg(), mention);
    cr_assert(strstr(tc_errmsg(), "hunter2") == NULL,
              "detail leaks the password: %s", tc_errmsg());
}

static tc_options no_env(void)
{
    tc_options o;
    memset(&o, 0, sizeof(o));
    o.ignore_env = TC_YES;
    return o;
}

Test(config, defaults)
{
    tc__config c = resolve_ok(NULL);
    cr_assert_str_eq(c.host, "127.0.0.1");
    cr_assert_eq(c.port, 6379);
    cr_assert_null(c.unix_path);
    cr_assert_null(c.username);
    cr_assert_null(c.password);
    cr_assert_eq(c.db, 0);
    cr_assert_str_eq(c.prefix, "");
    cr_assert_eq(c.prefix_len, 0);
    cr_assert_str_eq(c.channel, "__tiercache:invalidate");
    cr_assert_eq(c.default_ttl_ms, 900000);
    cr_assert_eq(c.l1_ttl_ms, 60000, "900 s / 10 capped at 60 s");
    cr_assert_eq(c.l1_max_bytes, 64u << 20);
    cr_assert_eq(c.l1_max_entries, 1000000);
    cr_assert_geq(c.l1_shards, 1);
    cr_assert_leq(c.l1_shards, 1024);
    cr_assert_eq(c.l1_shards & (c.l1_shards - 1), 0, "%u shards",
                 c.l1_shards);
    cr_assert_eq(c.max_key, 1024);
    cr_assert_eq(c.max_value, 16u << 20);
    cr_assert_eq(c.enabled, 1);
    cr_assert_eq(c.coherence, TC_COHERENCE_ASYNC);
    cr_assert_eq(c.lease_ms, 100);
    cr_assert_eq(c.tracking, 0);
    tc__config_free(&c);
}

Test(config, l1_ttl_is_a_tenth_of_the_default_below_the_cap)
{
    tc_options o = no_env();
    tc__config c;
    o.default_ttl_ms = 100000;
    c = resolve_ok(&o);
    cr_assert_eq(c.default_ttl_ms, 100000);
    cr_assert_eq(c.l1_ttl_ms, 10000);
    tc__config_free(&c);
    o.l1_ttl_ms = 1234; /* explicit wins */
    c = resolve_ok(&o);
    cr_assert_eq(c.l1_ttl_ms, 1234);
    tc__config_free(&c);
}

Test(config, redis_url_from_env)
{
    tc__config c;
    setenv("REDIS_URL", "redis://u:pw@envhost:7001/5", 1);
    c = resolve_ok(NULL);
    cr_assert_str_eq(c.host, "envhost");
    cr_assert_eq(c.port, 7001);
    cr_assert_eq(c.db, 5);
    cr_assert_str_eq(c.username, "u");
    cr_assert_str_eq(c.password, "pw");
    tc__config_free(&c);
}

Test(config, redis_unix_url_from_env)
{
    tc__config c;
    setenv("REDIS_URL", "unix:///run/redis.sock?db=2", 1);
    c = resolve_ok(NULL);
    cr_assert_str_eq(c.unix_path, "/run/redis.sock");
    cr_assert_null(c.host);
    cr_assert_eq(c.db, 2);
    tc__config_free(&c);
}

Test(config, redis_host_port_password_username_db_from_env)
{
    tc__config c;
    setenv("REDIS_HOST", "h.example", 1);
    setenv("REDIS_PORT", "6390", 1);
    setenv("REDIS_PASSWORD", "pw", 1);
    setenv("REDIS_USERNAME", "app", 1);
    setenv("REDIS_DB", "9", 1);
    c = resolve_ok(NULL);
    cr_assert_str_eq(c.host, "h.example");
    cr_assert_eq(c.port, 6390);
    cr_assert_str_eq(c.password, "pw");
    cr_assert_str_eq(c.username, "app");
    cr_assert_eq(c.db, 9);
    tc__config_free(&c);
}

Test(config, empty_env_values_are_unset)
{
    tc__config c;
    setenv("REDIS_HOST", "", 1);
    setenv("REDIS_PORT", "", 1);
    c = resolve_ok(NULL);
    cr_assert_str_eq(c.host, "127.0.0.1");
    cr_assert_eq(c.port, 6379);
    tc__config_free(&c);
}

static void set_all_env(void)
{
    setenv("REDIS_URL", "redis://eu:epw@urlenv:7002/6", 1);
    setenv("REDIS_HOST", "envhost", 1);
    setenv("REDIS_PORT", "7001", 1);
    setenv("REDIS_PASSWORD", "envpw", 1);
    setenv("REDIS_USERNAME", "envuser", 1);
    setenv("REDIS_DB", "5", 1);
    setenv("CACHE_KEY_PREFIX", "envprefix:", 1);
    setenv("CACHE_DEFAULT_TTL", "30", 1);
    setenv("CACHE_ENABLED", "false", 1);
    setenv("TC_COHERENCE", "strict", 1);
}

Test(config, explicit_options_win_over_env)
{
    tc_options o;
    tc__config c;
    set_all_env();
    memset(&o, 0, sizeof(o));
    o.host = "opthost";
    o.port = 7100;
    o.password = "optpw";
    o.username = "optuser";
    o.db = 2;
    o.key_prefix = "opt:";
    o.default_ttl_ms = 5000;
    o.enabled = TC_YES;
    o.coherence = TC_COHERENCE_NONE;
    c = resolve_ok(&o);
    cr_assert_str_eq(c.host, "opthost");
    cr_assert_eq(c.port, 7100);
    cr_assert_str_eq(c.password, "optpw");
    cr_assert_str_eq(c.username, "optuser");
    cr_assert_eq(c.db, 2);
    cr_assert_str_eq(c.prefix, "opt:");
    cr_assert_str_eq(c.channel, "opt:__tiercache:invalidate");
    cr_assert_eq(c.default_ttl_ms, 5000);
    cr_assert_eq(c.enabled, 1);
    cr_assert_eq(c.coherence, TC_COHERENCE_NONE);
    tc__config_free(&c);
}

Test(config, explicit_unix_path_wins_over_env)
{
    tc_options o;
    tc__config c;
    set_all_env();
    memset(&o, 0, sizeof(o));
    o.unix_path = "/tmp/x.sock";
    c = resolve_ok(&o);
    cr_assert_str_eq(c.unix_path, "/tmp/x.sock");
    cr_assert_null(c.host);
    tc__config_free(&c);
}

Test(config, db_minus_one_forces_zero_over_env)
{
    tc_options o;
    tc__config c;
    setenv("REDIS_DB", "5", 1);
    memset(&o, 0, sizeof(o));
    o.db = -1;
    c = resolve_ok(&o);
    cr_assert_eq(c.db, 0);
    tc__config_free(&c);
}

Test(config, parsed_url_db_zero_forces_zero_over_env)
{
    char st[64];
    tc_options o;
    tc__config c;
    setenv("REDIS_DB", "5", 1);
    memset(&o, 0, sizeof(o));
    cr_assert_eq(tc_options_parse_url(&o, "redis://:pw@h:6390/0", st,
                                      sizeof(st)),
                 TC_OK);
    c = resolve_ok(&o);
    cr_assert_str_eq(c.host, "h");
    cr_assert_eq(c.port, 6390);
    cr_assert_str_eq(c.password, "pw");
    cr_assert_eq(c.db, 0);
    tc__config_free(&c);
}

Test(config, options_url_wins_over_env)
{
    tc_options o;
    tc__config c;
    set_all_env();
    memset(&o, 0, sizeof(o));
    o.url = "redis://uu:upw@urlhost:6390/4";
    c = resolve_ok(&o);
    cr_assert_str_eq(c.host, "urlhost");
    cr_assert_eq(c.port, 6390);
    cr_assert_eq(c.db, 4);
    cr_assert_str_eq(c.username, "uu");
    cr_assert_str_eq(c.password, "upw");
    tc__config_free(&c);
}

/* tiercache.h: "Explicit host/port/unix_path/db/username/password fields
 * below win over the URL's parts." */
Test(config, explicit_fields_win_over_options_url)
{
    tc_options o = no_env();
    tc__config c;
    int port;
    o.url = "redis://uu:upw@urlhost:6390/4";
    o.port = 7000;
    o.db = 2;
    o.password = "optpw";
    o.username = "optuser";
    c = resolve_ok(&o);
    cr_assert_str_eq(c.host, "urlhost");
    cr_assert_eq(c.db, 2);
    cr_assert_str_eq(c.password, "optpw");
    cr_assert_str_eq(c.username, "optuser");
    port = c.port;
    tc__config_free(&c);
    cr_assert_eq(port, 7000, "the URL's port overrode the explicit port");
}

Test(config, explicit_port_wins_over_env_url)
{
    tc_options o;
    tc__config c;
    int port;
    setenv("REDIS_URL", "redis://envhost:6390", 1);
    memset(&o, 0, sizeof(o));
    o.port = 7000;
    c = resolve_ok(&o);
    cr_assert_str_eq(c.host, "envhost");
    port = c.port;
    tc__config_free(&c);
    cr_assert_eq(port, 7000, "REDIS_URL's port overrode the explicit port");
}

Test(config, ignore_env)
{
    tc_options o = no_env();
    tc__config c;
    set_all_env();
    c = resolve_ok(&o);
    cr_assert_str_eq(c.host, "127.0.0.1");
    cr_assert_eq(c.port, 6379);
    cr_assert_eq(c.db, 0);
    cr_assert_null(c.username);
    cr_assert_null(c.password);
    cr_assert_str_eq(c.prefix, "");
    cr_assert_eq(c.default_ttl_ms, 900000);
    cr_assert_eq(c.enabled, 1);
    cr_assert_eq(c.coherence, TC_COHERENCE_ASYNC);
    tc__config_free(&c);
}

Test(config, ignore_env_skips_malformed_env)
{
    tc_options o = no_env();
    tc__config c;
    setenv("REDIS_PORT", "nope", 1);
    setenv("CACHE_ENABLED", "maybe", 1);
    setenv("REDIS_URL", "http://x", 1);
    c = resolve_ok(&o);
    cr_assert_eq(c.port, 6379);
    tc__config_free(&c);
}

Test(config, key_prefix_from_env_prefixes_channel)
{
    tc_options o;
    tc__config c;
    setenv("CACHE_KEY_PREFIX", "app:", 1);
    c = resolve_ok(NULL);
    cr_assert_str_eq(c.prefix, "app:");
    cr_assert_eq(c.prefix_len, 4);
    cr_assert_str_eq(c.channel, "app:__tiercache:invalidate");
    tc__config_free(&c);

    memset(&o, 0, sizeof(o));
    o.channel = "inv";
    c = resolve_ok(&o);
    cr_assert_str_eq(c.channel, "app:inv");
    tc__config_free(&c);
}

Test(config, default_ttl_from_env)
{
    tc__config c;
    setenv("CACHE_DEFAULT_TTL", "30", 1);
    c = resolve_ok(NULL);
    cr_assert_eq(c.default_ttl_ms, 30000);
    cr_assert_eq(c.l1_ttl_ms, 3000);
    tc__config_free(&c);
}

Test(config, malformed_default_ttl)
{
    setenv("CACHE_DEFAULT_TTL", "30s", 1);
    resolve_bad(NULL, "CACHE_DEFAULT_TTL");
    setenv("CACHE_DEFAULT_TTL", "0", 1);
    resolve_bad(NULL, "CACHE_DEFAULT_TTL");
}

Test(config, cache_enabled_values)
{
    static const char *const off[] = {"false", "0", "no", "off", "FALSE",
                                      "No"};
    static const char *const on[] = {"true", "1", "yes", "on", "TRUE"};
    for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
        tc__config c;
        setenv("CACHE_ENABLED", off[i], 1);
        c = resolve_ok(NULL);
        cr_assert_eq(c.enabled, 0, "CACHE_ENABLED=%s", off[i]);
        tc__config_free(&c);
    }
    for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
        tc__config c;
        setenv("CACHE_ENABLED", on[i], 1);
        c = resolve_ok(NULL);
        cr_assert_eq(c.enabled, 1, "CACHE_ENABLED=%s", on[i]);
        tc__config_free(&c);
    }
}

Test(config, explicit_enabled_no_wins)
{
    tc_options o;
    tc__config c;
    setenv("CACHE_ENABLED", "true", 1);
    memset(&o, 0, sizeof(o));
    o.enabled = TC_NO;
    c = resolve_ok(&o);
    cr_assert_eq(c.enabled, 0);
    tc__config_free(&c);
}

Test(config, cache_enabled_maybe_is_rejected)
{
    setenv("CACHE_ENABLED", "maybe", 1);
    resolve_bad(NULL, "CACHE_ENABLED");
}

Test(config, malformed_redis_port)
{
    static const char *const bad[] = {"abc", "0", "70000", "-1", "63 79",
                                      "6379x", "99999999999"};
    setenv("REDIS_PASSWORD", "hunter2", 1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("REDIS_PORT", bad[i], 1);
        resolve_bad(NULL, "REDIS_PORT");
    }
}

Test(config, malformed_redis_db)
{
    static const char *const bad[] = {"x", "-1", "1.5", "99999999999"};
    setenv("REDIS_PASSWORD", "hunter2", 1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("REDIS_DB", bad[i], 1);
        resolve_bad(NULL, "REDIS_DB");
    }
}

Test(config, malformed_redis_url)
{
    static const char *const bad[] = {
        "redis://u:hunter2@host:99999", "redis://:hunter2@host/abc",
        "rediss://u:hunter2@host:0", "hunter2", "redis://u:hunter2%zz@h"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("REDIS_URL", bad[i], 1);
        resolve_bad(NULL, "REDIS_URL");
    }
}

Test(config, malformed_options_url)
{
    tc_options o = no_env();
    o.url = "redis://u:hunter2@host:99999";
    resolve_bad(&o, "URL");
}

Test(config, username_without_password)
{
    tc_options o = no_env();
    o.username = "u";
    resolve_bad(&o, "password");
}

Test(config, env_username_without_password)
{
    setenv("REDIS_USERNAME", "u", 1);
    resolve_bad(NULL, "password");
}

Test(config, shard_count_must_be_power_of_two)
{
    tc_options o = no_env();
    tc__config c;
    o.l1_shards = 3;
    resolve_bad(&o, "l1_shards");
    o.l1_shards = 2048;
    resolve_bad(&o, "l1_shards");
    o.l1_shards = 8;
    c = resolve_ok(&o);
    cr_assert_eq(c.l1_shards, 8);
    tc__config_free(&c);
}

Test(config, coherence_from_env)
{
    tc_options o;
    tc__config c;
    setenv("TC_COHERENCE", "strict", 1);
    c = resolve_ok(NULL);
    cr_assert_eq(c.coherence, TC_COHERENCE_STRICT);
    tc__config_free(&c);
    setenv("TC_COHERENCE", "none", 1);
    c = resolve_ok(NULL);
    cr_assert_eq(c.coherence, TC_COHERENCE_NONE);
    tc__config_free(&c);
    setenv("TC_COHERENCE", "async", 1);
    c = resolve_ok(NULL);
    cr_assert_eq(c.coherence, TC_COHERENCE_ASYNC);
    tc__config_free(&c);
    /* An explicit non-default mode wins. */
    setenv("TC_COHERENCE", "strict", 1);
    memset(&o, 0, sizeof(o));
    o.coherence = TC_COHERENCE_NONE;
    c = resolve_ok(&o);
    cr_assert_eq(c.coherence, TC_COHERENCE_NONE);
    tc__config_free(&c);
}

Test(config, coherence_bogus_is_rejected)
{
    setenv("TC_COHERENCE", "bogus", 1);
    resolve_bad(NULL, "TC_COHERENCE");
}

Test(config, coherence_out_of_range_option)
{
    tc_options o = no_env();
    o.coherence = (tc_coherence)7;
    resolve_bad(&o, "coherence");
}

/* tc__config_resolve(): "On failure ... `out` holds nothing". Checked on
 * the early validation paths, after some strings were already copied. */
Test(config, failure_leaves_nothing_bad_port)
{
    tc_options o = no_env();
    tc__config c;
    o.host = "h";
    o.port = 70000;
    cr_assert_eq(tc__config_resolve(&o, &c), TC_BAD_ARGUMENT);
    cr_assert_null(c.host, "host copy left behind (leaked)");
}

Test(config, failure_leaves_nothing_bad_db)
{
    tc_options o = no_env();
    tc__config c;
    o.unix_path = "/tmp/s";
    o.username = "u";
    o.password = "hunter2";
    o.db = -5;
    cr_assert_eq(tc__config_resolve(&o, &c), TC_BAD_ARGUMENT);
    cr_assert_null(c.unix_path, "path copy left behind (leaked)");
    cr_assert_null(c.password, "password copy left behind (leaked)");
    cr_assert_null(c.username, "user copy left behind (leaked)");
}

Test(config, failure_leaves_nothing_late)
{
    tc_options o = no_env();
    tc__config c;
    o.host = "h";
    o.password = "hunter2";
    o.l1_shards = 3;
    cr_assert_eq(tc__config_resolve(&o, &c), TC_BAD_ARGUMENT);
    cr_assert_null(c.host);
    cr_assert_null(c.password);
    cr_assert_null(c.prefix);
}

Test(config, where_has_no_credentials)
{
    tc_options o = no_env();
    tc__config c;
    char buf[128];
    o.url = "redis://u:hunter2@h.example:6390/3";
    c = resolve_ok(&o);
    tc__config_where(&c, buf, sizeof(buf));
    cr_assert_str_eq(buf, "h.example:6390");
    tc__config_free(&c);
    o.url = "unix://u:hunter2@/tmp/r.sock";
    c = resolve_ok(&o);
    tc__config_where(&c, buf, sizeof(buf));
    cr_assert_str_eq(buf, "unix:/tmp/r.sock");
    tc__config_free(&c);
}

/* ------------------------------------------------------------------ */
/* REDIS_PORT in the docker-link form (issue 8)                         */
/* ------------------------------------------------------------------ */

/* Kubernetes injects REDIS_PORT=tcp://<cluster ip>:<port> into every pod
 * of a namespace with a Service named "redis". Explicit options must not
 * be broken by it. */
Test(config, docker_link_redis_port_does_not_break_explicit_host_and_port)
{
    tc_options o;
    tc__config c;
    setenv("REDIS_PORT", "tcp://10.0.0.7:6379", 1);
    memset(&o, 0, sizeof(o));
    o.host = "cache.internal";
    o.port = 7000;
    c = resolve_ok(&o);
    cr_assert_str_eq(c.host, "cache.internal");
    cr_assert_eq(c.port, 7000);
    tc__config_free(&c);
}

Test(config, docker_link_redis_port_alone_gives_host_and_port)
{
    tc__config c;
    setenv("REDIS_PORT", "tcp://10.0.0.7:6380", 1);
    c = resolve_ok(NULL);
    cr_assert_str_eq(c.host, "10.0.0.7");
    cr_assert_eq(c.port, 6380);
    tc__config_free(&c);
}

Test(config, docker_link_redis_port_with_redis_host_gives_the_port)
{
    tc__config c;
    setenv("REDIS_HOST", "named.example", 1);
    setenv("REDIS_PORT", "tcp://10.0.0.7:6380", 1);
    c = resolve_ok(NULL);
    cr_assert_str_eq(c.host, "named.example");
    cr_assert_eq(c.port, 6380);
    tc__config_free(&c);
}

Test(config, docker_link_redis_port_with_explicit_host_gives_the_port)
{
    tc_options o;
    tc__config c;
    setenv("REDIS_PORT", "tcp://10.0.0.7:6380", 1);
    memset(&o, 0, sizeof(o));
    o.host = "cache.internal";
    c = resolve_ok(&o);
    cr_assert_str_eq(c.host, "cache.internal");
    cr_assert_eq(c.port, 6380);
    tc__config_free(&c);
}

/* A REDIS_URL the user set wins over the orchestrator's injected
 * endpoint, port included. */
Test(config, redis_url_wins_over_docker_link_redis_port)
{
    tc__config c;
    setenv("REDIS_URL", "redis://real.example:6390/2", 1);
    setenv("REDIS_PORT", "tcp://10.0.0.7:6379", 1);
    c = resolve_ok(NULL);
    cr_assert_str_eq(c.host, "real.example");
    cr_assert_eq(c.port, 6390);
    cr_assert_eq(c.db, 2);
    tc__config_free(&c);
}

Test(config, docker_link_redis_port_ipv6)
{
    tc__config c;
    setenv("REDIS_PORT", "tcp://[fd00::7]:6379", 1);
    c = resolve_ok(NULL);
    cr_assert_str_eq(c.host, "fd00::7");
    cr_assert_eq(c.port, 6379);
    tc__config_free(&c);
}

Test(config, malformed_docker_link_redis_port)
{
    static const char *const bad[] = {
        "tcp://10.0.0.7",      "tcp://10.0.0.7:",   "tcp://10.0.0.7:0",
        "tcp://10.0.0.7:70000", "tcp://:6379",      "udp://10.0.0.7:6379",
        "tcp://10.0.0.7:63x9", "tcp://a b:6379",    "tcp://h:6379/x",
        "tcp://[fd00::7:6379"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("REDIS_PORT", bad[i], 1);
        resolve_bad(NULL, "REDIS_PORT");
    }
}

/* ------------------------------------------------------------------ */
/* An environment value that explicit options override is never read   */
/* ------------------------------------------------------------------ */

Test(config, malformed_redis_port_overridden_by_explicit_port)
{
    tc_options o;
    tc__config c;
    setenv("REDIS_PORT", "nope", 1);
    memset(&o, 0, sizeof(o));
    o.port = 7000;
    c = resolve_ok(&o);
    cr_assert_eq(c.port, 7000);
    tc__config_free(&c);
}

Test(config, malformed_redis_port_overridden_by_unix_path)
{
    tc_options o;
    tc__config c;
    setenv("REDIS_PORT", "nope", 1);
    memset(&o, 0, sizeof(o));
    o.unix_path = "/tmp/r.sock";
    c = resolve_ok(&o);
    cr_assert_str_eq(c.unix_path, "/tmp/r.sock");
    tc__config_free(&c);
}

Test(config, malformed_redis_port_overridden_by_options_url_port)
{
    tc_options o;
    tc__config c;
    setenv("REDIS_PORT", "nope", 1);
    memset(&o, 0, sizeof(o));
    o.url = "redis://h:6390";
    c = resolve_ok(&o);
    cr_assert_eq(c.port, 6390);
    tc__config_free(&c);
}

Test(config, malformed_redis_db_overridden_by_explicit_db)
{
    tc_options o;
    tc__config c;
    setenv("REDIS_DB", "x", 1);
    memset(&o, 0, sizeof(o));
    o.db = 3;
    c = resolve_ok(&o);
    cr_assert_eq(c.db, 3);
    tc__config_free(&c);
}

Test(config, malformed_default_ttl_overridden_by_explicit_ttl)
{
    tc_options o;
    tc__config c;
    setenv("CACHE_DEFAULT_TTL", "30s", 1);
    memset(&o, 0, sizeof(o));
    o.default_ttl_ms = 5000;
    c = resolve_ok(&o);
    cr_assert_eq(c.default_ttl_ms, 5000);
    tc__config_free(&c);
}

Test(config, malformed_coherence_and_enabled_overridden_by_explicit_values)
{
    tc_options o;
    tc__config c;
    setenv("TC_COHERENCE", "bogus", 1);
    setenv("CACHE_ENABLED", "maybe", 1);
    memset(&o, 0, sizeof(o));
    o.coherence = TC_COHERENCE_STRICT;
    o.enabled = TC_YES;
    c = resolve_ok(&o);
    cr_assert_eq(c.coherence, TC_COHERENCE_STRICT);
    cr_assert_eq(c.enabled, 1);
    tc__config_free(&c);
}

/* ------------------------------------------------------------------ */
/* Timeouts and leases are bounded so that sums of them cannot wrap    */
/* ------------------------------------------------------------------ */

#define HOUR_MS 3600000u

static uint32_t *timeout_field(tc_options *o, int i)
{
    switch (i) {
    case 0: return &o->connect_timeout_ms;
    case 1: return &o->command_timeout_ms;
    case 2: return &o->reconnect_min_ms;
    case 3: return &o->reconnect_max_ms;
    default: return &o->lease_ms;
    }
}

static const char *const timeout_names[] = {
    "connect_timeout_ms", "command_timeout_ms", "reconnect_min_ms",
    "reconnect_max_ms", "lease_ms"};

Test(config, timeouts_up_to_an_hour_are_accepted)
{
    tc_options o = no_env();
    tc__config c;
    for (int i = 0; i < 5; i++)
        *timeout_field(&o, i) = HOUR_MS;
    c = resolve_ok(&o);
    cr_assert_eq(c.connect_timeout_ms, HOUR_MS);
    cr_assert_eq(c.command_timeout_ms, HOUR_MS);
    cr_assert_eq(c.reconnect_min_ms, HOUR_MS);
    cr_assert_eq(c.reconnect_max_ms, HOUR_MS);
    cr_assert_eq(c.lease_ms, HOUR_MS);
    /* What the bound is for: sums of a few timeouts fit in 32 bits. */
    cr_assert_lt((uint64_t)c.connect_timeout_ms + c.command_timeout_ms +
                     c.lease_ms + c.reconnect_max_ms,
                 (uint64_t)UINT32_MAX / 8);
    tc__config_free(&c);
}

Test(config, timeouts_above_an_hour_are_rejected)
{
    static const uint32_t bad[] = {HOUR_MS + 1, UINT32_MAX / 2 + 1,
                                   UINT32_MAX};
    for (int i = 0; i < 5; i++) {
        for (size_t j = 0; j < sizeof(bad) / sizeof(bad[0]); j++) {
            tc_options o = no_env();
            *timeout_field(&o, i) = bad[j];
            resolve_bad(&o, timeout_names[i]);
            cr_assert(strstr(tc_errmsg(), "3600000") != NULL,
                      "detail \"%s\" does not give the bound", tc_errmsg());
        }
    }
}

/* ------------------------------------------------------------------ */
/* Tracking needs a key prefix                                         */
/* ------------------------------------------------------------------ */

/* BCAST with an empty prefix tracks every key, the members set included:
 * N^2 pushes per lease tick. */
Test(config, tracking_without_a_key_prefix_is_rejected)
{
    tc_options o = no_env();
    o.tracking = TC_YES;
    resolve_bad(&o, "key_prefix");
    o.key_prefix = "";
    resolve_bad(&o, "key_prefix");
}

Test(config, tracking_with_a_key_prefix_is_accepted)
{
    tc_options o = no_env();
    tc__config c;
    o.tracking = TC_YES;
    o.key_prefix = "app:";
    c = resolve_ok(&o);
    cr_assert_eq(c.tracking, 1);
    tc__config_free(&c);
}

Test(config, tracking_with_an_env_key_prefix_is_accepted)
{
    tc_options o;
    tc__config c;
    setenv("CACHE_KEY_PREFIX", "app:", 1);
    memset(&o, 0, sizeof(o));
    o.tracking = TC_YES;
    c = resolve_ok(&o);
    cr_assert_eq(c.tracking, 1);
    cr_assert_str_eq(c.prefix, "app:");
    tc__config_free(&c);
}

/* ------------------------------------------------------------------ */
/* TTLs                                                                 */
/* ------------------------------------------------------------------ */

Test(config, ttl_none_is_stored_as_is)
{
    tc_options o = no_env();
    tc__config c;
    o.default_ttl_ms = TC_TTL_NONE;
    o.l1_ttl_ms = TC_TTL_NONE;
    c = resolve_ok(&o);
    cr_assert_eq(c.default_ttl_ms, TC_TTL_NONE);
    cr_assert_eq(c.l1_ttl_ms, TC_TTL_NONE);
    tc__config_free(&c);
}

Test(config, ttl_none_default_gives_the_l1_cap)
{
    tc_options o = no_env();
    tc__config c;
    o.default_ttl_ms = TC_TTL_NONE;
    c = resolve_ok(&o);
    cr_assert_eq(c.default_ttl_ms, TC_TTL_NONE);
    cr_assert_eq(c.l1_ttl_ms, 60000);
    tc__config_free(&c);
}

Test(config, largest_env_default_ttl_does_not_wrap)
{
    tc__config c;
    setenv("CACHE_DEFAULT_TTL", "315360000", 1); /* ten years */
    c = resolve_ok(NULL);
    cr_assert_eq(c.default_ttl_ms, 315360000000ull);
    tc__config_free(&c);
    setenv("CACHE_DEFAULT_TTL", "315360001", 1);
    resolve_bad(NULL, "CACHE_DEFAULT_TTL");
    setenv("CACHE_DEFAULT_TTL", "18446744073709552", 1); /* x1000 wraps */
    resolve_bad(NULL, "CACHE_DEFAULT_TTL");
}

/* A finite TTL is at most ten years, so that no later conversion (ms to ns)
 * can wrap; TC_TTL_NONE is the way to say "no expiry". */
Test(config, finite_ttls_above_ten_years_are_rejected)
{
    tc_options o = no_env();
    o.default_ttl_ms = 315360000000ull + 1;
    resolve_bad(&o, "default_ttl_ms");
    o = no_env();
    o.l1_ttl_ms = TC_TTL_NONE - 1;
    resolve_bad(&o, "l1_ttl_ms");
}

/* ------------------------------------------------------------------ */
/* Room to grow in the caller-allocated public structs                 */
/* ------------------------------------------------------------------ */

Test(config, zero_initialised_options_resolve)
{
    tc_options o = {0};
    tc_options d = {.ignore_env = TC_YES, .key_prefix = "p:"};
    tc__config c;
    c = resolve_ok(&o);
    tc__config_free(&c);
    c = resolve_ok(&d);
    cr_assert_str_eq(c.prefix, "p:");
    tc__config_free(&c);
}

/* A program built against a later header that sets a field this library
 * does not know gets an error, not a silently ignored setting. */
Test(config, non_zero_reserved_options_are_rejected)
{
    for (size_t i = 0; i < sizeof(((tc_options *)0)->reserved_) /
                               sizeof(((tc_options *)0)->reserved_[0]);
         i++) {
        tc_options o = no_env();
        o.reserved_[i] = 1;
        resolve_bad(&o, "reserved_");
    }
}

/* The ABI promise: reserved words end both structs, and a new field takes
 * reserved words instead of growing them. Sizes as on LP64 Linux. */
Test(config, public_struct_sizes_never_change)
{
    cr_assert_eq(offsetof(tc_options, reserved_) +
                     sizeof(((tc_options *)0)->reserved_),
                 sizeof(tc_options), "a field was added after reserved_");
    cr_assert_eq(offsetof(tc_stats, reserved_) +
                     sizeof(((tc_stats *)0)->reserved_),
                 sizeof(tc_stats), "a field was added after reserved_");
#if defined(__x86_64__) || defined(__aarch64__)
    cr_assert_eq(sizeof(tc_options), 264,
                 "tc_options changed size: take reserved_ words instead");
    cr_assert_eq(sizeof(tc_stats), 520,
                 "tc_stats changed size: take reserved_ words instead");
#endif
}

Test(config, stats_reserved_words_are_zero)
{
    tc_stats st;
    memset(&st, 0xa5, sizeof(st));
    tc_cache_stats(NULL, &st);
    for (size_t i = 0; i < sizeof(st.reserved_) / sizeof(st.reserved_[0]);
         i++)
        cr_assert_eq(st.reserved_[i], 0, "reserved_[%zu]", i);
}

/* ------------------------------------------------------------------ */
/* Bus relay (lib/relay.c): bus_relay= in the URL, else TC_BUS_RELAY   */
/* ------------------------------------------------------------------ */

Test(config, bus_relay_from_the_url_in_every_form)
{
    static const char *const urls[] = {
        "redis://h:7000?bus_relay=unix:///run/t/t.sock",
        "redis://h:7000/2?bus_relay=/run/t/t.sock",
        "unix:///tmp/r.sock?db=1&bus_relay=%2Frun%2Ft%2Ft.sock",
    };
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        tc_options o = no_env();
        tc__config c;
        o.url = urls[i];
        c = resolve_ok(&o);
        cr_assert_str_eq(c.relay_unix, "/run/t/t.sock", "%s", urls[i]);
        cr_assert_null(c.relay_host);
        tc__config_free(&c);
    }
    {
        tc_options o = no_env();
        tc__config c;
        o.url = "redis://h?bus_relay=127.0.0.1:7777";
        c = resolve_ok(&o);
        cr_assert_str_eq(c.relay_host, "127.0.0.1");
        cr_assert_eq(c.relay_port, 7777);
        cr_assert_null(c.relay_unix);
        tc__config_free(&c);
    }
}

Test(config, bus_relay_from_env_and_the_url_wins)
{
    tc__config c;
    tc_options o;
    setenv("TC_BUS_RELAY", "/env/relay.sock", 1);
    c = resolve_ok(NULL);
    cr_assert_str_eq(c.relay_unix, "/env/relay.sock");
    tc__config_free(&c);
    memset(&o, 0, sizeof(o));
    o.url = "redis://h?bus_relay=/url/relay.sock";
    c = resolve_ok(&o);
    cr_assert_str_eq(c.relay_unix, "/url/relay.sock");
    tc__config_free(&c);
    unsetenv("TC_BUS_RELAY");
    c = resolve_ok(NULL);
    cr_assert_null(c.relay_unix);
    cr_assert_null(c.relay_host);
    tc__config_free(&c);
}

Test(config, bus_relay_refused_where_it_cannot_work)
{
    tc_options o = no_env();
    o.url = "redis://h?bus_relay=nohostport";
    resolve_bad(&o, "TC_BUS_RELAY");
    o.url = "redis://h?bus_relay=user@h:1";
    resolve_bad(&o, "TC_BUS_RELAY");
    o.url = "redis://h?bus_relay=/r.sock";
    o.key_prefix = "p:";
    o.tracking = TC_YES;
    resolve_bad(&o, "tracking");
}

/* The relay's own credentials (a tiercached with --requirepass), in its
 * redis:// or unix:// URL; on Redis Cluster too. */
Test(config, bus_relay_with_credentials_and_on_a_cluster)
{
    tc_options o = no_env();
    tc__config c;
    o.url = "redis://h?bus_relay=redis://:pw@127.0.0.1:7777";
    c = resolve_ok(&o);
    cr_assert_str_eq(c.relay_host, "127.0.0.1");
    cr_assert_eq(c.relay_port, 7777);
    cr_assert_str_eq(c.relay_password, "pw");
    cr_assert_null(c.relay_username);
    tc__config_free(&c);
    /* Percent-encoded once for the relay's URL, once more in the query. */
    o.url = "redis-cluster://h:1?bus_relay=unix://u:p%2540w@/r.sock";
    c = resolve_ok(&o);
    cr_assert_str_eq(c.relay_unix, "/r.sock");
    cr_assert_str_eq(c.relay_username, "u");
    cr_assert_str_eq(c.relay_password, "p@w");
    tc__config_free(&c);
    o.url = "redis://h?bus_relay=rediss://:pw@127.0.0.1:7777";
    resolve_bad(&o, "TC_BUS_RELAY");
    o.url = "redis://h?bus_relay=redis://:pw@127.0.0.1";
    resolve_bad(&o, "port");
}

/* tc_options_parse_url() keeps a URL with bus_relay= whole: tc_options
 * has no field for it. */
Test(url, bus_relay_keeps_the_url)
{
    char storage[256];
    tc_options o;
    memset(&o, 0, sizeof(o));
    cr_assert_eq(tc_options_parse_url(&o, "redis://h:1?bus_relay=/r.sock",
                                      storage, sizeof(storage)),
                 TC_OK);
    cr_assert_str_eq(o.url, "redis://h:1?bus_relay=/r.sock");
}
