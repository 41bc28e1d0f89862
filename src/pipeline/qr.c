/* radraft — batch --from-pacs: the studies of a PACS as a job source for the pool.
 *
 * The query phase asks the PACS page by page and records what it found (radraft/store.h,
 * rd_store_qr_*); the run then takes the studies left to retrieve. A worker that claims one
 * retrieves it into its own folder (C-GET, or C-MOVE to radraft's listener, which files
 * what arrives there through rd_qr_batch_file_moved), drafts it as batch drafts a folder's
 * study, and records its state. It owns this run's study list, the rate limit and the
 * counters (see radraft/batch.h). */
#include "radraft/batch.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "radraft/dicomweb.h"
#include "radraft/log.h"
#include "radraft/qr.h"
#include "radraft/store.h"
#include "radraft/uid.h"
#include "base/util.h"

#define QR_PATH_MAX 1200

typedef struct qr_study {
    char uid[RD_UID_SIZE];
    int n_instances; /* as the PACS counted them when found: a change means new images */
    int attempts;
    int waiting;      /* failed once, waiting for its retry */
    double retry_due; /* while waiting */
} qr_study;

struct rd_qr_batch {
    pthread_mutex_t mu; /* guards what follows the options once the source is in use */
    rd_qr_batch_options o;
    char date_from[9], date_to[9], modalities[68], description[132], move_dest[RD_NET_AE_MAX + 1];
    char work_dir[1024];
    char dicomweb_url[1024], ca_file[1024], bearer[4100], user[256], password[4100];
    char source[320];    /* the PACS as "AE@host:port", its key in the store */
    char query_key[256]; /* the query's keys, the key of its pages */
    qr_study *studies;
    long n, cap, next, in_flight;
    long n_waiting;    /* studies waiting for a retry (scanned for only when there are some) */
    double next_start; /* the rate limit: no retrieval starts before */
    rd_batch_stats stats;
};

static void copy_opt(char *dst, size_t size, const char *src)
{
    rd_strlcpy(dst, src ? src : "", size);
}

rd_status rd_qr_batch_create(rd_qr_batch **out, const rd_qr_batch_options *o, rd_error *err)
{
    rd_qr_batch *qb = calloc(1, sizeof *qb);
    if (!qb)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    if (pthread_mutex_init(&qb->mu, NULL) != 0) {
        free(qb);
        return rd_error_set(err, RD_E_INTERNAL, "cannot create a mutex");
    }
    qb->o = *o;
    copy_opt(qb->date_from, sizeof qb->date_from, o->date_from);
    copy_opt(qb->date_to, sizeof qb->date_to, o->date_to);
    copy_opt(qb->modalities, sizeof qb->modalities, o->modalities ? o->modalities : "CR\\DX");
    copy_opt(qb->description, sizeof qb->description, o->description);
    copy_opt(qb->move_dest, sizeof qb->move_dest, o->move_destination);
    copy_opt(qb->work_dir, sizeof qb->work_dir, o->work_dir);
    qb->o.date_from = qb->date_from;
    qb->o.date_to = qb->date_to;
    qb->o.modalities = qb->modalities;
    qb->o.description = qb->description;
    qb->o.move_destination = qb->move_dest;
    qb->o.work_dir = qb->work_dir;
    if (o->dicomweb_url) {
        copy_opt(qb->dicomweb_url, sizeof qb->dicomweb_url, o->dicomweb_url);
        copy_opt(qb->ca_file, sizeof qb->ca_file, o->http.ca_file);
        copy_opt(qb->bearer, sizeof qb->bearer, o->http.bearer);
        copy_opt(qb->user, sizeof qb->user, o->http.user);
        copy_opt(qb->password, sizeof qb->password, o->http.password);
        qb->o.dicomweb_url = qb->dicomweb_url;
        qb->o.http.ca_file = qb->ca_file;
        qb->o.http.bearer = qb->bearer;
        qb->o.http.user = qb->user;
        qb->o.http.password = qb->password;
    }
    if (qb->o.page_days < 1)
        qb->o.page_days = 1;
    if (o->dicomweb_url)
        rd_strlcpy(qb->source, o->dicomweb_url, sizeof qb->source);
    else
        snprintf(qb->source, sizeof qb->source, "%s@%s:%d", o->peer.ae_title, o->peer.host,
                 o->peer.port);
    snprintf(qb->query_key, sizeof qb->query_key, "modalities=%s;description=%s", qb->modalities,
             qb->description);
    *out = qb;
    return RD_OK;
}

