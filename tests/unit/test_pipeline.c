/* The pipeline module and the store functions it uses: thread planning, review items and
 * study versions recorded once, job retries, and whole studies through every stage. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "radraft/batch.h"
#include "radraft/config.h"
#include "radraft/image.h"
#include "radraft/index.h"
#include "radraft/nn.h"
#include "radraft/pipeline.h"
#include "radraft/samples.h"
#include "radraft/store.h"
#include "rdtest.h"
#include "base/util.h"

RD_TEST(plan_threads_never_oversubscribe)
{
    rd_config cfg;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int w, t;
    rd_config_defaults(&cfg);
    rd_pipeline_plan_threads(&cfg, 0, &w, &t);
    CHECK(w >= 1 && t >= 1 && w * t <= (cores > 0 ? cores : 1));
    rd_pipeline_plan_threads(&cfg, 1, &w, &t);
    CHECK_EQ_INT(w, (int)cores);
    CHECK_EQ_INT(t, 1);
    cfg.pipeline_workers = 1;
    cfg.encoder_threads = 1000;
    rd_pipeline_plan_threads(&cfg, 0, &w, &t);
    CHECK_EQ_INT(w, 1);
    CHECK(t <= cores);
}

RD_TEST(review_recorded_once_with_deliveries)
{
    const char *dir = rd_test_tmpdir("pl_review");
    rd_store *s = NULL;
    rd_error err;
    rd_store_review r;
    rd_store_study_version sv;
    const char *dests[2] = {"A@127.0.0.1:1", "B@127.0.0.1:2"};
    int64_t id1 = 0, id2 = 0;
    int added = -1;
    long n = -1;
    REQUIRE_OK(rd_store_open(&s, dir, NULL, &err), &err);
    memset(&r, 0, sizeof r);
    r.study_uid = "1.2.3";
    r.content_version = "abc";
    r.sr_path = "/tmp/x-draft-sr.dcm";
    r.findings_json = "{}";
    CHECK_OK(rd_store_study_version_get(s, "1.2.3", "abc", &sv, &err), &err);
    CHECK_EQ_INT(sv.found, 0);
    CHECK_OK(rd_store_review_add(s, &r, dests, 2, &id1, &added, &err), &err);
    CHECK_EQ_INT(added, 1);
    CHECK_OK(rd_store_review_add(s, &r, dests, 2, &id2, &added, &err), &err);
    CHECK_EQ_INT(added, 0);
    CHECK(id1 == id2 && id1 > 0);
    CHECK_OK(rd_store_outbox_count(s, "pending", &n, &err), &err);
    CHECK_EQ_INT((int)n, 2);
    CHECK_OK(rd_store_count_reviews(s, NULL, "draft", &n, &err), &err);
    CHECK_EQ_INT((int)n, 1);
    CHECK_OK(rd_store_study_version_get(s, "1.2.3", "abc", &sv, &err), &err);
    CHECK(sv.found && sv.drafted && sv.review_id == id1);
    /* A skip recorded later does not overwrite the draft; a skip of another version stays. */
    CHECK_OK(rd_store_study_skip(s, "1.2.3", "abc", "late", &err), &err);
    CHECK_OK(rd_store_study_version_get(s, "1.2.3", "abc", &sv, &err), &err);
    CHECK(sv.drafted);
    CHECK_OK(rd_store_study_skip(s, "1.2.3", "def", "not a chest radiograph", &err), &err);
    CHECK_OK(rd_store_study_version_get(s, "1.2.3", "def", &sv, &err), &err);
    CHECK(sv.found && !sv.drafted);
    CHECK_STR(sv.reason, "not a chest radiograph");
    rd_store_close(s);
}

/* A draft's AI Results SR is recorded with its item and delivered beside the text SR; so is
 * a signature's. */
