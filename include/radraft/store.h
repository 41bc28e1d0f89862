/* radraft — the durable store: DICOM files laid out by sanitized UIDs under a data
 * directory, and the index beside them (instances, studies, jobs, outbox, review items, the
 * archive of past studies): SQLite in the directory, or a PostgreSQL schema that several
 * nodes share (store_pg.c).
 *
 * Layout of a data directory:
 *   store/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm   the received files
 *   radraft.db                                          SQLite (WAL), schema versioned
 *   store-id                                            on PostgreSQL: the folder's id,
 *                                                       which its schema records
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
 * that a caller may acknowledge the instance (C-STORE success) once it returns. Handles
 * that share a commit group (rd_store_options.group) commit the rows of concurrent puts
 * together, one sync for all; each put still returns only after its own row is committed.
 *
 * Errors: every database failure is RD_E_DB with SQLite's message and what the store was
 * doing; a lock another connection holds longer than the busy timeout is one of them.
 *
 * The sections below follow the store's source files (src/store/): the database, the file
 * store, instances and studies, the job queue, the outbox, review items, the archive.
 */
#ifndef RADRAFT_STORE_H
#define RADRAFT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "radraft/error.h"
#include "radraft/limits.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the database: options, opening, schema (store_db.c) ---- */

/* One open data directory: a connection to its database and the options it was opened
 * with. */
typedef struct rd_store_archive_row rd_store_archive_row;
typedef struct rd_store rd_store;

/* What to do when an instance arrives whose SOP Instance UID is stored with different
 * content (a same-content duplicate is always a success with no second copy). */
typedef enum rd_store_dup_policy {
    RD_STORE_DUP_KEEP_FIRST = 0, /* keep the stored file, acknowledge, log a warning */
    RD_STORE_DUP_REPLACE = 1     /* replace the file and its row, log a warning */
} rd_store_dup_policy;

/* Where the index lives: SQLite beside the files (the default), or a PostgreSQL database
 * that several nodes share (the files then on a folder every node mounts). */
typedef enum rd_store_backend { RD_STORE_SQLITE = 0, RD_STORE_POSTGRESQL = 1 } rd_store_backend;

#define RD_STORE_DSN_MAX 1024

typedef struct rd_store_options {
    rd_store_dup_policy duplicate_policy;
    /* How long a statement waits for another connection's lock (SQLite's busy timeout,
     * PostgreSQL's lock_timeout); 0 means the default (30000). */
    int busy_timeout_ms;
    rd_store_backend backend;
    char postgresql_dsn[RD_STORE_DSN_MAX]; /* libpq connection string or URI */
    /* The store's schema; "" is "radraft"; "auto" is "radraft_" and the start of the data
     * folder's id (DATA/store-id), a schema of its own for every data folder. */
    char postgresql_schema[64];
    /* This node's name in the jobs and deliveries it takes ("": none, a single node), and
     * how long a node may go without a heartbeat before its work goes to the others. */
    char node[64];
    double node_timeout_seconds;
    /* Group commit (SQLite): the handles of one node that share a group put their rows in
     * one transaction whenever several puts arrive at once (rd_store_group_create); NULL:
     * each put commits alone. Borrowed: the group outlives every handle opened with it. */
    struct rd_store_group *group;
    /* With a group (SQLite): nothing of a put is synced alone, neither its spool file
     * (rd_store_put_file), its folder nor the WAL at the commit; after the group's commit
     * its leader makes the group's files, renames and rows durable with one syncfs of the
     * data directory's file system, before any put of the group returns (store.sync
     * filesystem). Rows between commit and syncfs are listed, for rd_store_recover. */
    int sync_filesystem;
    /* store.sync auto: sync_filesystem is decided when the store opens, 1 when the data
     * directory is the root of a file system of its own (a mount point), where a syncfs
     * writes nothing of other programs. */
    int sync_auto;
} rd_store_options;

void rd_store_options_default(rd_store_options *opts);

struct rd_config;

/* The store options of a configuration (store.duplicate_policy, store.backend,
 * store.postgresql_dsn, store.postgresql_schema). RD_E_INVALID names the bad key. */
rd_status rd_store_options_from_config(rd_store_options *opts, const struct rd_config *cfg,
                                       rd_error *err);

/* A commit group: the C-STORE associations of one node, each with its own handle, whose
 * concurrent puts are indexed in one transaction and one sync of the WAL (the first put to
 * find none running leads it, the others wait for its commit; with store.sync file each
 * put's file is synced before and the group's folders once each before the commit; with
 * store.sync filesystem one syncfs after it does all). A put that fails in a group fails
 * alone. */
