/* radraft — what the store's source files share and nothing outside src/store/ uses (but
 * the tests' hooks at the end): the handle's layout, the statement helper every query goes
 * through, and the few helpers one concern offers another.
 *
 * Files of the store module, one concern each:
 *   store_db.c        the database: open, pragmas (WAL, synchronous), busy timeout, schema
 *                     migrations, transactions and the statement helper declared here
 *   store_files.c     the file store: layout by sanitized UIDs, atomic write (temporary file,
 *                     fsync, rename, directory fsync), recovery of temporaries
 *   store_instances.c instances and studies: rd_store_put, lookups, study versions
 *   store_jobs.c      the job queue: stable-study scheduling, claim, finish, retry
 *   store_outbox.c    the outbox: deliveries, claim, results with backoff
 *   store_reviews.c   review items
 *   store_archive.c   the archive of past studies for similar-case retrieval
 *   store_users.c     users of the review queue: names, display names, roles, password
 *                     hashes, the disabled flag
 *   store_audit.c     the append-only, hash-chained audit trail and its verification
 */
#ifndef RADRAFT_STORE_INT_H
#define RADRAFT_STORE_INT_H

#include <stdint.h>

#include "radraft/store.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sqlite3;
struct sqlite3_stmt;
struct pg_conn;
struct pg_result;

/* Longest data directory or file path the store builds. */
#define RD__STORE_PATH_MAX 4096

/* Statements kept prepared per connection. The store has about forty distinct queries;
 * one beyond the cache is prepared and finalized on each use, which is only slower. */
#define RD__STMT_CACHE_SIZE 64

/* Points where rd_store_put can be made to fail as if the system had failed there
 * (SQLite-style fault injection): each simulates the errno or database error it names. */
typedef enum rd_store_fault {
    RD_STORE_FAULT_NONE = 0,
    RD_STORE_FAULT_WRITE,     /* write() fails with ENOSPC after part of the data */
    RD_STORE_FAULT_FSYNC,     /* fsync() of the file fails with EIO */
    RD_STORE_FAULT_RENAME,    /* rename() into place fails with EIO */
    RD_STORE_FAULT_COMMIT,    /* the index transaction fails after the rename */
    RD_STORE_FAULT_DIR_FSYNC, /* fsync() of the folder a file was renamed into fails with EIO */
    /* With store.sync filesystem the process ends (_exit(RD__FAULT_EXIT)) right after a
     * group's commit, before its syncfs: the moment of a power cut, for the recovery test. */
    RD_STORE_FAULT_EXIT_BEFORE_SYNCFS
} rd_store_fault;

#define RD__FAULT_EXIT 86

/* One prepared statement of the cache. `sql` is the text it was prepared from, compared by
 * address first (every cached SQL text is a string literal). */
typedef struct rd__stmt_slot {
    const char *sql;
    struct sqlite3_stmt *stmt;
    int in_use; /* a query is stepping it: a nested use of the same SQL gets its own */
} rd__stmt_slot;

struct rd_store {
    struct sqlite3 *db; /* the SQLite connection, or NULL on PostgreSQL */
    struct pg_conn *pg; /* the PostgreSQL connection (store_pg.c), or NULL on SQLite */
    char dir[RD__STORE_PATH_MAX];
    /* The database in messages: "<dir>/radraft.db" or "postgresql schema <name>". */
    char db_name[RD__STORE_PATH_MAX + 16];
    char pg_schema[64];
    /* A transaction is open on the PostgreSQL connection (rd__begin until commit or
     * rollback): a connection lost then is not silently reopened mid-transaction. */
    int pg_in_tx;
    char folder_id[33]; /* DATA/store-id (PostgreSQL only) */
    rd_store_options opts;
    rd_store_fault fault;
    /* The connection is at PRAGMA synchronous=NORMAL (its commits do not sync the WAL): a
     * group's leader with store.sync filesystem, whose syncfs follows its commit, between
     * rd__commit_sync calls, or after setting FULL back failed. rd__commit sets FULL
     * first, and refuses to commit while it cannot. */
    int commit_sync_off;
    /* Statement fault injection (tests): the statement numbered fail_at (counting every
     * step and exec on this handle from 1) fails as SQLITE_BUSY would (fail_busy) or as an
     * I/O error; 0 disarms it. */
    long n_statements, fail_at;
    int fail_busy;
    int n_slots;
    rd__stmt_slot slots[RD__STMT_CACHE_SIZE];
};