RD_TEST(air_sr_recorded_and_delivered_with_the_text_sr)
{
    const char *dir = rd_test_tmpdir("pl_review_air");
    rd_store *s = NULL;
    rd_error err;
    rd_store_review r;
    rd_store_review_item it;
    rd_store_signature sig;
    const char *dests[2] = {"A@127.0.0.1:1", "B@127.0.0.1:2"};
    char air[1024], air_uid[RD_UID_SIZE];
    int64_t id = 0, plain = 0;
    long n = -1;
    REQUIRE_OK(rd_store_open(&s, dir, NULL, &err), &err);
    memset(&r, 0, sizeof r);
    r.study_uid = "1.2.3";
    r.content_version = "abc";
    r.sr_path = "/tmp/x-draft-sr.dcm";
    r.sr_sop_instance_uid = "2.25.1";
    r.air_sr_path = "/tmp/x-draft-air-sr.dcm";
    r.air_sr_sop_instance_uid = "2.25.2";
    r.findings_json = "{}";
    REQUIRE_OK(rd_store_review_add(s, &r, dests, 2, &id, NULL, &err), &err);
    CHECK_OK(rd_store_outbox_count(s, "pending", &n, &err), &err);
    CHECK_EQ_INT((int)n, 4);
    REQUIRE_OK(rd_store_review_get(s, id, &it, &err), &err);
    CHECK_STR(it.air_sr_path, "/tmp/x-draft-air-sr.dcm");
    CHECK_STR(it.air_sr_sop_instance_uid, "2.25.2");
    CHECK_STR(it.sr_path, "/tmp/x-draft-sr.dcm");
    rd_store_review_item_clear(&it);
    /* Without one (sr.air off) nothing else is queued, and the item says so. */
    r.study_uid = "1.2.4";
    r.air_sr_path = r.air_sr_sop_instance_uid = NULL;
    r.sr_path = "/tmp/y-draft-sr.dcm";
    REQUIRE_OK(rd_store_review_add(s, &r, dests, 2, &plain, NULL, &err), &err);
    CHECK_OK(rd_store_outbox_count(s, "pending", &n, &err), &err);
    CHECK_EQ_INT((int)n, 6);
    REQUIRE_OK(rd_store_review_get(s, plain, &it, &err), &err);
    CHECK_STR(it.air_sr_path, "");
    rd_store_review_item_clear(&it);

    /* The signature: claimed, then signed with both SRs. */
    REQUIRE_OK(
        rd_store_review_claim(s, id, "alice", rd_store_now(), rd_store_now() + 600, NULL, &err),
        &err);
    memset(&sig, 0, sizeof sig);
    sig.version = 1;
    sig.sr_path = "/tmp/x-signed-v1-sr.dcm";
    sig.sr_sop_instance_uid = "2.25.3";
    sig.predecessor_sop_instance_uid = "2.25.1";
    sig.final_states = "{}";
    sig.air_sr_path = "/tmp/x-signed-v1-air-sr.dcm";
    sig.air_sr_sop_instance_uid = "2.25.4";
    REQUIRE_OK(rd_store_review_sign(s, id, "alice", rd_store_now(), &sig, dests, 2, NULL, &err),
               &err);
    CHECK_OK(rd_store_outbox_count(s, "pending", &n, &err), &err);
    CHECK_EQ_INT((int)n, 10);
    REQUIRE_OK(rd_store_review_current_air_signature(s, id, air, air_uid, &err), &err);
    CHECK_STR(air, "/tmp/x-signed-v1-air-sr.dcm");
    CHECK_STR(air_uid, "2.25.4");
    REQUIRE_OK(rd_store_review_current_air_signature(s, plain, air, air_uid, &err), &err);
    CHECK_STR(air, "");
    rd_store_close(s);
}