typedef struct rd_store_group rd_store_group;

rd_status rd_store_group_create(rd_store_group **out, rd_error *err);
void rd_store_group_free(rd_store_group *g);

/* The group's transactions so far and the instances they indexed. */
void rd_store_group_stats(rd_store_group *g, long *transactions, long *instances);

/* Parses "sqlite" or "postgresql". */
rd_status rd_store_backend_parse(const char *text, rd_store_backend *out, rd_error *err);

/* Parses "keep-first" or "replace". */
rd_status rd_store_dup_policy_parse(const char *text, rd_store_dup_policy *out, rd_error *err);

/* Opens (creating when needed) the data directory and its database, applies the schema
 * migrations, and returns a new handle in *out that the caller closes with rd_store_close.
 * `opts` may be NULL for the defaults. Errors: RD_E_IO (directory), RD_E_DB. */
rd_status rd_store_open(rd_store **out, const char *data_dir, const rd_store_options *opts,
                        rd_error *err);

/* Closes the connection and frees the handle. Accepts NULL. */
void rd_store_close(rd_store *s);

/* The schema version of an open store (the number of migrations applied). */
int rd_store_schema_version(rd_store *s);

/* ---- reprocessing runs: batch --queue (store_runs.c) ---- */

#define RD_STORE_RUN_LABEL_MAX 1000

/* What the job queue did with a run's studies. Each study counts once, by its latest job
 * queued since it was added: waiting (none yet: not stable yet), queued, running, done or
 * failed; the done ones were drafted, skipped, or neither (drafted before: done - drafted -
 * skipped). */
typedef struct rd_store_run_progress {
    double created_at;
    long studies, waiting, queued, running, done, failed;
    long drafted, skipped;
} rd_store_run_progress;

/* A new run named `label` (the folders it came from); *id gets its number. */
rd_status rd_store_run_create(rd_store *s, const char *label, int64_t *id, rd_error *err);

/* Adds a study to a run at time `now` (rd_store_now()), after its files are stored. */
rd_status rd_store_run_add_study(rd_store *s, int64_t run_id, const char *study_uid, double now,
                                 rd_error *err);

/* The run's progress; RD_E_NOT_FOUND when there is no such run. */
rd_status rd_store_run_get(rd_store *s, int64_t run_id, rd_store_run_progress *p, rd_error *err);

/* ---- copying an index into PostgreSQL (store_copy.c) ---- */

/* The tables rd_store_copy copies. */
#define RD_STORE_COPY_TABLES 15

typedef struct rd_store_copied {
    const char *table;
    long rows;
} rd_store_copied;

/* Copies every row of the SQLite store `from` into the PostgreSQL store `to`, which must be
 * at the same schema version and hold no row yet, in one transaction of `to`: either all of
 * it arrives, counted again there, or nothing. copied[] gets each table's rows. Stop every
 * node of `from` first: rows written during the copy are not in it. RD_E_INVALID: wrong
 * backends, versions, or `to` not empty. */
rd_status rd_store_copy(rd_store *from, rd_store *to, rd_store_copied copied[RD_STORE_COPY_TABLES],
                        rd_error *err);

/* ---- the file store: file names, recovery (store_files.c) ---- */

/* Longest UID (DICOM's limit), and so the longest component of a stored file's path. */
#define RD_STORE_UID_MAX RD_UID_MAX

/* 1 if `uid` is safe as a file name component: rd_uid_valid (1 to 64 digits and dots, no
 * empty component, so no "..", no leading or trailing dot; no leading zero, so that "1.02"
 * cannot stand beside "1.2"). */
int rd_store_uid_valid(const char *uid);

/* Once per process start, before serving: jobs left 'running' and deliveries left
 * 'sending' by a crash of this node (or by a node with no name, or one whose heartbeat is
 * older than the node timeout) go back to 'queued'/'pending', the node's heartbeat is
 * recorded, instance rows that a power cut left without their file (store.sync filesystem:
 * committed, not yet synced, never answered) are removed, and stray temporary files under
 * store/ and spool/ are removed (on PostgreSQL, whose files other nodes share, only those
 * older than ten minutes). */
rd_status rd_store_recover(rd_store *s, rd_error *err);

/* A running node's sign of life (every few seconds): records its heartbeat, and puts the
 * jobs and deliveries of every other node whose heartbeat is older than the node timeout
 * back in the queues; *requeued (may be NULL) gets how many. A node without a name
 * (opts.node "") does nothing. */
rd_status rd_store_node_heartbeat(rd_store *s, double now, int *requeued, rd_error *err);