void rd_qr_batch_free(rd_qr_batch *qb)
{
    if (!qb)
        return;
    free(qb->studies);
    pthread_mutex_destroy(&qb->mu);
    free(qb);
}

/* ---- the query ---- */

typedef struct found_ctx {
    rd_qr_batch *qb;
    rd_store *s;
    long n;
} found_ctx;

static rd_status on_found(void *vctx, const rd_qr_study *m, rd_error *err)
{
    found_ctx *c = vctx;
    rd_store_qr_study st = {m->study_uid,   m->study_date, m->modalities,
                            m->description, m->accession,  m->n_instances};
    c->n++;
    return rd_store_qr_found(c->s, c->qb->source, &st, rd_store_now(), err);
}

/* The study query, by C-FIND or QIDO-RS. */
static rd_status find(rd_qr_batch *qb, const rd_qr_query *q, found_ctx *c, rd_qr_find_stats *fs,
                      rd_error *err)
{
    if (qb->o.dicomweb_url)
        return rd_dicomweb_find_studies(qb->o.dicomweb_url, &qb->o.http, q, on_found, c, fs, err);
    return rd_qr_find_studies(&qb->o.peer, &qb->o.scu, q, on_found, c, fs, err);
}

/* Days since 1970-01-01 of a YYYYMMDD date, and back. */
static long day_of(const char *d)
{
    struct tm t;
    memset(&t, 0, sizeof t);
    t.tm_year = (d[0] - '0') * 1000 + (d[1] - '0') * 100 + (d[2] - '0') * 10 + (d[3] - '0') - 1900;
    t.tm_mon = (d[4] - '0') * 10 + (d[5] - '0') - 1;
    t.tm_mday = (d[6] - '0') * 10 + (d[7] - '0');
    t.tm_hour = 12;
    return (long)(timegm(&t) / 86400);
}

static void date_of(long day, char out[9])
{
    time_t t = (time_t)day * 86400 + 43200;
    struct tm g;
    gmtime_r(&t, &g);
    strftime(out, 9, "%Y%m%d", &g);
}

/* One page [from, to]: asked unless done before; split in halves when it has too many
 * matches. A page that reaches today is asked every run (studies arrive on it). */
static rd_status query_page(rd_qr_batch *qb, rd_store *s, long from, long to, long today,
                            long *found, rd_error *err)
{
    char df[9], dt[9];
    int done = 0;
    rd_qr_find_stats fs;
    found_ctx c = {qb, s, 0};
    rd_status st;
    date_of(from, df);
    date_of(to, dt);
    if ((st = rd_store_qr_page_is_done(s, qb->source, qb->query_key, df, dt, &done, err)) !=
            RD_OK ||
        (done && to < today))
        return st;
    rd_qr_query q = {df, dt, qb->modalities, qb->description, qb->o.page_max_matches};
    st = find(qb, &q, &c, &fs, err);
    if (st == RD_E_TOO_LARGE && from < to) {
        long mid = from + (to - from) / 2;
        rd_log_info("batch: %s: %s-%s has more than %ld matches: asking it in two halves",
                    qb->source, df, dt, qb->o.page_max_matches);
        if ((st = query_page(qb, s, from, mid, today, found, err)) != RD_OK)
            return st;
        return query_page(qb, s, mid + 1, to, today, found, err);
    }
    if (st == RD_E_TOO_LARGE)
        return rd_error_prefix(err, st, "%s on %s alone (raise qr.page_max_matches)", qb->source,
                               df);
    if (st != RD_OK)
        return st;
    *found += c.n;
    if (fs.invalid || fs.filtered)
        rd_log_warn("batch: %s: %s-%s: %ld answers without a valid Study Instance UID and %ld "
                    "outside the query were left out",
                    qb->source, df, dt, fs.invalid, fs.filtered);
    return rd_store_qr_page_done(s, qb->source, qb->query_key, df, dt, c.n, rd_store_now(), err);
}