RD_TEST(job_retry_waits_and_keeps_the_error)
{
    const char *dir = rd_test_tmpdir("pl_retry");
    rd_store *s = NULL;
    rd_error err;
    rd_store_job job;
    char msg[128];
    static const char data[] = "not really DICOM, but the store does not care";
    rd_store_instance in = {"1.2.3", "1.2.3.4", "1.2.3.4.5", "", "", "CR", "T"};
    char **files = NULL;
    int n = 0;
    REQUIRE_OK(rd_store_open(&s, dir, NULL, &err), &err);
    REQUIRE_OK(rd_store_put(s, &in, data, sizeof data, 0, NULL, &err), &err);
    CHECK_OK(rd_store_study_files(s, "1.2.3", &files, &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    CHECK(n == 1 && strstr(files[0], "/store/1.2.3/1.2.3.4/1.2.3.4.5.dcm") != NULL);
    rd_store_free_paths(files, n);
    CHECK_OK(rd_store_queue_stable(s, rd_store_now() + 100, 0, NULL, &err), &err);
    REQUIRE_OK(rd_store_job_claim(s, &job, &err), &err);
    CHECK_EQ_INT(job.attempts, 1);
    CHECK_OK(rd_store_job_retry(s, job.id, "decode: disk on fire", 3600, &err), &err);
    CHECK(rd_store_job_claim(s, &job, &err) == RD_E_NOT_FOUND);
    CHECK_OK(rd_store_job_error(s, job.id, msg, sizeof msg, &err), &err);
    CHECK_STR(msg, "decode: disk on fire");
    rd_store_close(s);
}

/* Writes the sample case pair of patient `p` (0-based) under dir, returns the paths. */
static void write_case(const char *dir, int p, char pa[512], char lat[512])
{
    rd_samples_options o;
    rd_error err;
    char rel[128], path[512];
    rd_samples_options_default(&o);
    o.rows = 256;
    for (int k = 0; k < 2; k++) {
        size_t i = (size_t)(2 * p + k);
        REQUIRE_OK(rd_samples_case_path(i, rel, sizeof rel, &err), &err);
        snprintf(path, sizeof path, "%s/%s", dir, rel);
        *strrchr(path, '/') = '\0';
        mkdir(path, 0755);
        snprintf(path, sizeof path, "%s/%s", dir, rel);
        REQUIRE_OK(rd_samples_write_case(i, &o, path, &err), &err);
        snprintf(strstr(rel, "pa.dcm") ? pa : lat, 512, "%s", path);
    }
}

RD_TEST(retry_policy_doubles_caps_and_ends)
{
    rd_config cfg;
    rd_config_defaults(&cfg);
    cfg.pipeline_retry_initial_seconds = 2;
    cfg.pipeline_retry_max_seconds = 300;
    cfg.pipeline_retry_max_attempts = 5;
    CHECK(fabs(rd_pipeline_retry_delay(&cfg, RD_E_IO, 1) - 2) < 1e-9);
    CHECK(fabs(rd_pipeline_retry_delay(&cfg, RD_E_DB, 2) - 4) < 1e-9);
    CHECK(fabs(rd_pipeline_retry_delay(&cfg, RD_E_NET, 4) - 16) < 1e-9);
    /* The last attempt made: no next one. */
    CHECK(rd_pipeline_retry_delay(&cfg, RD_E_IO, 5) < 0);
    /* A failure that a retry cannot mend is final at once. */
    CHECK(rd_pipeline_retry_delay(&cfg, RD_E_DICOM, 1) < 0);
    CHECK(rd_pipeline_retry_delay(&cfg, RD_E_INVALID, 1) < 0);
    CHECK(rd_pipeline_retry_delay(&cfg, RD_E_TOO_LARGE, 1) < 0);
    /* Capped. */
    cfg.pipeline_retry_max_seconds = 5;
    CHECK(fabs(rd_pipeline_retry_delay(&cfg, RD_E_IO, 3) - 5) < 1e-9);
    cfg.pipeline_retry_max_attempts = 100;
    CHECK(fabs(rd_pipeline_retry_delay(&cfg, RD_E_IO, 99) - 5) < 1e-9);
}

/* batch through the pool: every study gets its final outcome and the source finishes; a
 * study over the instance cap is refused whole, with its reason on a failed job, never
 * drafted from the first instances. */
RD_TEST(batch_source_runs_every_study_and_refuses_an_oversized_one)
{
    const char *dir = rd_test_tmpdir("pl_batch");
    char model[1100], data[1100], pa[512], lat[512], pa2[512], lat2[512], msg[256];
    rd_config cfg;
    rd_pipeline_options po;
    rd_pipeline *p = NULL;
    rd_pipeline_pool *pool = NULL;
    rd_batch *b = NULL;
    rd_batch_stats bs;
    rd_store *s = NULL;
    rd_error err;
    long n = -1;
    snprintf(model, sizeof model, "%s/model", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    REQUIRE_OK(rd_nn_model_init("resnet-small", 1, model, &err), &err);
    write_case(dir, 0, pa, lat);
    write_case(dir, 1, pa2, lat2);
    rd_config_defaults(&cfg);
    REQUIRE(rd_strlcpy(cfg.encoder_model, model, sizeof cfg.encoder_model) <
            sizeof cfg.encoder_model);
    REQUIRE_OK(rd_batch_create(&b, &err), &err);
    REQUIRE_OK(rd_batch_add_root(b, pa, &err), &err);
    REQUIRE_OK(rd_batch_add_root(b, lat, &err), &err);
    /* The second patient's study: one instance added RD_STORE_STUDY_MAX_FILES + 1 times. */
    for (int i = 0; i <= RD_STORE_STUDY_MAX_FILES; i++)
        REQUIRE_OK(rd_batch_add_root(b, pa2, &err), &err);
    REQUIRE_OK(rd_batch_group(b, &err), &err);
    rd_batch_get_stats(b, &bs);
    CHECK_EQ_INT((int)bs.studies, 2);
    CHECK_EQ_INT((int)bs.instances, RD_STORE_STUDY_MAX_FILES + 3);
    memset(&po, 0, sizeof po);
    po.data_dir = data;
    po.encoder_threads = 1;
    REQUIRE_OK(rd_pipeline_create(&p, &cfg, &po, &err), &err);
    rd_pipeline_source src = rd_batch_source(b);
    /* Blocks of two: a worker may claim both, one failing before its stages. */
    src.block = 2;
    REQUIRE_OK(rd_pipeline_pool_start(&pool, p, 2, &src, &err), &err);
    for (int i = 0; i < 600 && !rd_pipeline_pool_finished(pool); i++) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK(rd_pipeline_pool_finished(pool));
    rd_pipeline_pool_stop(pool);
    rd_batch_get_stats(b, &bs);
    CHECK_EQ_INT((int)bs.finished, 2);
    CHECK_EQ_INT((int)bs.drafted, 1);
    CHECK_EQ_INT((int)bs.failed, 1);
    REQUIRE_OK(rd_store_open(&s, data, NULL, &err), &err);
    CHECK_OK(rd_store_count_reviews(s, NULL, "draft", &n, &err), &err);
    CHECK_EQ_INT((int)n, 1);
    CHECK_OK(rd_store_count_jobs(s, NULL, RD_JOB_FAILED, &n, &err), &err);
    CHECK_EQ_INT((int)n, 1);
    /* The only job on record (a drafted study needs none) is the oversized study's failed
     * one, with the reason. */
    {
        char want[64];
        rd_dicom_meta m;
        REQUIRE_OK(rd_dicom_read_meta(pa2, &m, &err), &err);
        CHECK_OK(rd_store_count_jobs(s, m.study_uid, RD_JOB_FAILED, &n, &err), &err);
        CHECK_EQ_INT((int)n, 1);
        CHECK_OK(rd_store_count_jobs(s, NULL, -1, &n, &err), &err);
        CHECK_EQ_INT((int)n, 1);
        CHECK_OK(rd_store_job_error(s, 1, msg, sizeof msg, &err), &err);
        snprintf(want, sizeof want, "%d instances (at most %d)", RD_STORE_STUDY_MAX_FILES + 1,
                 RD_STORE_STUDY_MAX_FILES);
        CHECK_MSG(strncmp(msg, "read: ", 6) == 0 && strstr(msg, want) != NULL, "job error: %s",
                  msg);
    }
    rd_store_close(s);
    rd_pipeline_free(p);
    rd_batch_free(b);
}

/* The neighbours of a review item: ids and similarities from its neighbours_json. */
static int item_neighbours(rd_store *s, int64_t review_id, double *ids, double *sims, int max)
{
    rd_store_review_item it;
    rd_error err;
    int n = -1;
    memset(&it, 0, sizeof it);
    if (rd_store_review_get(s, review_id, &it, &err) != RD_OK)
        return -1;
    cJSON *doc = it.neighbours_json ? cJSON_Parse(it.neighbours_json) : NULL;
    if (cJSON_IsArray(doc)) {
        const cJSON *o;
        n = 0;
        cJSON_ArrayForEach(o, doc)
        {
            if (n == max)
                break;
            ids[n] = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "id"));
            sims[n] = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "similarity"));
            n++;
        }
    }
    cJSON_Delete(doc);
    rd_store_review_item_clear(&it);
    return n;
}