/* ---- instances and studies (store_instances.c) ---- */

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

/* Creates an empty file of this store's spool folder (DATA/spool, on the same file system
 * as the store) for an arriving instance, open for writing as *fd (the caller closes it),
 * its name in `path`. The caller writes the instance there and hands it to
 * rd_store_put_file, or unlinks it; what a crash leaves there is removed by
 * rd_store_recover. */
rd_status rd_store_spool_create(rd_store *s, char *path, size_t size, int *fd, rd_error *err);

/* rd_store_put for an instance written to a spool file (rd_store_spool_create): the file
 * is fsynced and renamed into place, not copied, so that an instance is never held in
 * memory whole. The spool file is gone on return, whatever the outcome. */
rd_status rd_store_put_file(rd_store *s, const rd_store_instance *inst, const char *spool,
                            size_t hash_offset, rd_store_put_result *result, rd_error *err);

/* Writes the absolute path of a stored instance into `path` (RD_E_NOT_FOUND if absent). */
rd_status rd_store_instance_path(rd_store *s, const char *sop_instance_uid, char *path, size_t size,
                                 rd_error *err);

/* Number of indexed instances (all, or of one study when study_uid is not NULL). */
rd_status rd_store_count_instances(rd_store *s, const char *study_uid, long *count, rd_error *err);

/* Most instances of one study that rd_store_study_files lists. */
#define RD_STORE_STUDY_MAX_FILES RD_STUDY_MAX_INSTANCES

/* The absolute paths of a study's stored instances, ordered by series and SOP Instance
 * UID. On success the caller owns *paths (*n strings; free with rd_store_free_paths).
 * RD_E_TOO_LARGE above RD_STORE_STUDY_MAX_FILES instances. */
rd_status rd_store_study_files(rd_store *s, const char *study_uid, char ***paths, int *n,
                               rd_error *err);
/* Frees a list from rd_store_study_files. Accepts NULL. */
void rd_store_free_paths(char **paths, int n);

/* What became of one content version of a study (a study's content version names the set
 * of its image instances, so that a study is drafted once per version). */
typedef struct rd_store_study_version {
    int found;         /* 0: never processed */
    int drafted;       /* 1: drafted (review_id names the item); 0: skipped */
    char reason[512];  /* why it was skipped */
    int64_t review_id; /* the review item of a draft */
} rd_store_study_version;

rd_status rd_store_study_version_get(rd_store *s, const char *study_uid,
                                     const char *content_version, rd_store_study_version *out,
                                     rd_error *err);

/* Records that a content version of a study gets no draft, and why ("not a chest
 * radiograph: modality CT"). A version already recorded keeps its first outcome. */
/* Number of study versions with an outcome ("drafted", "skipped"; NULL: any). */
rd_status rd_store_count_study_versions(rd_store *s, const char *outcome, long *count,
                                        rd_error *err);

rd_status rd_store_study_skip(rd_store *s, const char *study_uid, const char *content_version,
                              const char *reason, rd_error *err);

/* ---- the job queue: stable studies, claim, finish, retry (store_jobs.c) ---- */

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

/* *due = the earliest time (seconds since the epoch) at which a study that received an
 * instance since its last job becomes stable: MIN(last_received) over those studies plus
 * `stable_seconds`; -1 when there is none. Lets a scheduler sleep until then. */
rd_status rd_store_next_stable_due(rd_store *s, double stable_seconds, double *due, rd_error *err);

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

/* Puts a running job back in the queue with its error message (what failed, for the
 * operator); it is not claimed again before `delay_seconds` from now. */
rd_status rd_store_job_retry(rd_store *s, int64_t job_id, const char *error, double delay_seconds,
                             rd_error *err);

/* Adds a job in state 'running' for a study that the caller ran itself rather than through
 * the queue (radraft batch, whose files are not in the store), with the `attempts` (>= 1)
 * it made; the caller ends it at once with rd_store_job_finish, which records the outcome
 * (and a failure's message) exactly as for a claimed job. *job gets its id, study and
 * attempts. Only the queue's jobs are ever claimed: this one is never run by `serve`
 * (unless a crash leaves it running, when rd_store_recover queues it like any other).
 * `study_uid` is stored as given (1..RD_STORE_UID_MAX characters; it need not pass
 * rd_store_uid_valid, as a malformed UID may be why the study failed). */
rd_status rd_store_job_begin(rd_store *s, const char *study_uid, int attempts, rd_store_job *job,
                             rd_error *err);

/* The last error recorded on a job ("" when none) into `buf`. RD_E_NOT_FOUND: no such job. */
rd_status rd_store_job_error(rd_store *s, int64_t job_id, char *buf, size_t size, rd_error *err);