static rd_status add_study(void *vctx, const char *uid, int n_instances, rd_error *err)
{
    rd_qr_batch *qb = vctx;
    if (qb->n == qb->cap) {
        long ncap = qb->cap ? qb->cap * 2 : 64;
        qr_study *nv = realloc(qb->studies, (size_t)ncap * sizeof *nv);
        if (!nv)
            return rd_error_set(err, RD_E_NOMEM, "out of memory");
        qb->studies = nv;
        qb->cap = ncap;
    }
    memset(&qb->studies[qb->n], 0, sizeof qb->studies[0]);
    rd_strlcpy(qb->studies[qb->n].uid, uid, sizeof qb->studies[0].uid);
    qb->studies[qb->n].n_instances = n_instances;
    qb->n++;
    return RD_OK;
}

rd_status rd_qr_batch_query(rd_qr_batch *qb, rd_store *s, long *found, rd_error *err)
{
    long n = 0, today = (long)(time(NULL) / 86400);
    rd_status st;
    if (!qb->date_from[0]) {
        /* No start date: one query, which must fit in a page. */
        found_ctx c = {qb, s, 0};
        rd_qr_find_stats fs;
        rd_qr_query q = {NULL, qb->date_to, qb->modalities, qb->description,
                         qb->o.page_max_matches};
        st = find(qb, &q, &c, &fs, err);
        if (st == RD_E_TOO_LARGE)
            return rd_error_prefix(err, st, "give --since so that the query is asked in pages");
        if (st != RD_OK)
            return st;
        n = c.n;
    } else {
        long from = day_of(qb->date_from), to = qb->date_to[0] ? day_of(qb->date_to) : today;
        for (long d = from; d <= to; d += qb->o.page_days) {
            long end = d + qb->o.page_days - 1 < to ? d + qb->o.page_days - 1 : to;
            if ((st = query_page(qb, s, d, end, today, &n, err)) != RD_OK)
                return st;
        }
    }
    if (found)
        *found = n;
    /* This run's studies: those still to retrieve, oldest first. */
    st = rd_store_qr_each(s, qb->source, (1u << RD_QR_QUERIED) | (1u << RD_QR_RETRIEVED),
                          qb->o.limit, add_study, qb, err);
    qb->stats.studies = qb->n;
    return st;
}

/* ---- the source ---- */

static void fill_job(rd_qr_batch *qb, long i, rd_store_job *job)
{
    qr_study *q = &qb->studies[i];
    q->attempts++;
    if (q->waiting)
        qb->n_waiting--;
    q->waiting = 0;
    job->id = i;
    rd_strlcpy(job->study_uid, q->uid, sizeof job->study_uid);
    job->attempts = q->attempts;
    qb->in_flight++;
}

static rd_status qr_claim(void *ctx, rd_pipeline_worker *w, rd_store_job *job, int *finished,
                          rd_error *err)
{
    rd_qr_batch *qb = ctx;
    rd_status st = RD_E_NOT_FOUND;
    double now = rd_store_now();
    (void)w;
    (void)err;
    pthread_mutex_lock(&qb->mu);
    if (qb->o.studies_per_minute > 0 && now < qb->next_start) {
        pthread_mutex_unlock(&qb->mu);
        return RD_E_NOT_FOUND; /* the rate limit: not yet */
    }
    for (long k = 0; qb->n_waiting > 0 && k < qb->next && st != RD_OK; k++)
        if (qb->studies[k].waiting && qb->studies[k].retry_due <= now) {
            fill_job(qb, k, job);
            st = RD_OK;
        }
    if (st != RD_OK && qb->next < qb->n) {
        fill_job(qb, qb->next++, job);
        st = RD_OK;
    }
    if (st == RD_OK && qb->o.studies_per_minute > 0)
        qb->next_start =
            (now > qb->next_start ? now : qb->next_start) + 60.0 / qb->o.studies_per_minute;
    if (st != RD_OK && qb->in_flight == 0 && qb->n_waiting == 0 && qb->next >= qb->n)
        *finished = 1;
    pthread_mutex_unlock(&qb->mu);
    return st;
}

