/* Allocation failures, SQLite style: each scenario runs again and again with its nth
 * allocation failing (n = 1, 2, ... until a run makes fewer allocations than n), and every
 * run must end in RD_E_NOMEM or success, never a crash; the ASan build of this test also
 * finds any leak on those paths. Two kinds of allocation are counted, in one sequence:
 *   - malloc, calloc, realloc and strdup of radraft's own code (src/ and pacs/), wrapped at
 *     link time (-Wl,--wrap, tests/CMakeLists.txt); cJSON allocates through the same
 *     wrappers (cJSON_InitHooks);
 *   - every C++ allocation of the process: the test replaces the global operator new and
 *     delete (alloc_faults_new.cc), so that pacs/, DCMTK's shared libraries and the C++
 *     standard library fail too; an armed failure throws std::bad_alloc (the nothrow forms
 *     return NULL).
 * The C libraries radraft links as shared libraries (SQLite, libpng, OpenJPEG, zlib,
 * OpenBLAS) allocate with their own, unwrapped calls: they are not counted.
 *
 * Before its countdown every scenario runs once unarmed, so that what a process does once
 * (DCMTK's data dictionary, the code tables, the encoder's first forward pass) is done; the
 * countdown is over what a run does every time. Counting is per process, not per thread:
 * each scenario runs on one thread (the pipeline's encoder with one thread). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "radraft/codes.h"
#include "radraft/config.h"
#include "radraft/dicom.h"
#include "radraft/fhir.h"
#include "radraft/generator.h"
#include "radraft/labeler.h"
#include "radraft/log.h"
#include "radraft/nn.h"
#include "radraft/pipeline.h"
#include "radraft/samples.h"
#include "radraft/sr.h"
#include "radraft/store.h"
#include "radraft/tempname.h"
#include "rdtest.h"
#include "base/util.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);

static int g_armed;       /* allocations are counted (and one may fail) */
static long g_fail_at;    /* the allocation that fails, counting from 1; 0: none */
static long g_count;      /* allocations that may fail since the run began */
static long g_total;      /* every allocation since the run began */
static long g_total_cxx;  /* ...of them C++ allocations (operator new) */
static long g_cxx_stride; /* only every g_cxx_stride-th C++ allocation may fail (0, 1: all) */
static int g_fired;       /* the armed allocation failed */
static int g_fired_kind;  /* ...as malloc (0), a nothrow operator new (1), a throwing one (2) */
static int g_in_cjson;    /* ...and it was one of cJSON's */

static long g_fired_at; /* the allocation that failed (g_fail_at, or a later one) */
static long g_in_dtor;  /* allocations not failed for being in a destructor */
static long g_in_dcmtk; /* ...for being DCMTK's, in the leak-checked build */
static long g_trace_at; /* RD_ALLOC_FAULTS_TRACE: the allocation whose stack is printed */

/* The AddressSanitizer build checks for leaks, and DCMTK is not exception-safe: where one of
 * its own allocations throws, it loses what it had allocated before (a new element not yet
 * inserted, the half of a DcmFileFormat made by its constructor, a tree node not yet
 * linked: DcmItem::readSubElement, DSRDocument::write and ::read,
 * DSRDocumentSubTree::addContentItem, DcmItem::putAndInsertString and more), which no code
 * of radraft's can free. So in that build a throwing operator new called by DCMTK itself is
 * not failed; its nothrow ones (which DCMTK handles), radraft's own throwing ones and every
 * malloc still are. The normal build fails them all, and checks everything else (status, no
 * crash, no partial or wrong output). */
#if defined(__SANITIZE_ADDRESS__)
#define LEAK_CHECKED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LEAK_CHECKED 1
#endif
#endif
#ifndef LEAK_CHECKED
#define LEAK_CHECKED 0
#endif

int rd_alloc_fault_in_destructor(void);          /* alloc_faults_new.cc */
int rd_alloc_fault_in_dcmtk(const void *caller); /* alloc_faults_new.cc */

/* cxx: 0 for malloc and friends, 1 for a nothrow operator new, 2 for one that throws, called
 * from `caller`. */
static int fail_now(int cxx, const void *caller)
{
    if (!g_armed)
        return 0;
    g_total++;
    g_total_cxx += cxx != 0;
    if (cxx && g_cxx_stride > 1 && g_total_cxx % g_cxx_stride != 1)
        return 0;
    if (++g_count != g_fail_at)
        return 0;
    /* A throwing allocation inside a destructor would end the process by the language's
     * rules (destructors are noexcept), and one of DCMTK's would leak in the leak-checked
     * build: the next one fails instead. */
    if (cxx == 2 && rd_alloc_fault_in_destructor()) {
        g_in_dtor++;
        g_fail_at++;
        return 0;
    }
    if (cxx == 2 && LEAK_CHECKED && rd_alloc_fault_in_dcmtk(caller)) {
        g_in_dcmtk++;
        g_fail_at++;
        return 0;
    }
    g_fired = 1;
    g_fired_at = g_count;
    g_fired_kind = cxx;
    if (g_trace_at == g_count) {
        void *frames[64];
        fprintf(stderr, "allocation %ld fails here:\n", g_count);
        backtrace_symbols_fd(frames, backtrace(frames, 64), 2);
    }
    return 1;
}