/* ---- the statement helper (store_db.c) ----
 *
 * A query reads as its SQL, its arguments and what it does with the row:
 *
 *     rd__stmt q = RD__STMT_INIT;
 *     int row;
 *     rc = rd__stmt_row(&q, s, "looking up a job", "SELECT error FROM jobs WHERE id=?1",
 *                       RD__ARGS(RD__INT(id)), &row, err);
 *     if (rc == RD_OK && row)
 *         use(rd__col_text(&q, 0));
 *     rd__stmt_close(&q);
 *
 * Every SQLite error becomes RD_E_DB with "<dir>/radraft.db: <purpose>: <sqlite message>".
 * SQLITE_BUSY is not special: the connection's busy timeout (rd_store_options) waits for
 * the other writer inside SQLite, and a lock still held when it runs out is an RD_E_DB
 * error ("database is locked") like any other. Text and BLOB arguments are borrowed until
 * the statement is closed. */

typedef enum rd__arg_type {
    RD__ARG_NULL = 0,
    RD__ARG_TEXT, /* NUL-terminated; a NULL pointer binds SQL NULL */
    RD__ARG_INT,
    RD__ARG_REAL,
    RD__ARG_BLOB
} rd__arg_type;

/* One typed argument, made by the macros below (RD__TEXT, RD__INT, ...). */
typedef struct rd__arg {
    rd__arg_type type;
    const void *p; /* text or BLOB */
    int64_t i;     /* integer, or the BLOB's size in bytes */
    double d;
} rd__arg;

/* The arguments of a statement, bound to ?1, ?2, ... in order. */
typedef struct rd__args {
    const rd__arg *v;
    int n;
} rd__args;

/* Each argument goes through a function, so that the compiler checks its type. */
static inline rd__arg rd__arg_make(rd__arg_type type, const void *p, int64_t i, double d)
{
    rd__arg a = {type, p, i, d};
    return a;
}
static inline rd__arg rd__arg_text(const char *v)
{
    return rd__arg_make(RD__ARG_TEXT, v, 0, 0);
}

#define RD__NULL rd__arg_make(RD__ARG_NULL, NULL, 0, 0)
#define RD__TEXT(v) rd__arg_text(v)
#define RD__INT(v) rd__arg_make(RD__ARG_INT, NULL, (v), 0)
#define RD__REAL(v) rd__arg_make(RD__ARG_REAL, NULL, 0, (v))
#define RD__BLOB(ptr, bytes) rd__arg_make(RD__ARG_BLOB, (ptr), (int64_t)(bytes), 0)
#define RD__ARGS(...)                                                                              \
    ((rd__args){(const rd__arg[]){__VA_ARGS__},                                                    \
                (int)(sizeof((const rd__arg[]){__VA_ARGS__}) / sizeof(rd__arg))})
#define RD__NO_ARGS ((rd__args){NULL, 0})

/* "" for NULL: the columns that store an absent value as the empty string. */
static inline const char *rd__or_empty(const char *v)
{
    return v ? v : "";
}

/* BYTEA columns of one PostgreSQL row that may be read at once. */
#define RD__PG_BLOBS 4

/* A statement being run. On PostgreSQL it has run when it is open: `res` holds its rows
 * and `pg_row` is the current one. */
typedef struct rd__stmt {
    rd_store *s;
    struct sqlite3_stmt *stmt;
    const char *what; /* its purpose, for error messages */
    int slot;         /* its cache slot, -1 when it is finalized on close */
    struct pg_result *res;
    int pg_row;
    void *pg_blobs[RD__PG_BLOBS]; /* BYTEA values of the current row, decoded */
} rd__stmt;

#define RD__STMT_INIT                                                                              \
    {                                                                                              \
        NULL, NULL, NULL, -1, NULL, -1,                                                            \
        {                                                                                          \
            NULL                                                                                   \
        }                                                                                          \
    }

/* Prepares `sql` (taken from the connection's cache when it was prepared before; `sql` must
 * then stay valid as long as the connection, as a string literal does) and binds `args`. On
 * failure *q is closed already. */
rd_status rd__stmt_open(rd__stmt *q, rd_store *s, const char *what, const char *sql, rd__args args,
                        rd_error *err);

/* Steps the statement: RD_OK with *row 1 when a row is ready to read, 0 when the statement
 * is done; RD_E_DB otherwise. */
rd_status rd__stmt_step(rd__stmt *q, int *row, rd_error *err);

/* rd__stmt_open and the first rd__stmt_step: *row says whether there is a row to read. The
 * caller closes *q in every case. */