static rd_status study_dir(const rd_qr_batch *qb, const char *uid, char out[QR_PATH_MAX],
                           rd_error *err)
{
    /* A valid UID is digits and dots: safe as a folder name. */
    if (!rd_uid_valid(uid) ||
        (size_t)snprintf(out, QR_PATH_MAX, "%s/%s", qb->work_dir, uid) >= QR_PATH_MAX)
        return rd_error_set(err, RD_E_INVALID, "study %.80s: no folder for it", uid);
    return RD_OK;
}

/* Removes the files of a study's folder, then (with `rmdir_too`) the folder. */
static void clear_dir(const char *dir, int rmdir_too)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[QR_PATH_MAX + 300];
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    if (rmdir_too)
        rmdir(dir);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The .dcm files of a folder, sorted. */
static rd_status list_dir(const char *dir, char ***files, int *n, rd_error *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **v = NULL;
    int cnt = 0, cap = 0;
    if (!d)
        return rd_error_set(err, RD_E_IO, "%s: %s", dir, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        char path[QR_PATH_MAX + 300];
        if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".dcm") != 0)
            continue;
        if (cnt >= RD_STORE_STUDY_MAX_FILES) {
            closedir(d);
            rd_store_free_paths(v, cnt);
            return rd_error_set(err, RD_E_TOO_LARGE, "a study of more than %d instances",
                                RD_STORE_STUDY_MAX_FILES);
        }
        if (cnt == cap) {
            int ncap = cap ? cap * 2 : 16;
            char **nv = realloc(v, (size_t)ncap * sizeof *nv);
            if (!nv)
                goto nomem;
            v = nv;
            cap = ncap;
        }
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!(v[cnt] = strdup(path)))
            goto nomem;
        cnt++;
    }
    closedir(d);
    if (cnt > 1)
        qsort(v, (size_t)cnt, sizeof *v, cmp_str);
    *files = v;
    *n = cnt;
    return RD_OK;
nomem:
    closedir(d);
    rd_store_free_paths(v, cnt);
    return rd_error_set(err, RD_E_NOMEM, "out of memory");
}

static rd_status qr_files(void *ctx, rd_pipeline_worker *w, const rd_store_job *job, char ***files,
                          int *n, rd_error *err)
{
    rd_qr_batch *qb = ctx;
    char dir[QR_PATH_MAX];
    rd_qr_retrieve_stats rs;
    rd_status st;
    if ((st = study_dir(qb, job->study_uid, dir, err)) != RD_OK ||
        (st = rd_mkdirs(dir, err)) != RD_OK)
        return st;
    clear_dir(dir, 0); /* what an interrupted run left */
    if (qb->o.dicomweb_url)
        st = rd_dicomweb_get_study(qb->o.dicomweb_url, &qb->o.http, job->study_uid, dir,
                                   qb->o.max_study_bytes, &rs, err);
    else if (qb->o.use_move)
        st = rd_qr_move_study(&qb->o.peer, &qb->o.scu, job->study_uid, qb->move_dest, &rs, err);
    else
        st = rd_qr_get_study(&qb->o.peer, &qb->o.scu, job->study_uid, dir, &rs, err);
    if (st == RD_OK)
        st = list_dir(dir, files, n, err);
    if (st == RD_OK && *n == 0) {
        rd_store_free_paths(*files, 0);
        *files = NULL;
        st = rd_error_set(err, RD_E_NOT_FOUND, "study %s: nothing arrived from %s", job->study_uid,
                          qb->source);
    }
    if (st != RD_OK)
        return st;
    if (rs.refused > 0)
        rd_log_warn("batch: study %s: %d instance(s) from %s refused (another study, invalid "
                    "UIDs or unreadable)",
                    job->study_uid, rs.refused, qb->source);
    pthread_mutex_lock(&qb->mu);
    qb->stats.instances += *n;
    pthread_mutex_unlock(&qb->mu);
    rd_error e;
    if (rd_store_qr_set_state(rd_pipeline_worker_store(w), qb->source, job->study_uid,
                              RD_QR_RETRIEVED, NULL, 0, -1, rd_store_now(), &e) != RD_OK)
        rd_log_error("batch: study %s: %s", job->study_uid, rd_error_message(&e));
    return RD_OK;
}