/* For alloc_faults_new.cc: 1 when this operator new is to fail. */
int rd_alloc_fault_now(int throwing, const void *caller);
int rd_alloc_fault_now(int throwing, const void *caller)
{
    return fail_now(throwing ? 2 : 1, caller);
}

void *__wrap_malloc(size_t n)
{
    return fail_now(0, NULL) ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return fail_now(0, NULL) ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_now(0, NULL) ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return fail_now(0, NULL) ? NULL : __real_strdup(s);
}

static void *cjson_malloc(size_t n)
{
    if (fail_now(0, NULL)) {
        g_in_cjson = 1;
        return NULL;
    }
    return __real_malloc(n);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef rd_status (*scenario)(void);

/* The error of the scenario's run, printed when its status is not the expected one. */
static rd_error g_err;

/* What a scenario is: `run` is the work under the countdown; `before` (may be NULL) runs
 * unarmed ahead of each run, `after` (may be NULL) unarmed after it with the run's status,
 * to check what the run left (no partial file after a failure, a valid one after success).
 * With `stride` > 1 the countdown fails allocation 1, 1 + stride, 1 + 2 stride, ... rather
 * than each, and with `cxx_stride` > 1 only C++ allocation 1, 1 + cxx_stride, ... may fail
 * at all (the others are counted only): for runs of tens of thousands of allocations, whose
 * countdown would take minutes (each run costs the work up to its failure). */
typedef struct fault_scenario {
    const char *name;
    scenario run;
    void (*before)(void);
    void (*after)(rd_status st);
    long stride;
    long cxx_stride;
} fault_scenario;

typedef struct fault_tally {
    long runs;      /* runs with a failed allocation */
    long c;         /* allocations of radraft's C code (and cJSON) in the run that succeeded */
    long cxx;       /* C++ allocations in that run */
    long recovered; /* nothrow failures after which the scenario still succeeded */
    long relabeled; /* nothrow failures that DCMTK reported as another error */
    double sec;     /* the whole countdown */
} fault_tally;

/* Runs the scenario with each of its allocations failing in turn; fills `t`. What a run
 * must end in depends on what failed:
 *   - malloc and friends, or an operator new that throws: RD_E_NOMEM. (A failure inside
 *     cJSON_Parse may come back as RD_E_CONFIG, "not valid JSON": cJSON returns NULL for
 *     both and cannot say which.)
 *   - a nothrow operator new: DCMTK allocates its value buffers so and reports a NULL as the
 *     condition EC_MemoryExhausted, which radraft turns into RD_E_NOMEM. On some paths it
 *     reports another condition instead (dcmsr's setters drop the condition of the value
 *     they store, and the document later fails with "Invalid stream", "Invalid Value" or
 *     "Invalid Document"; a file whose value buffer could not be made reads as "premature
 *     end of stream"), and on others it recovers (without the meta header's group length it
 *     reads the header without it). So such a run ends in RD_E_NOMEM, in another error
 *     (counted: `relabeled`), or in success, whose output `after` checks (`recovered`).
 * Set RD_ALLOC_FAULTS_VERBOSE to see every run that did not end in RD_E_NOMEM, and
 * RD_ALLOC_FAULTS_TRACE=N for the stack of the Nth allocation when it fails. */
static void each_allocation_fails(const fault_scenario *sc, fault_tally *t)
{
    static cJSON_Hooks hooks = {cjson_malloc, free};
    long n, in_cjson = 0, cxx_failed = 0;
    double t0;
    rd_status st;
    const char *trace = getenv("RD_ALLOC_FAULTS_TRACE");
    int verbose = getenv("RD_ALLOC_FAULTS_VERBOSE") != NULL;
    cJSON_InitHooks(&hooks);
    memset(t, 0, sizeof *t);
    g_in_dtor = g_in_dcmtk = 0;
    g_trace_at = trace ? strtol(trace, NULL, 10) : 0;
    /* The unarmed warm-up: one-time state is made here, outside the countdown, and `after`
     * sees a run without failure first (the reference of what success looks like). */
    g_fired = 0;
    if (sc->before)
        sc->before();
    st = sc->run();
    if (sc->after)
        sc->after(st);
    CHECK_EQ_INT(st, RD_OK);
    t0 = now_s();
    for (n = 1; n<1000000; n += sc->stride> 1 ? sc->stride : 1) {
        if (sc->before)
            sc->before();
        g_count = g_total = g_total_cxx = 0;
        g_fired = g_fired_kind = g_in_cjson = 0;
        g_fail_at = n;
        g_cxx_stride = sc->cxx_stride;
        g_armed = 1;
        st = sc->run();
        g_armed = 0;
        g_fail_at = 0;
        if (sc->after)
            sc->after(st);
        if (!g_fired) {
            CHECK_EQ_INT(st, RD_OK); /* every allocation of the scenario has failed once */
            break;
        }
        t->runs++;
        n = g_fired_at; /* those between were in destructors: the runs for them are this one */
        in_cjson += g_in_cjson;
        cxx_failed += g_fired_kind != 0;
        if (st == RD_E_NOMEM || (st == RD_E_CONFIG && g_in_cjson))
            continue;
        if (g_fired_kind == 1) {
            if (st == RD_OK)
                t->recovered++;
            else
                t->relabeled++;
            if (verbose)
                fprintf(stderr, "%s: nothrow allocation %ld failed, the scenario said %s: %s\n",
                        sc->name, n, rd_status_name(st),
                        st == RD_OK ? "(recovered)" : rd_error_message(&g_err));
            continue;
        }
        fprintf(stderr, "%s: allocation %ld (%s) failed, the scenario said %s: %s\n", sc->name, n,
                g_fired_kind ? "operator new" : "malloc", rd_status_name(st),
                st == RD_OK ? "" : rd_error_message(&g_err));
        CHECK_EQ_INT(st, RD_E_NOMEM);
    }
    t->sec = now_s() - t0;
    t->c = g_total - g_total_cxx;
    t->cxx = g_total_cxx;
    fprintf(stderr,
            "%s: %ld allocations a run (%ld C, %ld C++); %ld failed in turn (%ld C++, %ld in "
            "cJSON%s%s), %ld left alone in destructors and %ld DCMTK's (leak-checked build); "
            "after a failed nothrow new %ld runs succeeded, %ld ended in another error than "
            "RD_E_NOMEM; %.1f s\n",
            sc->name, g_total, t->c, t->cxx, t->runs, cxx_failed, in_cjson,
            sc->cxx_stride > 1 ? "; one C++ allocation in each C++ stride" : "",
            sc->stride > 1 ? "; one in each stride" : "", g_in_dtor, g_in_dcmtk, t->recovered,
            t->relabeled, t->sec);
    CHECK(n < 1000000);
}

/* ---- C modules ---- */

static rd_status label_scenario(void)
{
    rd_labeler *lab = NULL;
    rd_labels labels;
    rd_status st = rd_labeler_create_from_json(&lab, NULL, "built-in", &g_err);
    if (st == RD_OK)
        st = rd_labeler_label(lab, "Large right pleural effusion. No pneumothorax.",
                              "Cardiomegaly, possibly a small nodule.", &labels, &g_err);
    rd_labeler_free(lab);
    return st;
}

RD_TEST(labeler_allocation_failures)
{
    fault_scenario sc = {"labeler", label_scenario, NULL, NULL, 1, 1};
    fault_tally t;
    each_allocation_fails(&sc, &t);
    CHECK(t.runs > 0);
}

static rd_status draft_scenario(void)
{
    rd_generator *gen = NULL;
    rd_thresholds th;
    rd_draft d;
    double scores[RD_FINDING_N_ABNORMAL];
    for (int i = 0; i < RD_FINDING_N_ABNORMAL; i++)
        scores[i] = i % 3 == 0 ? 0.9 : i % 3 == 1 ? 0.5 : 0.05;
    memset(&d, 0, sizeof d);
    rd_thresholds_builtin(&th);
    rd_status st = rd_generator_create_from_json(&gen, NULL, "built-in", &g_err);
    if (st == RD_OK)
        st = rd_generator_draft_scores(gen, scores, &th, NULL, 0, NULL, &d, &g_err);
    rd_draft_free(&d);
    rd_generator_free(gen);
    return st;
}

RD_TEST(generator_allocation_failures)
{
    fault_scenario sc = {"generator", draft_scenario, NULL, NULL, 1, 1};
    fault_tally t;
    each_allocation_fails(&sc, &t);
    CHECK(t.runs > 0);
}

static const char *g_store_dir;

static rd_status store_scenario(void)
{
    static const char file[] = "PREAMBLE-META|dataset bytes";
    rd_store_instance in = {
        "1.2.3", "1.2.3.4", "1.2.3.4.5", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.1.2.1",
        "OT",    "UNIT"};
    rd_store *s = NULL;
    char **paths = NULL;
    int n = 0;
    rd_status st = rd_store_open(&s, g_store_dir, NULL, &g_err);
    if (st == RD_OK)
        st = rd_store_put(s, &in, file, sizeof file - 1, 14, NULL, &g_err);
    if (st == RD_OK)
        st = rd_store_study_files(s, "1.2.3", &paths, &n, &g_err);
    rd_store_free_paths(paths, n);
    if (st == RD_OK)
        st = rd_store_queue_stable(s, rd_store_now() + 1000, 0, NULL, &g_err);
    if (st == RD_OK)
        st = rd_store_outbox_add(s, "/x/sr.dcm", "PACS@h:104", rd_store_now(), NULL, &g_err);
    rd_store_close(s);
    return st;
}

RD_TEST(store_allocation_failures)
{
    fault_scenario sc = {"store", store_scenario, NULL, NULL, 1, 1};
    fault_tally t;
    g_store_dir = rd_test_tmpdir("alloc_faults_store");
    each_allocation_fails(&sc, &t);
    CHECK(t.runs > 0);
}

/* ---- the SR writers (pacs/sr.cc over DCMTK) ---- */

/* The files of a scenario's folder: its sources, the inputs it was given, and what the
 * runs wrote. */
static char g_dir[1024], g_pa[1100], g_lat[1100], g_input[1100], g_out[1100];
static rd_sr_result g_res;

static const rd_sr_codes *codes(void)
{
    static rd_sr_codes c;
    static int loaded;
    rd_error err;
    if (!loaded) {
        if (rd_sr_codes_load(&c, NULL, &err) != RD_OK) {
            fprintf(stderr, "rd_sr_codes_load: %s\n", rd_error_message(&err));
            abort();
        }
        loaded = 1;
    }
    return &c;
}

/* A fresh folder with the PA and lateral of sample patient RDS0002 (JPEG Lossless and RLE,
 * 64 rows) in it. */
static void sample_study(const char *name)
{
    rd_samples_options so;
    rd_error err;
    rd_strlcpy(g_dir, rd_test_tmpdir(name), sizeof g_dir);
    snprintf(g_pa, sizeof g_pa, "%s/pa.dcm", g_dir);
    snprintf(g_lat, sizeof g_lat, "%s/lateral.dcm", g_dir);
    snprintf(g_out, sizeof g_out, "%s/out-sr.dcm", g_dir);
    g_input[0] = '\0';
    rd_samples_options_default(&so);
    so.rows = 64;
    if (rd_samples_write_case(2, &so, g_pa, &err) != RD_OK ||
        rd_samples_write_case(3, &so, g_lat, &err) != RD_OK) {
        fprintf(stderr, "rd_samples_write_case: %s\n", rd_error_message(&err));
        abort();
    }
}

/* Counts the files in g_dir other than the sources and the input (the output, and any
 * temporary an interrupted write left beside it) and removes them. */
static int stray_files(void)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        char path[1400];
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
        if (strcmp(path, g_pa) != 0 && strcmp(path, g_lat) != 0 && strcmp(path, g_input) != 0) {
            if (strcmp(path, g_out) != 0)
                fprintf(stderr, "  left in the folder: %s\n", e->d_name);
            unlink(path);
            n++;
        }
    }
    closedir(d);
    return n;
}