/* A block of studies (their archive searches as one batch) gives each study what it gets
 * alone: the same outcome, the same neighbours (similarities within float rounding of the
 * sgemm and the scan kernels), the same failure for a study that cannot be read; two data
 * folders with the same 500-entry archive, one drafted study by study, one as a block. */
RD_TEST(block_of_studies_drafts_as_one_at_a_time)
{
    const char *dir = rd_test_tmpdir("pl_block");
    char model[1100], data[2][1100], pa[2][512], lat[2][512];
    rd_config cfg;
    rd_pipeline_options po;
    rd_pipeline *p[2] = {NULL, NULL};
    rd_pipeline_worker *w[2] = {NULL, NULL};
    rd_pipeline_draft d;
    rd_error err;
    snprintf(model, sizeof model, "%s/model", dir);
    REQUIRE_OK(rd_nn_model_init("resnet-small", 1, model, &err), &err);
    for (int i = 0; i < 2; i++)
        write_case(dir, i, pa[i], lat[i]);
    rd_config_defaults(&cfg);
    REQUIRE(rd_strlcpy(cfg.encoder_model, model, sizeof cfg.encoder_model) <
            sizeof cfg.encoder_model);
    cfg.archive_refresh_seconds = 0; /* the entries added below are seen at once */
    for (int r = 0; r < 2; r++) {
        snprintf(data[r], sizeof data[r], "%s/%s", dir, r ? "block" : "one");
        memset(&po, 0, sizeof po);
        po.data_dir = data[r];
        po.encoder_threads = 1;
        REQUIRE_OK(rd_pipeline_create(&p[r], &cfg, &po, &err), &err);
        REQUIRE_OK(rd_pipeline_worker_create(&w[r], p[r], &err), &err);
    }
    /* The model's version and embedding, from a draft that records nothing. */
    const char *f0[2] = {pa[0], lat[0]};
    REQUIRE_OK(rd_pipeline_draft_files(w[0], f0, 2, NULL, &d, &err), &err);
    REQUIRE(d.embedding && d.embedding_dim > 0);
    int dim = d.embedding_dim;
    float *emb = malloc(sizeof(float) * (size_t)dim);
    REQUIRE(emb);
    for (int r = 0; r < 2; r++) {
        rd_store *s = NULL;
        rd_index *ix = NULL;
        uint64_t x = 12345;
        REQUIRE_OK(rd_store_open(&s, data[r], NULL, &err), &err);
        REQUIRE_OK(rd_index_load(&ix, s, d.model_version, dim, NULL, NULL, &err), &err);
        for (int i = 0; i < 500; i++) {
            char key[32], study[32];
            rd_index_entry e;
            memset(&e, 0, sizeof e);
            snprintf(key, sizeof key, "a%d", i);
            snprintf(study, sizeof study, "9.9.%d", i);
            e.key = key;
            e.study_uid = study;
            e.view = i % 5 ? RD_VIEW_FRONTAL : RD_VIEW_LATERAL;
            for (int k = 0; k < dim; k++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                float noise = (float)((double)(x >> 11) / (double)(1ull << 53) - 0.5);
                /* Every 7th near the first study, the rest anywhere. */
                emb[k] = i % 7 ? noise : d.embedding[k] + 0.2f * noise;
            }
            REQUIRE_OK(rd_index_add(ix, s, &e, emb, NULL, NULL, &err), &err);
        }
        rd_index_free(ix);
        rd_store_close(s);
    }
    free(emb);
    rd_pipeline_draft_free(&d);
    /* Study by study in one folder, as a block of three in the other. */
    const char *files0[2] = {pa[0], lat[0]}, *files1[2] = {pa[1], lat[1]},
               *files2[1] = {"/nonexistent/radraft/study.dcm"};
    const char *const *files[3] = {files0, files1, files2};
    int n[3] = {2, 2, 1};
    rd_pipeline_result one[3], blk[3];
    rd_status st_one[3], st_blk[3];
    rd_error e_one[3], e_blk[3];
    for (int i = 0; i < 3; i++)
        st_one[i] = rd_pipeline_run_study(w[0], files[i], n[i], &one[i], &e_one[i]);
    rd_pipeline_run_studies(w[1], 3, files, n, blk, st_blk, e_blk);
    rd_store *s[2] = {NULL, NULL};
    REQUIRE_OK(rd_store_open(&s[0], data[0], NULL, &err), &err);
    REQUIRE_OK(rd_store_open(&s[1], data[1], NULL, &err), &err);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(st_blk[i], st_one[i]);
        if (st_one[i] != RD_OK || st_blk[i] != RD_OK) {
            CHECK_STR(rd_error_message(&e_blk[i]), rd_error_message(&e_one[i]));
            continue;
        }
        CHECK_EQ_INT(blk[i].outcome, RD_PIPELINE_DRAFTED);
        CHECK_EQ_INT(one[i].outcome, RD_PIPELINE_DRAFTED);
        CHECK_STR(blk[i].study_uid, one[i].study_uid);
        CHECK_EQ_INT(blk[i].n_neighbours, one[i].n_neighbours);
        CHECK(blk[i].n_neighbours > 0);
        CHECK_EQ_INT(blk[i].n_present, one[i].n_present);
        CHECK_EQ_INT(blk[i].n_uncertain, one[i].n_uncertain);
        double ids[2][64], sims[2][64];
        int nn0 = item_neighbours(s[0], one[i].review_id, ids[0], sims[0], 64);
        int nn1 = item_neighbours(s[1], blk[i].review_id, ids[1], sims[1], 64);
        CHECK(nn0 > 0 && nn0 == nn1);
        for (int j = 0; j < nn0 && j < nn1; j++) {
            CHECK_NEAR(sims[1][j], sims[0][j], 1e-5);
            /* The same ids unless two similarities are within rounding of each other. */
            if (ids[1][j] != ids[0][j])
                CHECK((j > 0 && fabs(sims[0][j] - sims[0][j - 1]) < 1e-5) ||
                      (j + 1 < nn0 && fabs(sims[0][j] - sims[0][j + 1]) < 1e-5));
        }
    }
    /* The same studies again, as a block: done before, nothing drafted twice. */
    rd_pipeline_run_studies(w[1], 2, files, n, blk, st_blk, e_blk);
    for (int i = 0; i < 2; i++) {
        CHECK_OK(st_blk[i], &e_blk[i]);
        CHECK_EQ_INT(blk[i].outcome, RD_PIPELINE_DONE_BEFORE);
    }
    rd_store_close(s[0]);
    rd_store_close(s[1]);
    for (int r = 0; r < 2; r++) {
        rd_pipeline_worker_free(w[r]);
        rd_pipeline_free(p[r]);
    }
}