rd_status rd__stmt_row(rd__stmt *q, rd_store *s, const char *what, const char *sql, rd__args args,
                       int *row, rd_error *err);

/* Resets a cached statement for its next use, or finalizes an uncached one. Accepts a
 * statement that was never opened or is closed already. */
void rd__stmt_close(rd__stmt *q);

/* Columns of the current row (from 0). rd__col_text is NULL for SQL NULL and valid until the
 * next step or close; so is rd__col_blob, which sets *bytes. */
const char *rd__col_text(rd__stmt *q, int col);
int rd__col_int(rd__stmt *q, int col);
int64_t rd__col_int64(rd__stmt *q, int col);
double rd__col_real(rd__stmt *q, int col);
int rd__col_is_null(rd__stmt *q, int col);
const void *rd__col_blob(rd__stmt *q, int col, size_t *bytes);
/* A text column's bytes and their count (NULL and 0 for SQL NULL). */
const char *rd__col_bytes(rd__stmt *q, int col, size_t *len);

/* Runs a statement that returns no row (INSERT, UPDATE); *changes (may be NULL) gets the
 * number of rows it changed. */
rd_status rd__run(rd_store *s, const char *what, const char *sql, rd__args args, int *changes,
                  rd_error *err);

/* Runs a query whose first row's first column is an integer: *out gets it and *found 1, or
 * *found 0 when there is no row. A COUNT(*) always has its row: *found may be NULL then. */
rd_status rd__query_int64(rd_store *s, const char *what, const char *sql, rd__args args,
                          int64_t *out, int *found, rd_error *err);

/* rd__query_int64 for a COUNT(*) into the public API's long. */
rd_status rd__count(rd_store *s, const char *sql, rd__args args, long *count, rd_error *err);

/* The row id the last INSERT on the connection gave its table's id column. */
rd_status rd__last_insert_id(rd_store *s, int64_t *id, rd_error *err);

/* 1 inside a transaction (rd__begin or BEGIN in rd__exec), 0 outside. */
int rd__in_transaction(rd_store *s);

/* Transactions. rd__begin takes the write lock at once (BEGIN IMMEDIATE), so that a
 * transaction never fails half-way on a lock upgrade while another connection writes: the
 * busy timeout waits for it instead. rd__rollback ends an open transaction and does nothing
 * outside one, so that every error path may call it. */
rd_status rd__begin(rd_store *s, rd_error *err);
rd_status rd__commit(rd_store *s, rd_error *err);
/* COMMIT as the connection's synchronous setting has it (a group leader's, rd__commit_sync). */
rd_status rd__commit_as_set(rd_store *s, rd_error *err);
void rd__rollback(rd_store *s);

/* Runs SQL text that may hold several statements and is not cached (pragmas, migrations). */
rd_status rd__exec(rd_store *s, const char *what, const char *sql, rd_error *err);

/* An RD_E_DB error naming the store's database, `what` and the connection's last message. */
rd_status rd__db_error(rd_store *s, const char *what, rd_error *err);

/* ---- the PostgreSQL backend (store_pg.c), called by the helper above ---- */

rd_status rd__pg_open(rd_store *s, rd_error *err);
void rd__pg_close(rd_store *s);
/* Runs `sql` with `args` (q->s and q->what set); its rows wait in q->res. */
rd_status rd__pg_stmt_open(rd__stmt *q, const char *sql, rd__args args, rd_error *err);
int rd__pg_stmt_step(rd__stmt *q);
void rd__pg_stmt_close(rd__stmt *q);
int rd__pg_changes(rd__stmt *q);
const char *rd__pg_col_text(rd__stmt *q, int col, size_t *len);
int64_t rd__pg_col_int64(rd__stmt *q, int col);
double rd__pg_col_real(rd__stmt *q, int col);
const void *rd__pg_col_blob(rd__stmt *q, int col, size_t *bytes);
int rd__pg_in_transaction(rd_store *s);
void rd__pg_rollback(rd_store *s);
/* Runs SQL text of several statements; `ddl` translates a migration's schema. */
rd_status rd__pg_exec(rd_store *s, const char *what, const char *sql, int ddl, rd_error *err);
/* Takes the schema's transaction-scoped lock (inside rd__begin). */
rd_status rd__pg_lock(rd_store *s, rd_error *err);
/* Applies migration i (from 0), SQLite's text translated, and its PostgreSQL triggers. */
rd_status rd__pg_migration(rd_store *s, int i, const char *sql, rd_error *err);
/* Creates the store's schema when it is missing (inside the migration's transaction). */
rd_status rd__pg_prepare_schema(rd_store *s, rd_error *err);
/* Binds the schema to the data folder's id on its first use, and refuses a schema bound
 * to another folder (inside the migration's transaction). */