static void sr_before(void)
{
    unlink(g_out);
    memset(&g_res, 0, sizeof g_res);
}

/* What an SR says, as one text: what the readers find in it (rd_sr_read, rd_dicom_read_meta)
 * but what differs from one run to the next (its own UIDs). */
static void sr_digest(const char *path, char *out, size_t size)
{
    rd_sr_info i;
    rd_dicom_meta m;
    rd_error err;
    size_t n;
    out[0] = '\0';
    if (rd_sr_read(path, codes(), &i, &err) != RD_OK ||
        rd_dicom_read_meta(path, &m, &err) != RD_OK) {
        snprintf(out, size, "unreadable: %s", rd_error_message(&err));
        return;
    }
    n = (size_t)snprintf(
        out, size,
        "%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%d|%s|%d|%s|%s|%d|%s|%s|%s|%s|%s|%s|"
        "%s|%s|%s|%d|%d|%s",
        i.sop_class_uid, i.study_uid, i.patient_name, i.patient_id, i.completion_flag,
        i.verification_flag, i.preliminary_flag, i.verifier_name, i.verifier_organization,
        i.verification_datetime, i.predecessor_sop_uid, i.device_model_name, i.series_description,
        i.author_name, i.author_organization, i.person_observer_name,
        i.person_observer_organization, i.n_evidence, i.device_uid, i.is_air,
        i.findings_text ? i.findings_text : "-", i.impression_text ? i.impression_text : "-",
        i.n_findings, m.patient_birth_date, m.patient_sex, m.accession_number, m.study_date,
        m.study_time, m.study_description, m.modality, m.manufacturer, m.specific_charset,
        m.series_number, m.instance_number, m.transfer_syntax_uid);
    for (int k = 0; k < i.n_findings && n < size; k++)
        n += (size_t)snprintf(out + n, size - n, "|%d:%d:%.4f", (int)i.findings[k].finding,
                              (int)i.findings[k].state, i.findings[k].score);
    rd_sr_info_free(&i);
}