static rd_status qr_finish(void *ctx, rd_pipeline_worker *w, const rd_store_job *job, rd_status st,
                           const rd_pipeline_result *res, const char *error, double retry_delay,
                           rd_error *err)
{
    rd_qr_batch *qb = ctx;
    char dir[QR_PATH_MAX];
    rd_qr_state state = RD_QR_QUERIED;
    int retry = st != RD_OK && retry_delay >= 0;
    int done_instances = -1;
    rd_status out = RD_OK;
    if (st != RD_OK)
        state = retry ? RD_QR_QUERIED : RD_QR_FAILED;
    else if (res->outcome == RD_PIPELINE_SKIPPED)
        state = RD_QR_SKIPPED;
    else if (res->outcome == RD_PIPELINE_IMPORTED)
        state = RD_QR_IMPORTED;
    else
        state = RD_QR_DRAFTED;
    if (st == RD_OK) {
        pthread_mutex_lock(&qb->mu);
        done_instances = qb->studies[job->id].n_instances;
        pthread_mutex_unlock(&qb->mu);
    }
    /* The state first: a crash after it re-retrieves nothing drafted. */
    if ((out = rd_store_qr_set_state(rd_pipeline_worker_store(w), qb->source, job->study_uid, state,
                                     st == RD_OK ? NULL : error, st == RD_OK ? res->review_id : 0,
                                     done_instances, rd_store_now(), err)) != RD_OK)
        rd_log_error("batch: study %s: cannot record its state: %s", job->study_uid,
                     rd_error_message(err));
    if (!qb->o.keep && study_dir(qb, job->study_uid, dir, NULL) == RD_OK)
        clear_dir(dir, 1);
    pthread_mutex_lock(&qb->mu);
    qb->in_flight--;
    if (retry) {
        qb->studies[job->id].waiting = 1;
        qb->n_waiting++;
        qb->studies[job->id].retry_due = rd_store_now() + retry_delay;
    } else {
        qb->stats.finished++;
        if (st != RD_OK)
            qb->stats.failed++;
        else
            rd_batch_stats_count(&qb->stats, res);
    }
    pthread_mutex_unlock(&qb->mu);
    if (retry)
        rd_log_warn("batch: study %s: attempt %d failed, retrying in %.0f s: %s", job->study_uid,
                    job->attempts, retry_delay, error);
    else if (st != RD_OK)
        rd_log_error("batch: study %s failed: %s", job->study_uid, error);
    return out;
}

rd_pipeline_source rd_qr_batch_source(rd_qr_batch *qb)
{
    /* Block 1: radraft batch sets pipeline.block (drafting only; an import runs alone). */
    rd_pipeline_source src = {
        qb, qr_claim, qr_files, qr_finish, qb->o.import_reports ? rd_pipeline_import_study : NULL,
        1};
    return src;
}

void rd_qr_batch_get_stats(rd_qr_batch *qb, rd_batch_stats *out)
{
    pthread_mutex_lock(&qb->mu);
    *out = qb->stats;
    pthread_mutex_unlock(&qb->mu);
}

const char *rd_qr_batch_work_dir(const rd_qr_batch *qb)
{
    return qb->work_dir;
}

rd_status rd_qr_batch_file_moved(rd_qr_batch *qb, const char *study_uid,
                                 const char *sop_instance_uid, const char *spool, rd_error *err)
{
    char dir[QR_PATH_MAX], path[QR_PATH_MAX + RD_UID_SIZE + 8];
    rd_status st;
    if ((st = study_dir(qb, study_uid, dir, err)) != RD_OK || !rd_uid_valid(sop_instance_uid)) {
        unlink(spool);
        return st != RD_OK ? st : rd_error_set(err, RD_E_INVALID, "invalid SOP Instance UID");
    }
    /* Only a study this run is retrieving has a folder: anything else is refused. */
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        unlink(spool);
        return rd_error_set(err, RD_E_INVALID, "study %s is not being retrieved", study_uid);
    }
    snprintf(path, sizeof path, "%s/%s.dcm", dir, sop_instance_uid);
    if (rename(spool, path) != 0) {
        st = rd_error_set(err, RD_E_IO, "%s: %s", path, strerror(errno));
        unlink(spool);
        return st;
    }
    return RD_OK;
}