/* ---- batch --from-pacs: studies found at a PACS and their states (store_qr.c) ---- */

typedef enum rd_qr_state {
    RD_QR_QUERIED = 0, /* found, not retrieved yet (or to be retrieved again) */
    RD_QR_RETRIEVED,   /* its instances arrived, not drafted yet */
    RD_QR_DRAFTED,     /* drafted (or drafted before in the same content version) */
    RD_QR_SKIPPED,     /* retrieved, not a study to draft (the pipeline's reason) */
    RD_QR_FAILED,      /* given up after the retry policy; a rerun tries again */
    RD_QR_IMPORTED,    /* its own report went into the archive (--import-reports) */
    RD_QR_STATE_COUNT
} rd_qr_state;

/* "queried", "retrieved", "drafted", "skipped", "failed", "imported". */
const char *rd_qr_state_name(rd_qr_state s);

/* A study as the PACS `source` ("AE@host:port") described it. */
typedef struct rd_store_qr_study {
    const char *study_uid, *study_date, *modalities, *description, *accession;
    int n_instances; /* -1: not given */
} rd_store_qr_study;

/* Records a study found by a query. A new one is queried; a drafted or skipped one is
 * (or imported) one is queried again when the PACS counts another number of instances; a
 * failed one is queried again (a rerun retries it); any other keeps its state. */
rd_status rd_store_qr_found(rd_store *s, const char *source, const rd_store_qr_study *st,
                            double now, rd_error *err);

/* Sets a study's state; `error` (may be NULL) its last failure, `review_id` (0: none) and
 * `done_instances` (-1: unchanged) what drafting it made of it. RD_E_NOT_FOUND when the
 * study was never found at `source`. */
rd_status rd_store_qr_set_state(rd_store *s, const char *source, const char *study_uid,
                                rd_qr_state state, const char *error, int64_t review_id,
                                int done_instances, double now, rd_error *err);

/* Calls `fn` for each study of `source` in a state of `mask` (bit 1 << state), oldest study
 * date first; at most `limit` (<= 0: all). */
rd_status rd_store_qr_each(rd_store *s, const char *source, unsigned mask, long limit,
                           rd_status (*fn)(void *ctx, const char *study_uid, int n_instances,
                                           rd_error *err),
                           void *ctx, rd_error *err);

/* The number of studies of `source` in each state. */
rd_status rd_store_qr_counts(rd_store *s, const char *source, long counts[RD_QR_STATE_COUNT],
                             rd_error *err);

/* A date page of a query (`query` names its keys) asked in full: recorded with its number
 * of matches, and looked up so that a rerun does not ask it again. *done is 0 or 1. */
rd_status rd_store_qr_page_done(rd_store *s, const char *source, const char *query,
                                const char *date_from, const char *date_to, long matches,
                                double now, rd_error *err);
rd_status rd_store_qr_page_is_done(rd_store *s, const char *source, const char *query,
                                   const char *date_from, const char *date_to, int *done,
                                   rd_error *err);

/* ---- the outbox: deliveries to DICOM destinations (store_outbox.c) ---- */

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

/* ---- users of the review queue (store_users.c) ---- */

#define RD_USER_NAME_MAX 64     /* login names: letters, digits, '.', '_', '-' */
#define RD_USER_DISPLAY_MAX 192 /* a DICOM person name (PN), "Family^Given^..." */
#define RD_USER_HASH_MAX 255    /* a crypto_pwhash_str string (argon2id) */

typedef enum rd_user_role {
    RD_ROLE_VIEWER = 0,      /* reads the queue */
    RD_ROLE_RADIOLOGIST = 1, /* also claims, edits, signs, rejects and amends */
    RD_ROLE_ADMIN = 2        /* also manages users */
} rd_user_role;

/* "viewer", "radiologist", "admin" ("?" for a value outside the enum); parse gives
 * RD_E_INVALID for another name. */
const char *rd_user_role_name(rd_user_role role);
rd_status rd_user_role_parse(const char *name, rd_user_role *out, rd_error *err);

/* 1 when `name` is a valid login name: 1 to RD_USER_NAME_MAX of A-Z a-z 0-9 . _ - */
int rd_user_name_valid(const char *name);

/* RD_OK when `pn` is a valid display name: a DICOM person name of 1 to RD_USER_DISPLAY_MAX
 * bytes of valid UTF-8, no control character and no backslash, at most 5 '^'-separated
 * components (in each of at most 3 '='-separated groups), and not only separators and
 * spaces. RD_E_TOO_LARGE when it is longer, RD_E_INVALID otherwise. */
