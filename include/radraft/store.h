/* radraft — the durable store: DICOM files laid out by sanitized UIDs under a data
 * directory, and the SQLite index beside them (instances, studies, jobs, outbox).
 *
 * Layout of a data directory:
 *   store/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm   the received files
 *   radraft.db                                          SQLite (WAL), schema versioned
 *
 * Only UIDs that pass rd_store_uid_valid() ever become path components, so a hostile UID
 * ("../x", "/etc", 200 characters) is refused before any file is touched.
 *
 * Threads: an rd_store is one SQLite connection and must be used by one thread at a time;
 * every thread opens its own (WAL and a busy timeout make them share the database). The
 * data directory may be opened by many handles in one process at once.
 *
 * Durability: rd_store_put() returns RD_OK only after the file is written, fsynced,
 * renamed into place, its directory fsynced and its row committed (synchronous=FULL), so
 * that a caller may acknowledge the instance (C-STORE success) once it returns.
 */
#ifndef RADRAFT_STORE_H
#define RADRAFT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "radraft/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_STORE_UID_MAX 64

typedef struct rd_store rd_store;

/* What to do when an instance arrives whose SOP Instance UID is stored with different
 * content (a same-content duplicate is always a success with no second copy). */
typedef enum rd_store_dup_policy {
    RD_STORE_DUP_KEEP_FIRST = 0, /* keep the stored file, acknowledge, log a warning */
    RD_STORE_DUP_REPLACE = 1     /* replace the file and its row, log a warning */
} rd_store_dup_policy;

typedef struct rd_store_options {
    rd_store_dup_policy duplicate_policy;
    int busy_timeout_ms; /* SQLite busy timeout; 0 means the default (30000) */
} rd_store_options;

void rd_store_options_default(rd_store_options *opts);

/* Parses "keep-first" or "replace". */
rd_status rd_store_dup_policy_parse(const char *text, rd_store_dup_policy *out, rd_error *err);

/* 1 if `uid` is safe as a file name component and a valid UID: 1 to 64 characters, digits
 * and dots only, no empty component (so no "..", no leading or trailing dot). */
int rd_store_uid_valid(const char *uid);

/* Opens (creating when needed) the data directory and its database, applies the schema
 * migrations, and returns a new handle in *out that the caller closes with rd_store_close.
 * `opts` may be NULL for the defaults. Errors: RD_E_IO (directory), RD_E_DB. */
rd_status rd_store_open(rd_store **out, const char *data_dir, const rd_store_options *opts,
                        rd_error *err);

/* Closes the connection and frees the handle. Accepts NULL. */
void rd_store_close(rd_store *s);

/* The schema version of an open store (the number of migrations applied). */
int rd_store_schema_version(rd_store *s);

/* Once per process start, before serving: jobs left 'running' and deliveries left
 * 'sending' by a crash go back to 'queued'/'pending', and stray temporary files under
 * store/ are removed. */
rd_status rd_store_recover(rd_store *s, rd_error *err);

/* ---- instances ---- */

/* Identity of an arriving instance; the UIDs must be valid (rd_store_uid_valid), the other
 * fields may be NULL or "". Strings are borrowed for the call. */
typedef struct rd_store_instance {
    const char *study_uid;
    const char *series_uid;
    const char *sop_instance_uid;
    const char *sop_class_uid;
    const char *transfer_syntax_uid;
    const char *modality;
    const char *calling_ae;
} rd_store_instance;

typedef enum rd_store_put_result {
    RD_STORE_NEW = 0,        /* a new instance, written and indexed */
    RD_STORE_SAME = 1,       /* already stored with the same content; nothing written */
    RD_STORE_KEPT_FIRST = 2, /* different content, policy keep-first: nothing written */
    RD_STORE_REPLACED = 3    /* different content, policy replace: file and row replaced */
} rd_store_put_result;

