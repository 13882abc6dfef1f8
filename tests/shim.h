/*
 * A minimal stand-in for the part of Criterion's API our tests use, for the
 * ThreadSanitizer build only: Criterion cannot start under TSan (its boxfort
 * arena maps memory at random fixed addresses that TSan reserves; upstream
 * Snaipe/Criterion#274). Same test sources, same semantics where it matters:
 * every test runs in its own forked process, suite then test .init before,
 * test then suite .fini after (also after a failed assertion), and a
 * Criterion-style "Synthesis" line at the end.
 */
#ifndef TC_TEST_SHIM_H
#define TC_TEST_SHIM_H

#include <stdio.h>
#include <string.h>

struct tcs_opts {
    void (*init)(void);
    void (*fini)(void);
    double timeout;
};

struct tcs_test {
    const char *suite, *name;
    void (*fn)(void);
    struct tcs_opts opts;
    struct tcs_test *next;
};

struct tcs_suite {
    const char *name;
    struct tcs_opts opts;
    struct tcs_suite *next;
};

void tcs_register_test(struct tcs_test *t);
void tcs_register_suite(struct tcs_suite *s);
_Noreturn void tcs_fail(const char *file, int line, const char *expr,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define TestSuite(s, ...)                                                    \
    static void __attribute__((constructor)) tcs_suite_reg_##s(void)         \
    {                                                                        \
        static struct tcs_suite su = {#s, {__VA_ARGS__}, NULL};              \
        tcs_register_suite(&su);                                             \
    }                                                                        \
    extern int tcs_suite_dummy_##s

#define Test(s, n, ...)                                                      \
    static void tcs_fn_##s##_##n(void);                                      \
    static void __attribute__((constructor)) tcs_reg_##s##_##n(void)         \
    {                                                                        \
        static struct tcs_test t = {#s, #n, tcs_fn_##s##_##n, {__VA_ARGS__}, \
                                    NULL};                                   \
        tcs_register_test(&t);                                               \
    }                                                                        \
    static void tcs_fn_##s##_##n(void)

#define cr_assert(cond, ...)                                                 \
    do {                                                                     \
        if (!(cond))                                                         \
            tcs_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);             \
    } while (0)
/* Skipped: neither passed nor failed, as with Criterion. */
#define TCS_SKIP_STATUS 77
void tcs_skip(const char *why) __attribute__((noreturn));
#define cr_skip_test(...) tcs_skip("" __VA_ARGS__)
#define cr_expect cr_assert
#define cr_expect_eq cr_assert_eq
#define cr_expect_neq cr_assert_neq
#define cr_expect_str_eq cr_assert_str_eq
#define cr_expect_geq cr_assert_geq
#define cr_assert_not(cond, ...) cr_assert(!(cond), __VA_ARGS__)
#define cr_assert_fail(...) tcs_fail(__FILE__, __LINE__, "fail", "" __VA_ARGS__)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_null(p, ...) cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)                                          \
    cr_assert((a) != NULL && (b) != NULL && strcmp((a), (b)) == 0,           \
              __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...)                                         \
    cr_assert((a) != NULL && (b) != NULL && strcmp((a), (b)) != 0,           \
              __VA_ARGS__)
#define cr_assert_str_empty(a, ...) cr_assert((a)[0] == '\0', __VA_ARGS__)
#define cr_assert_str_not_empty(a, ...) cr_assert((a)[0] != '\0', __VA_ARGS__)
#define cr_assert_arr_eq(a, b, n, ...)                                       \
    cr_assert(memcmp((a), (b), (n)) == 0, __VA_ARGS__)
#define cr_assert_arr_neq(a, b, n, ...)                                      \
    cr_assert(memcmp((a), (b), (n)) != 0, __VA_ARGS__)

#endif