rd_status rd_user_display_name_check(const char *pn, rd_error *err);

typedef struct rd_store_user {
    char name[RD_USER_NAME_MAX + 1];
    char display_name[RD_USER_DISPLAY_MAX + 1];
    rd_user_role role;
    int disabled;
    char password_hash[RD_USER_HASH_MAX + 1]; /* "" when the user has no password */
    double created_at, updated_at;
} rd_store_user;

/* Adds a user (the hash may be NULL or "": no password yet; `disabled` and the times are
 * ignored: a new user is enabled, created and updated now). RD_E_INVALID when the name is
 * taken or a field is malformed (name, display name, role, or a hash that is not printable
 * ASCII); RD_E_TOO_LARGE for a hash longer than RD_USER_HASH_MAX. */
rd_status rd_store_user_add(rd_store *s, const rd_store_user *u, rd_error *err);
/* RD_E_NOT_FOUND when there is no such user. */
rd_status rd_store_user_get(rd_store *s, const char *name, rd_store_user *out, rd_error *err);
/* Replaces the password hash (NULL or "": none) / sets the disabled flag (any non-zero value
 * disables). RD_E_NOT_FOUND: no such user; the hash is checked as in rd_store_user_add. */
rd_status rd_store_user_set_password(rd_store *s, const char *name, const char *password_hash,
                                     rd_error *err);
rd_status rd_store_user_set_disabled(rd_store *s, const char *name, int disabled, rd_error *err);
/* Calls `fn` for every user in name order; a status other than RD_OK stops and is returned. */
rd_status rd_store_user_list(rd_store *s,
                             rd_status (*fn)(void *ctx, const rd_store_user *u, rd_error *err),
                             void *ctx, rd_error *err);

/* ---- the audit trail (store_audit.c) ---- */

/* One audited action. Strings are borrowed for the call; NULL means none. */
typedef struct rd_audit_event {
    const char *user;                /* who ("" or NULL: radraft itself) */
    const char *action;              /* "claim", "view", "edit", "sign", "user-add", ... */
    int64_t item_id;                 /* the review item, 0: none */
    const char *study_uid;           /* the study concerned */
    const char *sr_sop_instance_uid; /* the SR written, if any */
    const char *detail;              /* what else matters (a reason, a role), short text */
} rd_audit_event;

/* One row as read back. */
typedef struct rd_audit_row {
    int64_t id;
    double at;
    char user[RD_USER_NAME_MAX + 1];
    char action[32];
    int64_t item_id;
    char study_uid[RD_UID_SIZE];
    char sr_sop_instance_uid[RD_UID_SIZE];
    char detail[512];
    char prev_hash[RD_SHA256_HEX_SIZE];
    char hash[RD_SHA256_HEX_SIZE];
} rd_audit_row;

/* Caps on an event's fields, checked before anything is written. */
#define RD_AUDIT_ACTION_MAX 31  /* bytes: rd_audit_row.action */
#define RD_AUDIT_DETAIL_MAX 511 /* bytes: rd_audit_row.detail */

/* Appends an event in a transaction of its own: its hash chains it to the row before (see
 * store_audit.c for the exact encoding that is hashed). The action is required; the user,
 * when given, is a valid user name (rd_user_name_valid) but need not be a user of the
 * table (a failed login names whoever tried); the UIDs are at most RD_UID_MAX bytes; every
 * string is valid UTF-8 without control characters. Errors: RD_E_TOO_LARGE for an action
 * over RD_AUDIT_ACTION_MAX or a detail over RD_AUDIT_DETAIL_MAX bytes (or a longer UID),
 * RD_E_INVALID for another malformed field, RD_E_DB. */
rd_status rd_store_audit_append(rd_store *s, const rd_audit_event *ev, rd_error *err);

/* Calls `fn` for every row, oldest first, of a study and/or a user (NULL: any). */
rd_status rd_store_audit_list(rd_store *s, const char *study_uid, const char *user,
                              rd_status (*fn)(void *ctx, const rd_audit_row *r, rd_error *err),
                              void *ctx, rd_error *err);

/* Recomputes the chain. RD_OK when every row matches (*rows gets their number); else
 * RD_E_CORRUPT naming the first row that does not, and *bad_id (may be NULL) its id. */
rd_status rd_store_audit_verify(rd_store *s, long *rows, int64_t *bad_id, rd_error *err);

/* ---- changes to users with their audit row (store_users.c) ---- */