static char g_reference[8192]; /* the digest of the output of a run without failure */

/* A failed write leaves nothing (no output, no temporary); a successful one a complete SR
 * whose SOP Instance UID is the one reported, and which says what the output of a run
 * without failure said. */
static void sr_after(rd_status st)
{
    static char digest[8192];
    struct stat sb;
    rd_sr_info info;
    rd_error err;
    if (st != RD_OK) {
        CHECK_MSG(stat(g_out, &sb) != 0, "allocation %ld failed (%s) but the output is there",
                  g_fired_at, rd_status_name(st));
        CHECK_EQ_INT(stray_files(), 0);
        return;
    }
    CHECK_OK(rd_sr_read(g_out, codes(), &info, &err), &err);
    CHECK_STR(info.sop_instance_uid, g_res.sop_instance_uid);
    rd_sr_info_free(&info);
    sr_digest(g_out, digest, sizeof digest);
    if (!g_fired)
        rd_strlcpy(g_reference, digest, sizeof g_reference);
    else
        CHECK_MSG(strcmp(digest, g_reference) == 0,
                  "allocation %ld failed and the SR was written, but it differs:\n  %s\n  "
                  "expected\n  %s",
                  g_fired_at, digest, g_reference);
    CHECK_EQ_INT(stray_files(), 1);
}

