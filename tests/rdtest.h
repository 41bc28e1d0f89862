/* radraft's minimal test harness.
 *
 * A test file declares cases with RD_TEST(name) { ... } at the start of a line and ends with
 * RD_TEST_MAIN(). CMake finds the cases in the source and registers each as its own CTest
 * test: `test_file case`. Without an argument the executable runs every case.
 * CHECK* record a failure and continue; REQUIRE* stop the case.
 */
#ifndef RADRAFT_RDTEST_H
#define RADRAFT_RDTEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "radraft/error.h"

typedef void (*rd_test_fn)(void);
typedef struct rd_test_case {
    const char *name;
    rd_test_fn fn;
} rd_test_case;

static rd_test_case rd_test_cases[256];
static int rd_test_ncases;
static int rd_test_failures;

#define RD_TEST(name)                                                                              \
    static void rd_test_##name(void);                                                              \
    __attribute__((constructor)) static void rd_test_register_##name(void)                         \
    {                                                                                              \
        if (rd_test_ncases < 256)                                                                  \
            rd_test_cases[rd_test_ncases++] = (rd_test_case){#name, rd_test_##name};               \
    }                                                                                              \
    static void rd_test_##name(void)

#define RD_FAIL_AT(...)                                                                            \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        rd_test_failures++;                                                                        \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            RD_FAIL_AT("CHECK failed: %s", #cond);                                                 \
    } while (0)
#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond))                                                                               \
            RD_FAIL_AT(__VA_ARGS__);                                                               \
    } while (0)
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            RD_FAIL_AT("REQUIRE failed: %s", #cond);                                               \
            return;                                                                                \
        }                                                                                          \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                      \
        if (va_ != vb_)                                                                            \
            RD_FAIL_AT("CHECK_EQ_INT failed: %s == %lld, %s == %lld", #a, va_, #b, vb_);           \
    } while (0)
#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *sa_ = (a), *sb_ = (b);                                                         \
        if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0)                                                 \
            RD_FAIL_AT("CHECK_STR failed: %s == \"%s\", expected \"%s\"", #a,                      \
                       sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");                                \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double da_ = (double)(a), db_ = (double)(b);                                               \
        if (!(fabs(da_ - db_) <= (tol)))                                                           \
            RD_FAIL_AT("CHECK_NEAR failed: %s == %g, %s == %g (tolerance %g)", #a, da_, #b, db_,   \
                       (double)(tol));                                                             \
    } while (0)
/* Checks an rd_status and prints the error's message when it differs. */
#define CHECK_OK(expr, errp)                                                                       \
    do {                                                                                           \
        rd_status st_ = (expr);                                                                    \
        if (st_ != RD_OK)                                                                          \
            RD_FAIL_AT("%s returned %s: %s", #expr, rd_status_name(st_), rd_error_message(errp));  \
    } while (0)
#define REQUIRE_OK(expr, errp)                                                                     \
    do {                                                                                           \
        rd_status st_ = (expr);                                                                    \
        if (st_ != RD_OK) {                                                                        \
            RD_FAIL_AT("%s returned %s: %s", #expr, rd_status_name(st_), rd_error_message(errp));  \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* The shared data folder (../shared/data), which tests that need it require: when it is
 * missing the test fails, loudly, rather than passing without having checked anything. */
static inline const char *rd_test_shared_data(void)
{
    const char *env = getenv("RADRAFT_SHARED_DATA");
    const char *dir = env && env[0] ? env : RD_TEST_SHARED_DATA;
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr,
                "FATAL: shared test data not found at '%s'. These tests need ../shared/data "
                "beside the project (or RADRAFT_SHARED_DATA set).\n",
                dir);
        exit(1);
    }
    return dir;
}

/* A fresh, empty scratch folder for this test case under the build tree. */
static inline const char *rd_test_tmpdir(const char *name)
{
    static char path[1024];
    char cmd[1200];
    if (snprintf(path, sizeof path, "%s/tests/tmp/%s", RD_TEST_BINARY_DIR, name) >=
            (int)sizeof path ||
        snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", path, path) >= (int)sizeof cmd ||
        system(cmd) != 0) {
        fprintf(stderr, "FATAL: cannot create %s\n", path);
        exit(1);
    }
    return path;
}

#define RD_TEST_MAIN()                                                                             \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        int ran = 0;                                                                               \
        for (int i = 0; i < rd_test_ncases; i++) {                                                 \
            if (argc > 1 && strcmp(argv[1], rd_test_cases[i].name) != 0)                           \
                continue;                                                                          \
            int before = rd_test_failures;                                                         \
            rd_test_cases[i].fn();                                                                 \
            fprintf(stderr, "%s %s\n", rd_test_failures == before ? "PASS" : "FAIL",               \
                    rd_test_cases[i].name);                                                        \
            ran++;                                                                                 \
        }                                                                                          \
        if (ran == 0) {                                                                            \
            fprintf(stderr, "no test case named '%s'\n", argc > 1 ? argv[1] : "");                 \
            return 2;                                                                              \
        }                                                                                          \
        return rd_test_failures ? 1 : 0;                                                           \
    }

#endif