/* rd_store_user_add, _set_password and _set_disabled, each with the audit row `ev` (NULL:
 * none) appended in the same transaction, which takes the write lock first: the change and
 * its record commit together or not at all. With `only_if_first` non-zero, the add is
 * refused with RD_E_DENIED unless the users table is empty, checked inside that
 * transaction, so that two processes bootstrapping at once create one first user, not two.
 * Errors: those of the plain function and of rd_store_audit_append. */
rd_status rd_store_user_add_audited(rd_store *s, const rd_store_user *u, int only_if_first,
                                    const rd_audit_event *ev, rd_error *err);
rd_status rd_store_user_set_password_audited(rd_store *s, const char *name,
                                             const char *password_hash, const rd_audit_event *ev,
                                             rd_error *err);
rd_status rd_store_user_set_disabled_audited(rd_store *s, const char *name, int disabled,
                                             const rd_audit_event *ev, rd_error *err);
/* ---- the review queue: drafts and what radiologists do with them (store_reviews.c) ---- */

typedef enum rd_review_state {
    RD_REVIEW_DRAFT = 0,     /* waiting for a radiologist */
    RD_REVIEW_IN_REVIEW = 1, /* claimed by one */
    RD_REVIEW_SIGNED = 2,    /* signed (and perhaps amended since) */
    RD_REVIEW_REJECTED = 3,  /* rejected with a reason: nothing was sent */
    RD_REVIEW_SUPERSEDED = 4 /* its study received new images: a newer draft replaces it */
} rd_review_state;
#define RD_REVIEW_STATE_COUNT 5

/* "draft", "in_review", "signed", "rejected", "superseded"; RD_E_INVALID for another name. */
const char *rd_review_state_name(rd_review_state state);
rd_status rd_review_state_parse(const char *name, rd_review_state *out, rd_error *err);

/* A new review item, as the pipeline records a draft. Strings and the embedding are borrowed
 * for the call; the JSON members are stored as given (see src/pipeline/pipeline.c for their
 * shape). */
typedef struct rd_store_review {
    const char *study_uid;
    const char *content_version;
    const char *sr_path; /* the draft SR */
    const char *sr_sop_instance_uid;
    /* The draft's AI Results SR, queued with the text SR; NULL: none (sr.air off). */
    const char *air_sr_path;
    const char *air_sr_sop_instance_uid;
    /* The draft's FHIR Bundle and the FHIR server it goes to (queued with the SRs); either
     * NULL or "": none queued. */
    const char *fhir_path;
    const char *fhir_destination;
    const char *frontal_sop_instance_uid;
    const char *model_version;
    const char *findings_text;
    const char *impression_text;
    const char *findings_json;   /* {"Cardiomegaly": {"state", "score", "encoder"}, ...} */
    const char *neighbours_json; /* [{"id", "similarity"}, ...] */
    /* What a signed study's archive entry needs: the frontal image's embedding (dim floats;
     * NULL: none), its patient hash (rd_index_patient_hash; NULL: unknown), view family
     * and study date (YYYYMMDD, 0: unknown). */
    const float *embedding;
    int dim;
    /* The study's images, for the review page: [{"path", "sop_instance_uid",
     * "view_position", "frontal"}] (NULL: none). */
    const char *images_json;
    const char *patient_hash;
    int view;
    int study_date;
    int priority; /* 1: urgent (a critical finding drafted), 0: routine */
} rd_store_review;

/* Adds a review item in state 'draft', marks its study version drafted, queues the SR (and
 * the AI Results SR, when there is one) for every destination and the FHIR Bundle for its
 * FHIR server, and marks the study's earlier items
 * still waiting (draft, in_review) superseded by it, in one transaction. A study version that
 * already has its item changes nothing: *added (may be NULL) is then 0, and *review_id (may be
 * NULL) names the existing item. */
rd_status rd_store_review_add(rd_store *s, const rd_store_review *r,
                              const char *const *destinations, int n_destinations,
                              int64_t *review_id, int *added, rd_error *err);

/* Number of review items (of a study and/or in a state; NULL: any). */
rd_status rd_store_count_reviews(rd_store *s, const char *study_uid, const char *state, long *count,
                                 rd_error *err);

/* A review item as read back. The pointer members are owned (rd_store_review_item_clear)
 * and NULL when absent; rd_store_review_list leaves them all NULL. */