static rd_status sr_draft_scenario(void)
{
    static const rd_sr_finding coded[] = {{"Cardiomegaly", RD_STATE_PRESENT, 0.82},
                                          {"Effusion", RD_STATE_UNCERTAIN, 0.41}};
    const char *sources[2] = {g_pa, g_lat};
    rd_sr_params p;
    rd_sr_params_init(&p);
    p.sources = sources;
    p.n_sources = 2;
    p.findings_text = "The heart is enlarged. There may be a small left pleural effusion.";
    p.impression_text = "Cardiomegaly. Possible small left pleural effusion.";
    p.findings = coded;
    p.n_findings = 2;
    p.model_name = "test-model";
    p.model_version = "0.3";
    p.codes = codes();
    return rd_sr_write_draft(&p, g_out, &g_res, &g_err);
}

static rd_status sr_signed_scenario(void)
{
    static const rd_sr_finding coded[] = {{"Effusion", RD_STATE_PRESENT, 0.41}};
    rd_sr_sign_params s;
    rd_sr_sign_params_init(&s);
    s.verifier_name = "Doe^Jane";
    s.organization = "General Hospital";
    s.datetime = "20260102103000";
    s.impression_text = "Small left pleural effusion.";
    s.replace_findings = 1;
    s.findings = coded;
    s.n_findings = 1;
    s.codes = codes();
    return rd_sr_write_signed(g_input, &s, g_out, &g_res, &g_err);
}

static void air_params(rd_sr_air_params *p, const char *const *sources, const char *frontal)
{
    rd_sr_air_params_init(p);
    p->sources = sources;
    p->n_sources = 2;
    p->frontal_sop_instance_uid = frontal;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        p->findings[f].state = f % 3 == 0   ? RD_STATE_PRESENT
                               : f % 3 == 1 ? RD_STATE_UNCERTAIN
                                            : RD_STATE_ABSENT;
        p->findings[f].probability = 0.05 + 0.06 * f;
        p->findings[f].present_threshold = 0.5;
        p->findings[f].uncertain_threshold = 0.3;
    }
    p->model_name = "test-model";
    p->model_version = "0.3";
    p->algorithm_parameters = "probability: calibrated";
    p->codes = codes();
}

static char g_frontal_uid[RD_UID_SIZE];

static rd_status sr_air_scenario(void)
{
    const char *sources[2] = {g_pa, g_lat};
    rd_sr_air_params p;
    air_params(&p, sources, g_frontal_uid);
    return rd_sr_write_air(&p, g_out, &g_res, &g_err);
}

static rd_status sr_air_signed_scenario(void)
{
    rd_sr_air_sign_params s;
    rd_sr_air_sign_params_init(&s);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        s.states[f] = f % 2 ? RD_STATE_PRESENT : RD_STATE_ABSENT;
    s.verifier_name = "Doe^Jane";
    s.organization = "General Hospital";
    s.datetime = "20260102103000";
    s.codes = codes();
    return rd_sr_write_air_signed(g_input, &s, g_out, &g_res, &g_err);
}

/* Runs `run` under the countdown over the sample study in a fresh folder; the input of the
 * signing scenarios (`input`: NULL, "draft" or "air") is written first, unarmed. */
