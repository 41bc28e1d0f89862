/* Allocation failures, SQLite style: each scenario runs again and again with its nth
 * allocation failing (n = 1, 2, ... until a run makes fewer allocations than n), and every
 * run must end in RD_E_NOMEM or success, never a crash; the ASan build of this test also
 * finds any leak on those paths. malloc, calloc, realloc and strdup of radraft's own code
 * are wrapped at link time (-Wl,--wrap, tests/CMakeLists.txt), and cJSON allocates through
 * the same wrappers (cJSON_InitHooks). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/generator.h"
#include "radraft/labeler.h"
#include "radraft/store.h"
#include "rdtest.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);

static long g_fail_at; /* the allocation that fails, counting from 1; 0: none */
static long g_count;   /* allocations since the scenario began */
static int g_fired;    /* the armed allocation failed */
static int g_in_cjson; /* ...and it was one of cJSON's */

static int fail_now(void)
{
    if (g_fail_at <= 0)
        return 0;
    if (++g_count == g_fail_at) {
        g_fired = 1;
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return fail_now() ? NULL : __real_strdup(s);
}

static void *cjson_malloc(size_t n)
{
    if (fail_now()) {
        g_in_cjson = 1;
        return NULL;
    }
    return __real_malloc(n);
}

typedef rd_status (*scenario)(void);

/* Runs `run` with each of its allocations failing in turn; returns how many failed. A
 * failure inside cJSON_Parse may come back as RD_E_CONFIG ("not valid JSON"): cJSON returns
 * NULL for both, and cannot say which; every other failure must be RD_E_NOMEM. */
static long each_allocation_fails(const char *name, scenario run)
{
    static cJSON_Hooks hooks = {cjson_malloc, free};
    long n, failed = 0, in_cjson = 0;
    cJSON_InitHooks(&hooks);
    for (n = 1; n < 100000; n++) {
        rd_status st;
        g_count = 0;
        g_fired = 0;
        g_in_cjson = 0;
        g_fail_at = n;
        st = run();
        g_fail_at = 0;
        if (!g_fired) {
            CHECK_EQ_INT(st, RD_OK); /* every allocation of the scenario has failed once */
            break;
        }
        failed++;
        in_cjson += g_in_cjson;
        if (st == RD_E_CONFIG && g_in_cjson)
            continue;
        if (st != RD_E_NOMEM)
            fprintf(stderr, "%s: allocation %ld failed, the scenario said %s\n", name, n,
                    rd_status_name(st));
        CHECK_EQ_INT(st, RD_E_NOMEM);
    }
    fprintf(stderr, "%s: %ld allocations, each failed once (%ld of them cJSON's)\n", name, failed,
            in_cjson);
    CHECK(n < 100000);
    return failed;
}

static rd_status label_scenario(void)
{
    rd_labeler *lab = NULL;
    rd_labels labels;
    rd_error err;
    rd_status st = rd_labeler_create_from_json(&lab, NULL, "built-in", &err);
    if (st == RD_OK)
        st = rd_labeler_label(lab, "Large right pleural effusion. No pneumothorax.",
                              "Cardiomegaly, possibly a small nodule.", &labels, &err);
    rd_labeler_free(lab);
    return st;
}

RD_TEST(labeler_allocation_failures)
{
    CHECK(each_allocation_fails("labeler", label_scenario) > 0);
}

static rd_status draft_scenario(void)
{
    rd_generator *gen = NULL;
    rd_thresholds th;
    rd_draft d;
    rd_error err;
    double scores[RD_FINDING_N_ABNORMAL];
    for (int i = 0; i < RD_FINDING_N_ABNORMAL; i++)
        scores[i] = i % 3 == 0 ? 0.9 : i % 3 == 1 ? 0.5 : 0.05;
    memset(&d, 0, sizeof d);
    rd_thresholds_builtin(&th);
    rd_status st = rd_generator_create_from_json(&gen, NULL, "built-in", &err);
    if (st == RD_OK)
        st = rd_generator_draft_scores(gen, scores, &th, NULL, 0, NULL, &d, &err);
    rd_draft_free(&d);
    rd_generator_free(gen);
    return st;
}

RD_TEST(generator_allocation_failures)
{
    CHECK(each_allocation_fails("generator", draft_scenario) > 0);
}

static const char *g_store_dir;

static rd_status store_scenario(void)
{
    static const char file[] = "PREAMBLE-META|dataset bytes";
    rd_store_instance in = {
        "1.2.3", "1.2.3.4", "1.2.3.4.5", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.1.2.1",
        "OT",    "UNIT"};
    rd_store *s = NULL;
    rd_error err;
    char **paths = NULL;
    int n = 0;
    rd_status st = rd_store_open(&s, g_store_dir, NULL, &err);
    if (st == RD_OK)
        st = rd_store_put(s, &in, file, sizeof file - 1, 14, NULL, &err);
    if (st == RD_OK)
        st = rd_store_study_files(s, "1.2.3", &paths, &n, &err);
    rd_store_free_paths(paths, n);
    if (st == RD_OK)
        st = rd_store_queue_stable(s, rd_store_now() + 1000, 0, NULL, &err);
    if (st == RD_OK)
        st = rd_store_outbox_add(s, "/x/sr.dcm", "PACS@h:104", rd_store_now(), NULL, &err);
    rd_store_close(s);
    return st;
}

RD_TEST(store_allocation_failures)
{
    g_store_dir = rd_test_tmpdir("alloc_faults_store");
    CHECK(each_allocation_fails("store", store_scenario) > 0);
}

RD_TEST_MAIN()