typedef struct rd_store_review_item {
    int64_t id;
    char study_uid[RD_UID_SIZE];
    char content_version[RD_SHA256_HEX_SIZE];
    rd_review_state state;
    char sr_path[1024];
    char sr_sop_instance_uid[RD_UID_SIZE];
    char air_sr_path[1024]; /* the draft's AI Results SR, "" when none */
    char air_sr_sop_instance_uid[RD_UID_SIZE];
    char frontal_sop_instance_uid[RD_UID_SIZE];
    char model_version[128];
    char patient_hash[RD_SHA256_HEX_SIZE];
    int view, study_date, priority;
    char claimed_by[RD_USER_NAME_MAX + 1];
    double claimed_at, claim_expires;
    char edited_by[RD_USER_NAME_MAX + 1];
    double edited_at;
    char signed_by[RD_USER_NAME_MAX + 1];
    double signed_at;
    char rejected_by[RD_USER_NAME_MAX + 1];
    double rejected_at;
    char reject_reason[32];
    int findings_added, findings_removed, findings_changed, chars_edited;
    int64_t superseded_by;
    int signatures; /* signed versions so far */
    double created_at, updated_at;
    char *findings_text, *impression_text; /* the draft's */
    char *findings_json, *neighbours_json;
    char *final_findings_text, *final_impression_text;
    char *explicit_states, *final_states; /* JSON objects {finding: state} */
    char *reject_note;
    char *images_json; /* the study's images (see rd_store_review) */
    float *embedding;  /* dim floats */
    int dim;
} rd_store_review_item;

/* Reads item `id` whole. RD_E_NOT_FOUND when there is none. */
rd_status rd_store_review_get(rd_store *s, int64_t id, rd_store_review_item *out, rd_error *err);
/* Frees what an item owns and zeroes it. Accepts a zeroed item. */
void rd_store_review_item_clear(rd_store_review_item *it);

/* Calls `fn` for the items in `state` (-1: any), urgent first then oldest first when
 * `by_priority`, else oldest first; at most `limit` (<= 0: all). The items passed hold no
 * texts. A status other than RD_OK from `fn` stops and is returned. */
rd_status rd_store_review_list(rd_store *s, int state, int by_priority, long limit,
                               rd_status (*fn)(void *ctx, const rd_store_review_item *it,
                                               rd_error *err),
                               void *ctx, rd_error *err);

/* The transitions. Each checks the item's state and holder inside one write transaction,
 * changes it and appends `ev` to the audit trail in that same transaction, or changes
 * nothing: RD_E_NOT_FOUND (no such item), RD_E_DENIED (claimed by someone else: the message
 * names the holder), RD_E_INVALID (a transition its state does not allow: the message
 * names the state). `now` is seconds since the epoch (rd_store_now). */

/* draft -> in_review by `user` until `expires`; also takes over an in_review item whose
 * claim has expired, and renews the user's own claim. */
rd_status rd_store_review_claim(rd_store *s, int64_t id, const char *user, double now,
                                double expires, const rd_audit_event *ev, rd_error *err);
/* in_review (held by `user`) -> draft. */
rd_status rd_store_review_release(rd_store *s, int64_t id, const char *user, double now,
                                  const rd_audit_event *ev, rd_error *err);

/* What an edit leaves on an item held by its user. */
typedef struct rd_store_review_edit {
    const char *findings_text; /* the final texts (required) */
    const char *impression_text;
    const char *explicit_states; /* JSON {finding: state} of the user's own choices, or NULL */
    const char *final_states;    /* JSON {finding: state}: the choices, else the labeler */
    int findings_added, findings_removed, findings_changed, chars_edited;
} rd_store_review_edit;

/* Saves an edit of an in_review item held by `user`. */
rd_status rd_store_review_save_edit(rd_store *s, int64_t id, const char *user, double now,
                                    const rd_store_review_edit *e, const rd_audit_event *ev,
                                    rd_error *err);

/* One signed version of an item. */
typedef struct rd_store_signature {
    int version;         /* 1: the first signature; 2...: amendments */
    const char *sr_path; /* the signed SR, written and durable */
    const char *sr_sop_instance_uid;
    const char *predecessor_sop_instance_uid; /* the draft's, or the previous signed SR's */
    /* The signed AI Results SR, queued with the signed SR; NULL: none. */
    const char *air_sr_path;
    const char *air_sr_sop_instance_uid;
    /* The signed FHIR Bundle and its FHIR server, as in rd_store_review. */
    const char *fhir_path;
    const char *fhir_destination;
    const char *findings_text;
    const char *impression_text;
    const char *final_states; /* JSON {finding: state} */
    /* The study's archive entry (source signed), replacing the study's earlier one; NULL:
     * none (the item has no embedding). */
    const struct rd_store_archive_row *archive;
} rd_store_signature;