rd_status rd__pg_check_identity(rd_store *s, rd_error *err);

/* ---- the file store (store_files.c) ---- */

/* Where an instance is filed: `rel` (relative to the data directory, as in the index),
 * `dir` (its series directory) and `abs` (its absolute path). The UIDs must have passed
 * rd_store_uid_valid. RD_E_INVALID when a path does not fit. */
typedef struct rd__file_place {
    char rel[RD__STORE_PATH_MAX];
    char dir[2 * RD__STORE_PATH_MAX];
    char abs[2 * RD__STORE_PATH_MAX + 128];
} rd__file_place;

rd_status rd__file_place_of(rd_store *s, const rd_store_instance *inst, rd__file_place *out,
                            rd_error *err);

/* Writes `data` to a new temporary file in `dir` and fsyncs it; `tmp` gets its path. On
 * failure the temporary file is gone. Honours the write and fsync faults. */
rd_status rd__file_write_temp(rd_store *s, const char *dir, const char *sop, const void *data,
                              size_t len, char *tmp, size_t tmp_size, rd_error *err);

/* Renames a written temporary file into place. Honours the rename fault. */
rd_status rd__file_rename(rd_store *s, const char *tmp, const char *abs, rd_error *err);

/* PRAGMA synchronous FULL (`full`) or NORMAL on an SQLite connection: with NORMAL a
 * commit does not sync the WAL (store.sync filesystem: the group's syncfs does). A failure
 * to set FULL back leaves commit_sync_off set. */
rd_status rd__commit_sync(rd_store *s, int full, rd_error *err);

/* 1 if `dir` is the root of a file system other than its parent's (a mount point). */
int rd__own_file_system(const char *dir);

/* With store.sync filesystem, rows listed as not yet synced whose file is not on disk with
 * its recorded size (a power cut between their commit and their group's syncfs) are
 * removed, and the list emptied (rd_store_recover, SQLite). */
rd_status rd__instances_recover(rd_store *s, rd_error *err);

/* fsync of the file at `path`. */
rd_status rd__file_fsync_path(const char *path, rd_error *err);

/* Fsyncs a directory, which makes a rename in it durable. */
rd_status rd__file_fsync_dir(const char *dir, rd_error *err);

/* ---- the outbox (store_outbox.c), shared with the review items ---- */

/* Queues the delivery of `file` to `destination` unless that pair is queued already. The
 * caller checked the lengths (rd__outbox_check). */
rd_status rd__outbox_insert(rd_store *s, const char *file, const char *destination, double now,
                            rd_error *err);

/* RD_E_TOO_LARGE when a file or destination name does not fit rd_store_delivery. */
rd_status rd__outbox_check(const char *file, const char *destination, rd_error *err);

/* ---- hooks for the store's tests ---- */

/* Arms one fault for the next rd_store_put on this handle (it disarms when hit). */
void rd_store__set_fault(rd_store *s, rd_store_fault fault);

/* Makes the nth statement from now on this handle fail, as a busy database (`busy`) or a
 * disk I/O error would; 0 disarms. Returns the statements run on this handle so far. */
long rd_store__fail_statement(rd_store *s, long nth, int busy);

/* The SQLite connection of a handle (tests reach into the database with it); NULL on
 * PostgreSQL. */
struct sqlite3 *rd_store__db(rd_store *s);

/* ---- the audit trail (store_audit.c), shared with the users and the review items ---- */

/* Appends an audit row inside the caller's open transaction, so that an action and its
 * audit row commit together or not at all. The transaction must have been opened with
 * rd__begin (BEGIN IMMEDIATE): the previous row's hash is read inside it, and only the
 * write lock taken at its start keeps another connection from appending between that read
 * and the insert. Outside a transaction it refuses (RD_E_INTERNAL) rather than chain a row
 * that another writer may race. `now` is the row's time (rd_store_now()). The event is
 * checked as in rd_store_audit_append; on an error the caller rolls back. */
rd_status rd__audit_insert(rd_store *s, const rd_audit_event *ev, double now, rd_error *err);

/* 1 when the `len` bytes at `p` are valid UTF-8 (shortest forms, no surrogates, nothing
 * above U+10FFFF) and hold no control character (C0, DEL or C1) (store_users.c). */
int rd__utf8_plain(const char *p, size_t len);

#ifdef __cplusplus
}
#endif

#endif