static void sr_countdown(const char *name, scenario run, const char *input, long stride)
{
    fault_scenario sc = {name, run, sr_before, sr_after, stride, 1};
    fault_tally t;
    rd_dicom_meta m;
    rd_error err;
    sample_study(name);
    REQUIRE_OK(rd_dicom_read_meta(g_pa, &m, &err), &err);
    rd_strlcpy(g_frontal_uid, m.sop_instance_uid, sizeof g_frontal_uid);
    if (input) {
        snprintf(g_input, sizeof g_input, "%s/input-sr.dcm", g_dir);
        REQUIRE_OK(strcmp(input, "air") == 0 ? sr_air_scenario() : sr_draft_scenario(), NULL);
        REQUIRE(rename(g_out, g_input) == 0);
    }
    each_allocation_fails(&sc, &t);
    CHECK(t.runs > 0 && t.cxx > 0);
}

RD_TEST(sr_draft_allocation_failures)
{
    sr_countdown("sr_draft", sr_draft_scenario, NULL, 1);
}

RD_TEST(sr_signed_allocation_failures)
{
    sr_countdown("sr_signed", sr_signed_scenario, "draft", 1);
}

RD_TEST(sr_air_allocation_failures)
{
    sr_countdown("sr_air", sr_air_scenario, NULL, 31);
}

RD_TEST(sr_air_signed_allocation_failures)
{
    sr_countdown("sr_air_signed", sr_air_signed_scenario, "air", 53);
}

/* ---- the FHIR Bundle of a draft SR (src/fhir/fhir.c) ---- */

static rd_status fhir_scenario(void)
{
    rd_fhir_params p;
    rd_fhir_params_init(&p);
    p.sr_path = g_input;
    p.report_key = "study/v1";
    p.device_uid = "2.25.1234";
    p.device_name = "radraft test-model 0.3";
    p.codes = codes();
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        p.findings[f].state = f == RD_FINDING_CARDIOMEGALY ? RD_STATE_PRESENT : RD_STATE_ABSENT;
        p.findings[f].probability = 0.05 * f;
        p.findings[f].uncertain_threshold = 0.2;
        p.findings[f].present_threshold = 0.35;
    }
    return rd_fhir_write(&p, g_out, &g_err);
}

/* After a failure nothing is written; after a success the Bundle is whole: the report and
 * its 14 Observations. */
static void fhir_after(rd_status st)
{
    struct stat sb;
    char *text = NULL;
    size_t len = 0;
    cJSON *doc;
    if (st != RD_OK) {
        CHECK_MSG(stat(g_out, &sb) != 0, "allocation %ld failed (%s) but the Bundle is there",
                  g_fired_at, rd_status_name(st));
        return;
    }
    REQUIRE_OK(rd_read_file(g_out, RD_FHIR_MAX_BUNDLE, &text, &len, NULL), NULL);
    doc = cJSON_Parse(text);
    CHECK_MSG(doc && cJSON_GetArraySize(cJSON_GetObjectItem(doc, "entry")) == 15,
              "allocation %ld failed and the Bundle was written, but it is not whole", g_fired_at);
    cJSON_Delete(doc);
    free(text);
}

RD_TEST(fhir_allocation_failures)
{
    /* Every C allocation (cJSON's included) in turn; the SR is read through DCMTK, whose C++
     * allocations the SR countdowns cover: one in 31 here. */
    fault_scenario sc = {"fhir", fhir_scenario, sr_before, fhir_after, 1, 31};
    fault_tally t;
    sample_study("alloc_faults_fhir");
    snprintf(g_input, sizeof g_input, "%s/input-sr.dcm", g_dir);
    REQUIRE_OK(sr_draft_scenario(), NULL);
    REQUIRE(rename(g_out, g_input) == 0);
    each_allocation_fails(&sc, &t);
    CHECK(t.runs > 0 && t.c > 0);
}

/* ---- the pipeline: a stored study to a recorded draft ---- */

/* The serve path's work on one study, as a worker does it (src/pipeline/jobs.c): a job of a
 * study whose two instances are in the store (the sample study above, as the listener
 * stored them), its files from the store, every stage (read, select, decode, embed with the
 * small test model "opzoo", retrieve, generate, write both SRs), the heat maps and the record
 * transaction, then the job's outcome. The pipeline (the model, templates, labeler, code
 * table) is made once, unarmed: it is what `radraft serve` loads at start. What runs under
 * the countdown is the worker (its store connection and encoder) and the job.
 *
 * A run that fails must leave the study as it was: no review item, no study version (a
 * failure must never record the study as skipped), no temporary in the SR folder; an SR
 * written before the failure is complete (a retry rewrites it). A run that succeeds drafted
 * the study, and says what an undisturbed run says. The store is put back as it was after
 * every success, so that each run drafts the study afresh. */
static char g_pl_data[1100], g_pl_pristine[1100], g_pl_db[1200];
static char g_pl_study[RD_UID_SIZE];
static rd_pipeline *g_pl;
static rd_store_job g_pl_job;
static rd_pipeline_result g_pl_res;