/* Signs: version 1 of an in_review item held by `user`, or version n+1 (an amendment) of a
 * signed item with n versions; the earlier version becomes superseded. In the same
 * transaction: the SR goes to every destination's outbox, the archive entry replaces the
 * study's earlier signed one, and `ev` joins the audit trail. RD_E_INVALID also when
 * `sig->version` is not the next one (another signature came first). */
rd_status rd_store_review_sign(rd_store *s, int64_t id, const char *user, double now,
                               const rd_store_signature *sig, const char *const *destinations,
                               int n_destinations, const rd_audit_event *ev, rd_error *err);

/* The SR path and SOP Instance UID of the item's current signed version (version 0 and ""
 * when it has none). */
rd_status rd_store_review_current_signature(rd_store *s, int64_t id, int *version,
                                            char sr_path[1024], char sop_uid[RD_UID_SIZE],
                                            rd_error *err);
/* The AI Results SR of the item's current signed version: its path and SOP Instance UID
 * ("" when there is no signed version or it has none). */
rd_status rd_store_review_current_air_signature(rd_store *s, int64_t id, char air_path[1024],
                                                char air_uid[RD_UID_SIZE], rd_error *err);

/* in_review (held by `user`) -> rejected, with a reason code and an optional note. */
rd_status rd_store_review_reject(rd_store *s, int64_t id, const char *user, double now,
                                 const char *reason, const char *note, const rd_audit_event *ev,
                                 rd_error *err);

/* ---- the archive: past studies for similar-case retrieval, used through radraft/index.h
 * (store_archive.c) ---- */

/* One archive row. Strings and the embedding are borrowed (for rd_store_archive_add: for the
 * call; in a scan callback: until it returns). `states` is RD_FINDING_COUNT digits 0..3
 * (rd_finding_state in vocabulary order); `view` and `source` are the rd_view_family and
 * rd_archive_source values of radraft/index.h. */
struct rd_store_archive_row {
    int64_t id;
    const char *model_version;
    const char *key;
    const char *study_uid;
    const char *patient_hash;
    int view;
    int study_date;
    int source;
    const char *states;
    const char *findings_text;   /* NULL when none */
    const char *impression_text; /* NULL when none */
    int dim;
    const float *embedding; /* dim floats (stored little-endian in the BLOB) */
};

/* Inserts a row; *id (may be NULL) gets its row id. When a row with the same model version
 * and key exists nothing is written, *id gets that row's id and *added (may be NULL) 0. */
rd_status rd_store_archive_add(rd_store *s, const rd_store_archive_row *row, int64_t *id,
                               int *added, rd_error *err);

/* Inserts `n` rows in one transaction (all or none); ids[i] and added[i] (either may be
 * NULL) as for rd_store_archive_add. */
rd_status rd_store_archive_add_many(rd_store *s, const rd_store_archive_row *rows, size_t n,
                                    int64_t *ids, int *added, rd_error *err);

/* Calls `fn` for every row of `model_version` (NULL: every row) in id order. A callback
 * that returns a status other than RD_OK stops the scan, which returns that status. A row
 * whose embedding BLOB is not `dim` floats is RD_E_CORRUPT. With `with_embedding` 0 the
 * embedding is not read (row->embedding is NULL), for listings. */
typedef rd_status (*rd_store_archive_fn)(void *ctx, const rd_store_archive_row *row, rd_error *err);
rd_status rd_store_archive_scan(rd_store *s, const char *model_version, int with_embedding,
                                rd_store_archive_fn fn, void *ctx, rd_error *err);

/* rd_store_archive_scan of the rows with an id above `after_id` only. */
rd_status rd_store_archive_scan_after(rd_store *s, const char *model_version, int64_t after_id,
                                      int with_embedding, rd_store_archive_fn fn, void *ctx,
                                      rd_error *err);

/* The finding states (as stored: one digit per finding, rd_finding_state values, into
 * `states` of `size` bytes) and the source of archive row `id`, for showing a neighbour.
 * *found is 0 when there is no such row (an entry replaced since the draft). */
rd_status rd_store_archive_states(rd_store *s, int64_t id, char *states, size_t size, int *source,
                                  int *found, rd_error *err);

/* What tells a running index that the archive changed, cheaply: the largest row id (0 when
 * empty) and the number of rows ever deleted. */
rd_status rd_store_archive_marks(rd_store *s, int64_t *max_id, int64_t *deletions, rd_error *err);

/* Number of rows of `model_version` (NULL: all). */
rd_status rd_store_archive_count(rd_store *s, const char *model_version, long *count,
                                 rd_error *err);

/* ---- helpers used with the store ---- */

/* Seconds since the epoch, with sub-second precision. */
double rd_store_now(void);

#ifdef __cplusplus
}
#endif
#endif
