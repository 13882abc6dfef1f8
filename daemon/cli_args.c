/* tiercache: the command line and its secrets. Passwords are read from the
 * environment or a file, never taken from the command line, where `ps`
 * would show them to every user of the host. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_usage(void *fp)
{
    FILE *f = fp;
    fputs(
        "usage: tiercache [target] COMMAND [options]\n"
        "\n"
        "Target (default: Redis directly, from REDIS_URL and the library's\n"
        "other environment variables):\n"
        "  --daemon PATH|HOST:PORT   a tiercached (unix socket or TCP)\n"
        "  --password-file FILE      its --requirepass (first line); or\n"
        "                            TIERCACHE_PASSWORD in the environment\n"
        "  --redis-url URL           Redis directly (no password in it: use\n"
        "                            REDIS_URL or REDIS_PASSWORD in the\n"
        "                            environment, or --redis-password-file)\n"
        "  --redis-password-file FILE\n"
        "  --channel NAME, --key-prefix P   as the fleet's instances use\n"
        "  --timeout-ms MS           connect and wait bound (default 2000)\n"
        "\n"
        "Commands:\n"
        "  health                    exit 0 healthy, 1 degraded (the target\n"
        "                            answers but Redis or the invalidation\n"
        "                            bus does not), 2 down (unreachable)\n"
        "  stats [--interval S [--count N]]\n"
        "                            counters; with --interval one line per\n"
        "                            interval: rates per second from the\n"
        "                            counter deltas, hit ratio per tier,\n"
        "                            invalidation lag\n"
        "  clear --pattern GLOB | --prefix P | --tag T [--tag T ...] |\n"
        "        --all | KEY...      delete from Redis and every L1 (--all:\n"
        "                            every L1 only, Redis untouched)\n"
        "  warm --file FILE [--ttl-ms MS] [--batch N] [--quiet]\n"
        "                            store every \"key<TAB>value\" line (or\n"
        "                            \"key value\": the first space); progress\n"
        "                            on stderr after each batch\n"
        "  warm --keys FILE          (--daemon) read each listed key through\n"
        "                            the daemon, filling its L1 from Redis\n"
        "\n"
        "Other commands exit 0 done, 1 failed, 2 target unreachable; 64 for\n"
        "a usage error.\n",
        f);
}

/* The first line of `path`, malloc'd, or NULL after printing why. */
static char *read_secret(const char *path)
{
    FILE *f = fopen(path, "r");
    char buf[1024], *nl;
    if (!f) {
        cli_err("%s: %s", path, strerror(errno));
        return NULL;
    }
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = '\0';
    fclose(f);
    if ((nl = strpbrk(buf, "\r\n")))
        *nl = '\0';
    if (!buf[0]) {
        cli_err("%s: no password on its first line", path);
        return NULL;
    }
    return strdup(buf);
}

/* Does a URL carry a secret (user:password@ or a sentinel_password=)? */
static int url_has_secret(const char *url)
{
    const char *p = strstr(url, "://"), *end, *at;
    if (strstr(url, "password="))
        return 1;
    if (!p)
        return 0;
    p += 3;
    end = p + strcspn(p, "/?");
    at = memchr(p, '@', (size_t)(end - p));
    return at && memchr(p, ':', (size_t)(at - p)) != NULL;
}