/* Stores one Part 10 file (`data`, `len` bytes). Content identity (duplicates) is the
 * SHA-256 of the bytes from `hash_offset` on (the dataset, so that a resend with another
 * file meta header is still the same content), computed only when a SOP Instance UID
 * arrives a second time (then cached in the row). On RD_OK the file is durable and indexed
 * and *result (may be NULL) says what happened; on failure nothing is left half-written
 * and no row is added. Errors: RD_E_INVALID (a UID fails rd_store_uid_valid), RD_E_IO
 * (disk full, I/O error), RD_E_DB. */
rd_status rd_store_put(rd_store *s, const rd_store_instance *inst, const void *data, size_t len,
                       size_t hash_offset, rd_store_put_result *result, rd_error *err);

/* Writes the absolute path of a stored instance into `path` (RD_E_NOT_FOUND if absent). */
rd_status rd_store_instance_path(rd_store *s, const char *sop_instance_uid, char *path, size_t size,
                                 rd_error *err);

/* Number of indexed instances (all, or of one study when study_uid is not NULL). */
rd_status rd_store_count_instances(rd_store *s, const char *study_uid, long *count, rd_error *err);

/* ---- studies and jobs ---- */

typedef enum rd_job_state {
    RD_JOB_QUEUED = 0,
    RD_JOB_RUNNING = 1,
    RD_JOB_DONE = 2,
    RD_JOB_FAILED = 3
} rd_job_state;

const char *rd_job_state_name(rd_job_state state);

/* Queues one job for every study that received an instance since its last job and has
 * received nothing for `stable_seconds` (at time `now`, seconds since the epoch).
 * *queued (may be NULL) gets the number of jobs queued. */
rd_status rd_store_queue_stable(rd_store *s, double now, double stable_seconds, int *queued,
                                rd_error *err);

typedef struct rd_store_job {
    int64_t id;
    char study_uid[RD_STORE_UID_MAX + 1];
    int attempts;
} rd_store_job;

/* Takes the oldest queued job, marks it running and fills *job. RD_E_NOT_FOUND when the
 * queue is empty. */
rd_status rd_store_job_claim(rd_store *s, rd_store_job *job, rd_error *err);

/* Ends a running job: done (and its study marked ready) when `error` is NULL, else
 * failed with the message. */
rd_status rd_store_job_finish(rd_store *s, int64_t job_id, const char *error, rd_error *err);

/* Number of jobs of a study (NULL: all) in a state (-1: any state). */
rd_status rd_store_count_jobs(rd_store *s, const char *study_uid, int state, long *count,
                              rd_error *err);

/* ---- outbox (deliveries to DICOM destinations) ---- */

typedef struct rd_store_delivery {
    int64_t id;
    char file[1024];
    char destination[256]; /* "AE@host:port" */
    int attempts;
} rd_store_delivery;

/* Queues the delivery of a file to a destination; *id (may be NULL) gets its row id. A
 * file already queued or delivered to that destination is not queued again. */
rd_status rd_store_outbox_add(rd_store *s, const char *file, const char *destination, double now,
                              int64_t *id, rd_error *err);

/* Takes the pending delivery due first (next_attempt <= now), marks it 'sending' and fills
 * *d. RD_E_NOT_FOUND when none is due. */
rd_status rd_store_outbox_claim(rd_store *s, double now, rd_store_delivery *d, rd_error *err);

/* Records the outcome of a claimed delivery: `error` NULL means the peer confirmed it
 * (state 'done', never sent again). Otherwise attempts+1 and the next attempt is due after
 * min(retry_max, retry_initial * 2^(attempts-1)) seconds, or the delivery is 'failed' once
 * `max_attempts` (> 0) attempts were made. */
rd_status rd_store_outbox_result(rd_store *s, int64_t id, const char *error, double now,
                                 double retry_initial, double retry_max, int max_attempts,
                                 rd_error *err);

/* Number of deliveries in a state ("pending", "sending", "done", "failed"; NULL: all). */
rd_status rd_store_outbox_count(rd_store *s, const char *state, long *count, rd_error *err);

/* ---- helpers ---- */

/* SHA-256 of `len` bytes as 64 lowercase hex digits plus NUL. */
void rd_sha256_hex(const void *data, size_t len, char out[65]);

/* Seconds since the epoch, with sub-second precision. */
double rd_store_now(void);

#ifdef __cplusplus
}
#endif
#endif