static void remove_files_in(const char *dir, const char *sub)
{
    char path[1300];
    DIR *d;
    struct dirent *e;
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    if (!(d = opendir(path)))
        return;
    while ((e = readdir(d)) != NULL) {
        char f[1600];
        if (e->d_name[0] == '.')
            continue;
        snprintf(f, sizeof f, "%s/%s", path, e->d_name);
        unlink(f);
    }
    closedir(d);
}

/* Copies a file whole (a small database). */
static void copy_file(const char *from, const char *to)
{
    char *data = NULL;
    size_t len = 0;
    rd_error err;
    if (rd_read_file(from, (size_t)64 << 20, &data, &len, &err) != RD_OK ||
        rd_write_file_atomic(to, data, len, &err) != RD_OK) {
        fprintf(stderr, "copy %s: %s\n", from, rd_error_message(&err));
        abort();
    }
    free(data);
}

static void pipeline_before(void)
{
    rd_store *s = NULL;
    rd_error err;
    if (rd_store_open(&s, g_pl_data, NULL, &err) != RD_OK ||
        rd_store_job_begin(s, g_pl_study, 1, &g_pl_job, &err) != RD_OK) {
        fprintf(stderr, "pipeline job: %s\n", rd_error_message(&err));
        abort();
    }
    rd_store_close(s);
    memset(&g_pl_res, 0, sizeof g_pl_res);
}

static rd_status pipeline_scenario(void)
{
    rd_pipeline_worker *w = NULL;
    rd_status st = rd_pipeline_worker_create(&w, g_pl, &g_err);
    if (st == RD_OK)
        st = rd_pipeline_run_job(w, NULL, &g_pl_job, &g_pl_res, &g_err);
    rd_pipeline_worker_free(w);
    return st;
}

/* The folder's files that are temporaries of an interrupted write (radraft/tempname.h), or
 * SRs that do not read; each is named. */
static int bad_files_in(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL) {
        char path[1600];
        rd_sr_info info;
        rd_error err;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (rd_temp_owner_of(e->d_name) != RD_TEMP_NOT_TEMP) {
            fprintf(stderr, "  left in %s: %s\n", dir, e->d_name);
            n++;
        } else if (strstr(e->d_name, ".dcm")) {
            if (rd_sr_read(path, codes(), &info, &err) != RD_OK) {
                fprintf(stderr, "  %s does not read: %s\n", path, rd_error_message(&err));
                n++;
            }
            rd_sr_info_free(&info);
        }
    }
    closedir(d);
    return n;
}

/* What a drafted study says: its review item and both SRs. */
static void pipeline_digest(rd_store *s, char *out, size_t size)
{
    rd_store_review_item it;
    rd_error err;
    char sr[8192], air[8192];
    memset(&it, 0, sizeof it);
    if (rd_store_review_get(s, g_pl_res.review_id, &it, &err) != RD_OK) {
        snprintf(out, size, "no review item: %s", rd_error_message(&err));
        return;
    }
    sr_digest(it.sr_path, sr, sizeof sr);
    sr_digest(it.air_sr_path, air, sizeof air);
    snprintf(out, size, "%s|%s|%s|%s|%s|%s|%d|%s|%s", it.findings_text, it.impression_text,
             it.findings_json, it.neighbours_json, it.frontal_sop_instance_uid, it.model_version,
             it.priority, sr, air);
    rd_store_review_item_clear(&it);
}

static void pipeline_after(rd_status st)
{
    static char digest[40000], reference[40000];
    char sr_dir[1200];
    rd_store *s = NULL;
    rd_store_study_version sv;
    rd_error err;
    long n = -1;
    snprintf(sr_dir, sizeof sr_dir, "%s/sr", g_pl_data);
    CHECK_EQ_INT(bad_files_in(sr_dir), 0);
    REQUIRE_OK(rd_store_open(&s, g_pl_data, NULL, &err), &err);
    CHECK_OK(rd_store_count_reviews(s, NULL, NULL, &n, &err), &err);
    CHECK_OK(rd_store_study_version_get(s, g_pl_study, g_pl_res.content_version, &sv, &err), &err);
    if (st != RD_OK) {
        CHECK_MSG(n == 0 && !sv.found,
                  "allocation %ld failed (%s) but the study's outcome was recorded (%ld review "
                  "items, version %s)",
                  g_fired_at, rd_status_name(st), n, sv.found ? "recorded" : "not recorded");
    } else {
        CHECK_MSG(g_pl_res.outcome == RD_PIPELINE_DRAFTED && n == 1,
                  "allocation %ld failed, the job succeeded, but the study was %s (%s)", g_fired_at,
                  rd_pipeline_outcome_name(g_pl_res.outcome), g_pl_res.reason);
        pipeline_digest(s, digest, sizeof digest);
        if (!g_fired)
            rd_strlcpy(reference, digest, sizeof reference);
        else
            CHECK_MSG(strcmp(digest, reference) == 0,
                      "allocation %ld failed and the study was drafted, but it differs:\n  %s\n"
                      "  expected\n  %s",
                      g_fired_at, digest, reference);
    }
    rd_store_close(s);
    remove_files_in(g_pl_data, "sr");
    remove_files_in(g_pl_data, "heatmaps");
    if (st == RD_OK) {
        /* Back to the store without the draft. */
        char wal[1300], shm[1300];
        snprintf(wal, sizeof wal, "%s-wal", g_pl_db);
        snprintf(shm, sizeof shm, "%s-shm", g_pl_db);
        unlink(wal);
        unlink(shm);
        copy_file(g_pl_pristine, g_pl_db);
    }
}