RD_TEST(study_drafted_once_and_non_chest_skipped)
{
    const char *dir = rd_test_tmpdir("pl_study");
    const char *shared = rd_test_shared_data();
    char model[1100], data[1100], pa[512], lat[512], ct[1100];
    rd_config cfg;
    rd_pipeline_options po;
    rd_pipeline *p = NULL;
    rd_pipeline_worker *w = NULL;
    rd_pipeline_result res;
    rd_error err;
    long n = -1;
    struct stat sb;
    snprintf(model, sizeof model, "%s/model", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    REQUIRE_OK(rd_nn_model_init("resnet-small", 1, model, &err), &err);
    write_case(dir, 1, pa, lat);
    rd_config_defaults(&cfg);
    REQUIRE(rd_strlcpy(cfg.encoder_model, model, sizeof cfg.encoder_model) <
            sizeof cfg.encoder_model);
    snprintf(cfg.outbox_destinations.items[0], sizeof cfg.outbox_destinations.items[0],
             "PACS@127.0.0.1:104");
    cfg.outbox_destinations.count = 1;
    memset(&po, 0, sizeof po);
    po.data_dir = data;
    po.enqueue = 1;
    po.encoder_threads = 1;
    REQUIRE_OK(rd_pipeline_create(&p, &cfg, &po, &err), &err);
    REQUIRE_OK(rd_pipeline_worker_create(&w, p, &err), &err);

    const char *files[2] = {lat, pa};
    CHECK_OK(rd_pipeline_run_study(w, files, 2, &res, &err), &err);
    CHECK_EQ_INT(res.outcome, RD_PIPELINE_DRAFTED);
    CHECK(stat(res.sr_path, &sb) == 0 && sb.st_size > 0);
    CHECK(strncmp(res.sr_path, data, strlen(data)) == 0); /* default SR folder: DATA/sr */
    CHECK(res.review_id > 0);
    CHECK(res.ms_embed > 0);
    CHECK_OK(rd_store_count_reviews(rd_pipeline_worker_store(w), res.study_uid, "draft", &n, &err),
             &err);
    CHECK_EQ_INT((int)n, 1);
    /* The text SR and, with sr.air (the default), the AI Results SR beside it, both queued
     * and both named by the review item. */
    CHECK_OK(rd_store_outbox_count(rd_pipeline_worker_store(w), "pending", &n, &err), &err);
    CHECK_EQ_INT((int)n, 2);
    {
        rd_store_review_item it;
        rd_sr_info info;
        REQUIRE_OK(rd_store_review_get(rd_pipeline_worker_store(w), res.review_id, &it, &err),
                   &err);
        CHECK(strstr(it.air_sr_path, "-draft-air-sr.dcm") != NULL);
        CHECK(stat(it.air_sr_path, &sb) == 0 && sb.st_size > 0);
        CHECK_OK(rd_sr_read(it.air_sr_path, NULL, &info, &err), &err);
        CHECK(info.is_air);
        CHECK_STR(info.sop_instance_uid, it.air_sr_sop_instance_uid);
        CHECK_STR(info.study_uid, res.study_uid);
        rd_sr_info_free(&info);
        rd_store_review_item_clear(&it);
    }

    /* Same instances in another order: the same content version, nothing new. */
    const char *again[2] = {pa, lat};
    CHECK_OK(rd_pipeline_run_study(w, again, 2, &res, &err), &err);
    CHECK_EQ_INT(res.outcome, RD_PIPELINE_DONE_BEFORE);
    CHECK_OK(rd_store_count_reviews(rd_pipeline_worker_store(w), NULL, NULL, &n, &err), &err);
    CHECK_EQ_INT((int)n, 1);

    /* A CT study: skipped with its reason, recorded, and skipped again without work. */
    snprintf(ct, sizeof ct, "%s/dicom/codecs/CT-MONO2-16-ankle-implicit.dcm", shared);
    const char *ctf[1] = {ct};
    CHECK_OK(rd_pipeline_run_study(w, ctf, 1, &res, &err), &err);
    CHECK_EQ_INT(res.outcome, RD_PIPELINE_SKIPPED);
    CHECK(strstr(res.reason, "modality CT") != NULL);
    CHECK_OK(rd_pipeline_run_study(w, ctf, 1, &res, &err), &err);
    CHECK_EQ_INT(res.outcome, RD_PIPELINE_DONE_BEFORE);
    CHECK(strstr(res.reason, "modality CT") != NULL);

    /* A lateral alone has no frontal view. */
    write_case(dir, 2, pa, lat);
    const char *lonely[1] = {lat};
    CHECK_OK(rd_pipeline_run_study(w, lonely, 1, &res, &err), &err);
    CHECK_EQ_INT(res.outcome, RD_PIPELINE_SKIPPED);
    CHECK(strstr(res.reason, "no frontal view") != NULL);

    /* A file that is not DICOM at all is a failure with the stage named. */
    const char *bogus[1] = {model};
    CHECK(rd_pipeline_run_study(w, bogus, 1, &res, &err) != RD_OK);
    CHECK(strncmp(rd_error_message(&err), "read: ", 6) == 0);

    /* A queued job whose study cannot be read fails, with the stage's message on the job. */
    {
        static const char junk[] = "a stored instance that is not DICOM";
        rd_store_instance in = {"1.2.9", "1.2.9.1", "1.2.9.1.1", "", "", "CR", "T"};
        rd_store *s = rd_pipeline_worker_store(w);
        rd_store_job job;
        char msg[256];
        REQUIRE_OK(rd_store_put(s, &in, junk, sizeof junk, 0, NULL, &err), &err);
        REQUIRE_OK(rd_store_queue_stable(s, rd_store_now() + 100, 0, NULL, &err), &err);
        REQUIRE_OK(rd_store_job_claim(s, &job, &err), &err);
        CHECK(rd_pipeline_run_job(w, NULL, &job, &res, &err) != RD_OK);
        CHECK_OK(rd_store_count_jobs(s, "1.2.9", RD_JOB_FAILED, &n, &err), &err);
        CHECK_EQ_INT((int)n, 1);
        CHECK_OK(rd_store_job_error(s, job.id, msg, sizeof msg, &err), &err);
        CHECK(strncmp(msg, "read: ", 6) == 0);
    }

    rd_pipeline_worker_free(w);
    rd_pipeline_free(p);
}

static void post_wake(void *ctx)
{
    rd_wake_post(ctx);
}

RD_TEST(pool_wakes_on_queued_jobs_and_reports_each_job)
{
    const char *dir = rd_test_tmpdir("pl_pool");
    char model[1100], data[1100];
    static const char junk[] = "a stored instance that is not DICOM";
    rd_store_instance in = {"1.2.7", "1.2.7.1", "1.2.7.1.1", "", "", "CR", "T"};
    rd_config cfg;
    rd_pipeline_options po;
    rd_pipeline *p = NULL;
    rd_pipeline_pool *pool = NULL;
    rd_store *s = NULL;
    rd_wake done;
    rd_error err;
    long n = -1;
    struct timespec idle = {0, 300 * 1000 * 1000};
    snprintf(model, sizeof model, "%s/model", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    REQUIRE_OK(rd_nn_model_init("resnet-small", 1, model, &err), &err);
    rd_config_defaults(&cfg);
    REQUIRE(rd_strlcpy(cfg.encoder_model, model, sizeof cfg.encoder_model) <
            sizeof cfg.encoder_model);
    memset(&po, 0, sizeof po);
    po.data_dir = data;
    po.encoder_threads = 1;
    REQUIRE_OK(rd_wake_init(&done, &err), &err);
    REQUIRE_OK(rd_pipeline_create(&p, &cfg, &po, &err), &err);
    REQUIRE_OK(rd_pipeline_pool_start(&pool, p, 2, NULL, &err), &err);
    rd_pipeline_pool_set_on_done(pool, post_wake, &done);
    REQUIRE_OK(rd_store_open(&s, data, NULL, &err), &err);
    nanosleep(&idle, NULL); /* the workers are idle, waiting */
    /* A job that fails at once (its instance is not DICOM): the hook still runs. */
    REQUIRE_OK(rd_store_put(s, &in, junk, sizeof junk, 0, NULL, &err), &err);
    REQUIRE_OK(rd_store_queue_stable(s, rd_store_now() + 100, 0, NULL, &err), &err);
    rd_pipeline_pool_wake(pool);
    CHECK_EQ_INT(rd_wake_wait(&done, 10), 1);
    CHECK_OK(rd_store_count_jobs(s, "1.2.7", RD_JOB_FAILED, &n, &err), &err);
    CHECK_EQ_INT((int)n, 1);
    /* Stop wakes and joins the idle workers; NULL pools are accepted. */
    rd_pipeline_pool_stop(pool);
    rd_pipeline_pool_wake(NULL);
    rd_pipeline_pool_set_on_done(NULL, post_wake, &done);
    rd_store_close(s);
    rd_pipeline_free(p);
    rd_wake_destroy(&done);
}

RD_TEST(draft_files_writes_the_sr_and_records_nothing)
{
    const char *dir = rd_test_tmpdir("pl_draft");
    const char *shared = rd_test_shared_data();
    char model[1100], data[1100], pa[512], lat[512], ct[1100], out[1100];
    rd_config cfg;
    rd_pipeline_options po;
    rd_pipeline *p = NULL;
    rd_pipeline_worker *w = NULL;
    rd_pipeline_draft d;
    rd_pipeline_result res;
    rd_store_study_version sv;
    rd_error err;
    long n = -1;
    struct stat sb;
    snprintf(model, sizeof model, "%s/model", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(out, sizeof out, "%s/chosen-name.dcm", dir);
    REQUIRE_OK(rd_nn_model_init("resnet-small", 1, model, &err), &err);
    write_case(dir, 0, pa, lat);
    rd_config_defaults(&cfg);
    REQUIRE(rd_strlcpy(cfg.encoder_model, model, sizeof cfg.encoder_model) <
            sizeof cfg.encoder_model);
    memset(&po, 0, sizeof po);
    po.data_dir = data;
    po.encoder_threads = 1;
    REQUIRE_OK(rd_pipeline_create(&p, &cfg, &po, &err), &err);
    REQUIRE_OK(rd_pipeline_worker_create(&w, p, &err), &err);

    const char *files[2] = {lat, pa};
    CHECK_OK(rd_pipeline_draft_files(w, files, 2, out, &d, &err), &err);
    CHECK_EQ_INT(d.outcome, RD_PIPELINE_DRAFTED);
    CHECK_STR(d.sr_path, out);
    CHECK(stat(out, &sb) == 0 && sb.st_size > 0);
    CHECK_EQ_INT(d.frontal, 1);
    CHECK_STR(d.frontal_rule, "view position PA");
    CHECK(d.has_encoder_scores);
    CHECK_EQ_INT(d.n_neighbours, 0); /* an empty archive: the encoder's scores pass through */
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        CHECK_NEAR(d.combined[f], d.encoder[f], 1e-6);
    CHECK(d.draft.findings_text && d.draft.findings_text[0]);
    CHECK(d.model_version[0] && d.sr.sop_instance_uid[0]);
    CHECK_OK(rd_store_count_reviews(rd_pipeline_worker_store(w), NULL, NULL, &n, &err), &err);
    CHECK_EQ_INT((int)n, 0);
    CHECK_OK(rd_store_study_version_get(rd_pipeline_worker_store(w), d.study_uid, d.content_version,
                                        &sv, &err),
             &err);
    CHECK_EQ_INT(sv.found, 0);
    /* Nothing was recorded, so the pipeline still drafts the study, with the same text. */
    CHECK_OK(rd_pipeline_run_study(w, files, 2, &res, &err), &err);
    CHECK_EQ_INT(res.outcome, RD_PIPELINE_DRAFTED);
    CHECK_STR(res.content_version, d.content_version);
    rd_pipeline_draft_free(&d);
    CHECK(d.neighbours == NULL && d.draft.findings_text == NULL);

    /* A CT study: skipped with its reason, no SR, nothing recorded. */
    snprintf(ct, sizeof ct, "%s/dicom/codecs/CT-MONO2-16-ankle-implicit.dcm", shared);
    snprintf(out, sizeof out, "%s/ct-sr.dcm", dir);
    const char *ctf[1] = {ct};
    CHECK_OK(rd_pipeline_draft_files(w, ctf, 1, out, &d, &err), &err);
    CHECK_EQ_INT(d.outcome, RD_PIPELINE_SKIPPED);
    CHECK(strstr(d.reason, "modality CT") != NULL);
    CHECK(stat(out, &sb) != 0);
    CHECK_OK(rd_store_study_version_get(rd_pipeline_worker_store(w), d.study_uid, d.content_version,
                                        &sv, &err),
             &err);
    CHECK_EQ_INT(sv.found, 0);
    rd_pipeline_draft_free(&d);

    rd_pipeline_worker_free(w);
    rd_pipeline_free(p);
}

/* Localization through the pipeline: with every finding drafted (thresholds at 0), the
 * findings whose templates locate them are written with a side, the review item records the
 * side, zone and heat map of each, and each heat map is a PNG of the frontal image's aspect.
 * With generator.localize off, nothing of it. */
static void run_localized(int localize)
{
    const char *dir = rd_test_tmpdir(localize ? "pl_loc_on" : "pl_loc_off");
    char model[1100], data[1100], th[1100], pa[512], lat[512];
    rd_config cfg;
    rd_pipeline_options po;
    rd_pipeline *p = NULL;
    rd_pipeline_worker *w = NULL;
    rd_pipeline_result res;
    rd_store_review_item it;
    rd_error err;
    static const char all_present[] = "{\"default\": {\"present\": 0, \"uncertain\": 0}}";
    snprintf(model, sizeof model, "%s/model", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(th, sizeof th, "%s/th.json", dir);
    REQUIRE_OK(rd_nn_model_init("resnet-small", 3, model, &err), &err);
    REQUIRE_OK(rd_write_file_atomic(th, all_present, strlen(all_present), &err), &err);
    write_case(dir, 1, pa, lat);
    rd_config_defaults(&cfg);
    rd_strlcpy(cfg.encoder_model, model, sizeof cfg.encoder_model);
    rd_strlcpy(cfg.generator_thresholds, th, sizeof cfg.generator_thresholds);
    cfg.generator_localize = localize;
    memset(&po, 0, sizeof po);
    po.data_dir = data;
    po.encoder_threads = 1;
    REQUIRE_OK(rd_pipeline_create(&p, &cfg, &po, &err), &err);
    REQUIRE_OK(rd_pipeline_worker_create(&w, p, &err), &err);
    const char *files[2] = {lat, pa};
    REQUIRE_OK(rd_pipeline_run_study(w, files, 2, &res, &err), &err);
    REQUIRE(res.outcome == RD_PIPELINE_DRAFTED);
    CHECK_EQ_INT(res.n_present, RD_FINDING_N_ABNORMAL);
    memset(&it, 0, sizeof it);
    REQUIRE_OK(rd_store_review_get(rd_pipeline_worker_store(w), res.review_id, &it, &err), &err);
    cJSON *fo = cJSON_Parse(it.findings_json);
    REQUIRE(fo);
    int located = 0;
    static const rd_finding placed[] = {RD_FINDING_EFFUSION, RD_FINDING_PNEUMOTHORAX,
                                        RD_FINDING_ATELECTASIS};
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(fo, rd_finding_name((rd_finding)f));
        const cJSON *side = cJSON_GetObjectItemCaseSensitive(o, "side");
        const cJSON *hm = cJSON_GetObjectItemCaseSensitive(o, "heatmap");
        rd_side sd;
        if (!localize) {
            CHECK(!side && !hm);
            continue;
        }
        if (f == RD_FINDING_CARDIOMEGALY || f == RD_FINDING_HERNIA || f == RD_FINDING_NODULE ||
            f == RD_FINDING_MASS || f == RD_FINDING_PNEUMONIA) {
            CHECK(!side && !hm); /* no located sentences in the shipped templates */
            continue;
        }
        if (!cJSON_IsString(side))
            continue;
        located++;
        CHECK(rd_side_from_name(side->valuestring, &sd, NULL) == RD_OK);
        REQUIRE(cJSON_IsString(hm));
        rd_png_info pi;
        CHECK_OK(rd_png_read_info(hm->valuestring, &pi, &err), &err);
        /* The sample is 256 rows; its width keeps the frontal image's aspect. */
        CHECK_EQ_INT(pi.height, 256);
        CHECK(pi.width > 0 && pi.channels == 1);
        CHECK(hm->valuestring[0] == '/' && strstr(hm->valuestring, "/heatmaps/") != NULL);
    }
    for (size_t i = 0; localize && i < sizeof placed / sizeof placed[0]; i++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(fo, rd_finding_name(placed[i]));
        CHECK_MSG(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "side")), "%s has no side",
                  rd_finding_name(placed[i]));
    }
    if (localize)
        CHECK_MSG(located >= 6, "only %d findings located", located);
    int sided = strstr(it.findings_text, "right") || strstr(it.findings_text, "left") ||
                strstr(it.findings_text, "both");
    CHECK_EQ_INT(sided, localize);
    cJSON_Delete(fo);
    rd_store_review_item_clear(&it);
    rd_pipeline_worker_free(w);
    rd_pipeline_free(p);
}

RD_TEST(localized_draft_records_sides_and_heatmaps)
{
    run_localized(1);
}

RD_TEST(localize_off_names_no_side)
{
    run_localized(0);
}

RD_TEST(no_model_is_a_config_error)
{
    rd_config cfg;
    rd_pipeline *p = NULL;
    rd_error err;
    char path[64];
    rd_config_defaults(&cfg);
    cfg.encoder_model[0] = '\0'; /* the shipped model is the default: switch it off */
    CHECK(rd_pipeline_model_path(&cfg, path, sizeof path, &err) == RD_E_CONFIG);
    CHECK(rd_pipeline_create(&p, &cfg, NULL, &err) != RD_OK);
    CHECK(p == NULL);
}

RD_TEST(stale_sr_temporaries_removed_at_start)
{
    const char *dir = rd_test_tmpdir("pl_stale");
    char model[1100], srdir[1100], stale[1300], stale_fhir[1300], keep[1300], other[1300];
    rd_config cfg;
    rd_pipeline_options po;
    rd_pipeline *p = NULL;
    rd_error err;
    struct stat sb;
    FILE *fp;
    snprintf(model, sizeof model, "%s/model", dir);
    snprintf(srdir, sizeof srdir, "%s/sr", dir);
    REQUIRE_OK(rd_nn_model_init("resnet-small", 1, model, &err), &err);
    REQUIRE_OK(rd_mkdirs(srdir, &err), &err);
    /* What a process killed between writing and renaming an SR leaves, and a finished SR. */
    snprintf(stale, sizeof stale, "%s/1.2.3-0123456789abcdef-draft-sr.dcm.tmp-Ab12Cd", srdir);
    snprintf(stale_fhir, sizeof stale_fhir,
             "%s/1.2.3-0123456789abcdef-draft-fhir.json.tmp.otherhost@12174", srdir);
    snprintf(keep, sizeof keep, "%s/1.2.3-0123456789abcdef-draft-sr.dcm", srdir);
    snprintf(other, sizeof other, "%s/notes.txt.tmp-Ab12Cd", srdir); /* not the pipeline's */
    REQUIRE((fp = fopen(other, "wb")) != NULL);
    fclose(fp);
    REQUIRE((fp = fopen(stale, "wb")) != NULL);
    fclose(fp);
    REQUIRE((fp = fopen(stale_fhir, "wb")) != NULL);
    fclose(fp);
    REQUIRE((fp = fopen(keep, "wb")) != NULL);
    fclose(fp);
    rd_config_defaults(&cfg);
    REQUIRE(rd_strlcpy(cfg.encoder_model, model, sizeof cfg.encoder_model) <
            sizeof cfg.encoder_model);
    memset(&po, 0, sizeof po);
    po.data_dir = dir;
    po.sr_dir = srdir;
    po.encoder_threads = 1;
    REQUIRE_OK(rd_pipeline_create(&p, &cfg, &po, &err), &err);
    CHECK(stat(stale, &sb) != 0);
    CHECK(stat(stale_fhir, &sb) != 0);
    CHECK(stat(keep, &sb) == 0);
    CHECK(stat(other, &sb) == 0);
    rd_pipeline_free(p);
}

RD_TEST_MAIN()
