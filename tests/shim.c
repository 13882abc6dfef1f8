/* Runner for tests/shim.h (ThreadSanitizer build only; see there). */
#include "shim.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct tcs_test *tests;
static struct tcs_suite *suites;
static const struct tcs_opts *cur_suite_opts, *cur_test_opts;

void tcs_register_test(struct tcs_test *t)
{
    t->next = tests;
    tests = t;
}

void tcs_register_suite(struct tcs_suite *s)
{
    s->next = suites;
    suites = s;
}

static const struct tcs_opts *suite_opts(const char *name)
{
    for (struct tcs_suite *s = suites; s; s = s->next)
        if (strcmp(s->name, name) == 0)
            return &s->opts;
    return NULL;
}

static void run_fini(void)
{
    if (cur_test_opts && cur_test_opts->fini)
        cur_test_opts->fini();
    if (cur_suite_opts && cur_suite_opts->fini)
        cur_suite_opts->fini();
}

void tcs_skip(const char *why)
{
    fprintf(stderr, "[SKIP] %s\n", why);
    run_fini();
    fflush(NULL);
    _exit(TCS_SKIP_STATUS);
}

void tcs_fail(const char *file, int line, const char *expr, const char *fmt,
              ...)
{
    va_list ap;
    fprintf(stderr, "[----] %s:%d: Assertion Failed\n[----]   %s\n[----]   ",
            file, line, expr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(NULL);
    run_fini();
    _exit(1);
}

/* Glob with '*' only, as Criterion's --filter is used here. */
static int match(const char *p, const char *s)
{
    if (!*p)
        return !*s;
    if (*p == '*')
        return match(p + 1, s) || (*s && match(p, s + 1));
    return *s == *p && match(p + 1, s + 1);
}

static int cmp(const void *a, const void *b)
{
    const struct tcs_test *x = *(struct tcs_test *const *)a,
                          *y = *(struct tcs_test *const *)b;
    int c = strcmp(x->suite, y->suite);
    return c ? c : strcmp(x->name, y->name);
}

int main(int argc, char **argv)
{
    const char *filter = NULL;
    size_t n = 0, i = 0, passed = 0, failed = 0, crashed = 0;
    struct tcs_test **all;
    for (int a = 1; a < argc; a++)
        if (strncmp(argv[a], "--filter=", 9) == 0)
            filter = argv[a] + 9;
        else if (strcmp(argv[a], "--filter") == 0 && a + 1 < argc)
            filter = argv[++a];
    for (struct tcs_test *t = tests; t; t = t->next)
        n++;
    all = calloc(n ? n : 1, sizeof(*all));
    for (struct tcs_test *t = tests; t; t = t->next)
        all[i++] = t;
    qsort(all, n, sizeof(*all), cmp);
    for (i = 0; i < n; i++) {
        struct tcs_test *t = all[i];
        char id[256];
        pid_t pid;
        int st = 0;
        snprintf(id, sizeof(id), "%s/%s", t->suite, t->name);
        if (filter && !match(filter, id))
            continue;
        fflush(NULL);
        pid = fork();
        if (pid == 0) {
            cur_suite_opts = suite_opts(t->suite);
            cur_test_opts = &t->opts;
            if (cur_suite_opts && cur_suite_opts->init)
                cur_suite_opts->init();
            if (t->opts.init)
                t->opts.init();
            t->fn();
            run_fini();
            fflush(NULL);
            _exit(0);
        }
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        if (WIFEXITED(st) && WEXITSTATUS(st) == TCS_SKIP_STATUS) {
            fprintf(stderr, "[SKIP] %s::%s\n", t->suite, t->name);
        } else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            passed++;
            fprintf(stderr, "[PASS] %s::%s\n", t->suite, t->name);
        } else if (WIFEXITED(st)) {
            failed++;
            fprintf(stderr, "[FAIL] %s::%s\n", t->suite, t->name);
        } else {
            crashed++;
            fprintf(stderr, "[FAIL] %s::%s: CRASH (signal %d)\n", t->suite,
                    t->name, WIFSIGNALED(st) ? WTERMSIG(st) : -1);
        }
    }
    fprintf(stderr,
            "[====] Synthesis: Tested: %zu | Passing: %zu | Failing: %zu | "
            "Crashing: %zu\n",
            passed + failed + crashed, passed, failed + crashed, crashed);
    free(all);
    return failed || crashed ? 1 : 0;
}