/* Stores `path` as the listener would have (rd_store_put of the file's bytes). */
static void store_instance(rd_store *s, const char *path)
{
    rd_dicom_meta m;
    rd_store_instance in;
    char *data = NULL;
    size_t len = 0;
    rd_error err;
    if (rd_dicom_read_meta(path, &m, &err) != RD_OK ||
        rd_read_file(path, (size_t)16 << 20, &data, &len, &err) != RD_OK) {
        fprintf(stderr, "%s: %s\n", path, rd_error_message(&err));
        abort();
    }
    in.study_uid = m.study_uid;
    in.series_uid = m.series_uid;
    in.sop_instance_uid = m.sop_instance_uid;
    in.sop_class_uid = m.sop_class_uid;
    in.transfer_syntax_uid = m.transfer_syntax_uid;
    in.modality = m.modality;
    in.calling_ae = "MODALITY";
    if (rd_store_put(s, &in, data, len, 0, NULL, &err) != RD_OK) {
        fprintf(stderr, "%s: %s\n", path, rd_error_message(&err));
        abort();
    }
    rd_strlcpy(g_pl_study, m.study_uid, sizeof g_pl_study);
    free(data);
}

RD_TEST(pipeline_allocation_failures)
{
    static const char all_present[] = "{\"default\": {\"present\": 0.3, \"uncertain\": 0.1}}";
    char model[1100], th[1100];
    rd_config cfg;
    rd_pipeline_options po;
    rd_store *s = NULL;
    rd_error err;
    /* Every stage is run with a C++ allocation in 97 failing in turn: the SR writers, which
     * make most of them, have their own countdowns above; every C allocation fails in turn. */
    fault_scenario sc = {"pipeline", pipeline_scenario, pipeline_before, pipeline_after, 1, 97};
    fault_tally t;
    sample_study("alloc_faults_pipeline");
    snprintf(model, sizeof model, "%s/model", g_dir);
    snprintf(th, sizeof th, "%s/thresholds.json", g_dir);
    snprintf(g_pl_data, sizeof g_pl_data, "%s/data", g_dir);
    snprintf(g_pl_db, sizeof g_pl_db, "%s/radraft.db", g_pl_data);
    snprintf(g_pl_pristine, sizeof g_pl_pristine, "%s/pristine.db", g_dir);
    REQUIRE_OK(rd_nn_model_init("opzoo", 1, model, &err), &err);
    REQUIRE_OK(rd_write_file_atomic(th, all_present, strlen(all_present), &err), &err);
    REQUIRE_OK(rd_store_open(&s, g_pl_data, NULL, &err), &err);
    store_instance(s, g_pa);
    store_instance(s, g_lat);
    rd_store_close(s);
    copy_file(g_pl_db, g_pl_pristine);

    rd_log_set_level(RD_LOG_ERROR);
    rd_config_defaults(&cfg);
    rd_strlcpy(cfg.encoder_model, model, sizeof cfg.encoder_model);
    rd_strlcpy(cfg.generator_thresholds, th, sizeof cfg.generator_thresholds);
    snprintf(cfg.outbox_destinations.items[0], sizeof cfg.outbox_destinations.items[0],
             "PACS@127.0.0.1:104");
    cfg.outbox_destinations.count = 1;
    /* The FHIR Bundle has its own countdown (above): its thousands of cJSON allocations would
     * multiply this one's runs. */
    cfg.fhir_enabled = 0;
    memset(&po, 0, sizeof po);
    po.data_dir = g_pl_data;
    po.enqueue = 1;
    po.encoder_threads = 1;
    REQUIRE_OK(rd_pipeline_create(&g_pl, &cfg, &po, &err), &err);
    each_allocation_fails(&sc, &t);
    CHECK(t.runs > 0 && t.c > 0 && t.cxx > 0);
    rd_pipeline_free(g_pl);
    g_pl = NULL;
}

RD_TEST_MAIN()