static int number(const char *opt, const char *s, double min, double max,
                  double *out)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || v < min || v > max) {
        cli_err("%s: '%s' is not a number in [%g, %g]", opt, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

enum {
    O_DAEMON = 256, O_PASSFILE, O_URL, O_RPASSFILE, O_CHANNEL, O_PREFIXK,
    O_TIMEOUT, O_INTERVAL, O_COUNT, O_PATTERN, O_PREFIX, O_TAG, O_ALL,
    O_FILE, O_KEYS, O_TTL, O_BATCH, O_QUIET, O_HELP
};

static const struct option opts[] = {
    {"daemon", required_argument, NULL, O_DAEMON},
    {"password-file", required_argument, NULL, O_PASSFILE},
    {"redis-url", required_argument, NULL, O_URL},
    {"redis-password-file", required_argument, NULL, O_RPASSFILE},
    {"channel", required_argument, NULL, O_CHANNEL},
    {"key-prefix", required_argument, NULL, O_PREFIXK},
    {"timeout-ms", required_argument, NULL, O_TIMEOUT},
    {"interval", required_argument, NULL, O_INTERVAL},
    {"count", required_argument, NULL, O_COUNT},
    {"pattern", required_argument, NULL, O_PATTERN},
    {"prefix", required_argument, NULL, O_PREFIX},
    {"tag", required_argument, NULL, O_TAG},
    {"all", no_argument, NULL, O_ALL},
    {"file", required_argument, NULL, O_FILE},
    {"keys", required_argument, NULL, O_KEYS},
    {"ttl-ms", required_argument, NULL, O_TTL},
    {"batch", required_argument, NULL, O_BATCH},
    {"quiet", no_argument, NULL, O_QUIET},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

/* Which options each command takes (the target's are everyone's). */
static int allowed(const char *cmd, int o)
{
    if (o < O_INTERVAL || o == O_HELP)
        return 1;
    if (!strcmp(cmd, "stats"))
        return o == O_INTERVAL || o == O_COUNT;
    if (!strcmp(cmd, "clear"))
        return o == O_PATTERN || o == O_PREFIX || o == O_TAG || o == O_ALL;
    if (!strcmp(cmd, "warm"))
        return o == O_FILE || o == O_KEYS || o == O_TTL || o == O_BATCH ||
               o == O_QUIET;
    return 0;
}

static int check_command(cli_args *a)
{
    int modes;
    if (!strcmp(a->cmd, "clear")) {
        modes = !!a->pattern + !!a->prefix + !!a->ntags + a->all +
                !!a->nkeys;
        if (modes != 1) {
            cli_err("clear: give one of --pattern, --prefix, --tag, --all "
                    "or keys");
            return CLI_USAGE;
        }
    } else if (a->nkeys) {
        cli_err("%s: unexpected argument '%s'", a->cmd, a->keys[0]);
        return CLI_USAGE;
    }
    if (!strcmp(a->cmd, "warm") && !!a->file + !!a->keys_file != 1) {
        cli_err("warm: give --file FILE or --keys FILE");
        return CLI_USAGE;
    }
    if (!strcmp(a->cmd, "warm") && a->keys_file && !a->daemon) {
        cli_err("warm --keys reads keys through a daemon into its L1: give "
                "--daemon (against Redis, warm --file stores key/value "
                "lines)");
        return CLI_USAGE;
    }
    if (a->count && !a->interval_s) {
        cli_err("stats: --count needs --interval");
        return CLI_USAGE;
    }
    return CLI_OK;
}

int cli_args_parse(int argc, char **argv, cli_args *a, int *help_rc)
{
    int o, li = 0;
    double d;
    const char *env;
    memset(a, 0, sizeof(*a));
    a->timeout_ms = 2000;
    *help_rc = -1;
    opterr = 0;
    /* Options and the command may come in any order (GNU permutation). */
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case O_DAEMON: a->daemon = optarg; break;
        case O_PASSFILE:
            free(a->daemon_password);
            if (!(a->daemon_password = read_secret(optarg)))
                return CLI_USAGE;
            break;
        case O_URL:
            if (url_has_secret(optarg)) {
                cli_err("--redis-url: no password on the command line (every "
                        "user can read it with ps): use REDIS_URL or "
                        "REDIS_PASSWORD in the environment, or "
                        "--redis-password-file");
                return CLI_USAGE;
            }
            a->redis_url = optarg;
            break;
        case O_RPASSFILE:
            free(a->redis_password);
            if (!(a->redis_password = read_secret(optarg)))
                return CLI_USAGE;
            break;
        case O_CHANNEL: a->channel = optarg; break;
        case O_PREFIXK: a->key_prefix = optarg; break;
        case O_TIMEOUT:
            if (number("--timeout-ms", optarg, 1, 600000, &d))
                return CLI_USAGE;
            a->timeout_ms = (int)d;
            break;
        case O_INTERVAL:
            if (number("--interval", optarg, 0.05, 3600, &d))
                return CLI_USAGE;
            a->interval_s = d;
            break;
        case O_COUNT:
            if (number("--count", optarg, 1, 1e9, &d))
                return CLI_USAGE;
            a->count = (long)d;
            break;
        case O_PATTERN: a->pattern = optarg; break;
        case O_PREFIX: a->prefix = optarg; break;
        case O_TAG: {
            const char **t = realloc(a->tags, (a->ntags + 1) * sizeof(*t));
            if (!t) {
                cli_err("out of memory");
                return CLI_USAGE;
            }
            a->tags = t;
            a->tags[a->ntags++] = optarg;
            break;
        }
        case O_ALL: a->all = 1; break;
        case O_FILE: a->file = optarg; break;
        case O_KEYS: a->keys_file = optarg; break;
        case O_TTL:
            if (number("--ttl-ms", optarg, 1, (double)TC_TTL_MAX_MS, &d))
                return CLI_USAGE;
            a->ttl_ms = (uint64_t)d;
            break;
        case O_BATCH:
            if (number("--batch", optarg, 1, 100000, &d))
                return CLI_USAGE;
            a->batch = (size_t)d;
            break;
        case O_QUIET: a->quiet = 1; break;
        case O_HELP:
            cli_usage(stdout);
            *help_rc = 0;
            return CLI_OK;
        default:
            cli_err("unknown option or missing value: %s",
                    argv[optind - 1]);
            return CLI_USAGE;
        }
    }
    if (optind >= argc) {
        cli_usage(stderr);
        return CLI_USAGE;
    }
    a->cmd = argv[optind];
    if (strcmp(a->cmd, "health") && strcmp(a->cmd, "stats") &&
        strcmp(a->cmd, "clear") && strcmp(a->cmd, "warm")) {
        cli_err("unknown command '%s' (health, stats, clear, warm)", a->cmd);
        return CLI_USAGE;
    }
    a->keys = argv + optind + 1;
    a->nkeys = (size_t)(argc - optind - 1);
    /* Options given to the wrong command: parse again to name them. */
    optind = 0;
    while ((o = getopt_long(argc, argv, "", opts, &li)) != -1)
        if (!allowed(a->cmd, o)) {
            cli_err("%s: option --%s does not apply", a->cmd, opts[li].name);
            return CLI_USAGE;
        }
    if (!a->daemon_password && a->daemon) {
        if ((env = getenv("TIERCACHE_PASSWORD")) && *env)
            a->daemon_password = strdup(env);
        else if ((env = getenv("TIERCACHE_PASSWORD_FILE")) && *env &&
                 !(a->daemon_password = read_secret(env)))
            return CLI_USAGE;
    }
    return check_command(a);
}

void cli_args_free(cli_args *a)
{
    if (a->daemon_password) {
        memset(a->daemon_password, 0, strlen(a->daemon_password));
        free(a->daemon_password);
    }
    if (a->redis_password) {
        memset(a->redis_password, 0, strlen(a->redis_password));
        free(a->redis_password);
    }
    free(a->tags);
}
