/* radraft — the store's database: opening a data directory's radraft.db (pragmas, WAL,
 * busy timeout) or its PostgreSQL schema (store_pg.c), the schema migrations, transactions,
 * and the statement helper through which every query of the store module goes (declared
 * in store_int.h). No other file of the store calls sqlite3_prepare or libpq, or formats a
 * database error itself. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "radraft/config.h"
#include "radraft/store.h"
#include "store/store_int.h"
#include "base/util.h"

#define DEFAULT_BUSY_TIMEOUT_MS 30000
#define DEFAULT_NODE_TIMEOUT_S 30

/* Migration i brings the schema from version i to i+1. Never edit a released entry:
 * append a new one. */
static const char *const migrations[] = {
    /* 1: instances, studies, jobs, outbox */
    "CREATE TABLE instances("
    "  sop_instance_uid TEXT PRIMARY KEY,"
    "  study_uid TEXT NOT NULL,"
    "  series_uid TEXT NOT NULL,"
    "  sop_class_uid TEXT,"
    "  transfer_syntax_uid TEXT,"
    "  modality TEXT,"
    "  calling_ae TEXT,"
    "  path TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  sha256 TEXT,"
    "  dataset_offset INTEGER NOT NULL DEFAULT 0,"
    "  received_at REAL NOT NULL);"
    "CREATE INDEX instances_study ON instances(study_uid);"
    "CREATE TABLE studies("
    "  study_uid TEXT PRIMARY KEY,"
    "  first_received REAL NOT NULL,"
    "  last_received REAL NOT NULL,"
    "  dirty INTEGER NOT NULL DEFAULT 1,"
    "  ready_at REAL);"
    "CREATE TABLE jobs("
    "  id INTEGER PRIMARY KEY,"
    "  study_uid TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK(state IN ('queued','running','done','failed')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  error TEXT,"
    "  created_at REAL NOT NULL,"
    "  updated_at REAL NOT NULL);"
    "CREATE INDEX jobs_state ON jobs(state, id);"
    "CREATE INDEX jobs_study ON jobs(study_uid);"
    "CREATE TABLE outbox("
    "  id INTEGER PRIMARY KEY,"
    "  file TEXT NOT NULL,"
    "  destination TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK(state IN ('pending','sending','done','failed')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt REAL NOT NULL,"
    "  last_error TEXT,"
    "  created_at REAL NOT NULL,"
    "  updated_at REAL NOT NULL,"
    "  UNIQUE(file, destination));"
    "CREATE INDEX outbox_due ON outbox(state, next_attempt);",
    /* 2: the pipeline: retry times of jobs, what became of each content version of a
     * study (drafted or skipped, and why), and the review items of the drafts. */
    "ALTER TABLE jobs ADD COLUMN not_before REAL NOT NULL DEFAULT 0;"
    "CREATE TABLE study_versions("
    "  study_uid TEXT NOT NULL,"
    "  content_version TEXT NOT NULL,"
    "  outcome TEXT NOT NULL CHECK(outcome IN ('drafted','skipped')),"
    "  reason TEXT,"
    "  review_id INTEGER,"
    "  created_at REAL NOT NULL,"
    "  PRIMARY KEY(study_uid, content_version));"
    "CREATE TABLE reviews("
    "  id INTEGER PRIMARY KEY,"
    "  study_uid TEXT NOT NULL,"
    "  content_version TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK(state IN ('draft','approved','edited','rejected')),"
    "  sr_path TEXT NOT NULL,"
    "  sr_sop_instance_uid TEXT,"
    "  frontal_sop_instance_uid TEXT,"
    "  model_version TEXT,"
    "  findings_text TEXT,"
    "  impression_text TEXT,"
    "  findings_json TEXT,"
    "  neighbours_json TEXT,"
    "  created_at REAL NOT NULL,"
    "  updated_at REAL NOT NULL,"
    "  UNIQUE(study_uid, content_version));"
    "CREATE INDEX reviews_state ON reviews(state, id);",
    /* 3: the archive of past studies for similar-case retrieval (store_archive.c) */
    "CREATE TABLE archive("
    "  id INTEGER PRIMARY KEY,"
    "  model_version TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  study_uid TEXT NOT NULL,"
    "  patient_hash TEXT NOT NULL DEFAULT '',"
    "  view INTEGER NOT NULL DEFAULT 0,"
    "  study_date INTEGER NOT NULL DEFAULT 0,"
    "  source INTEGER NOT NULL,"
    "  states TEXT NOT NULL,"
    "  findings_text TEXT,"
    "  impression_text TEXT,"
    "  dim INTEGER NOT NULL,"
    "  embedding BLOB NOT NULL,"
    "  added_at REAL NOT NULL,"
    "  UNIQUE(model_version, key));",
    /* 4: review users and the audit trail (store_users.c, store_audit.c). The audit table is
     * append-only: triggers refuse UPDATE and DELETE, and each row carries the SHA-256 of
     * the previous row's hash and its own fields, so that an edit made around the triggers
     * breaks the chain (radraft audit verify). */
    "CREATE TABLE users("
    "  name TEXT PRIMARY KEY,"
    "  display_name TEXT NOT NULL,"
    "  role TEXT NOT NULL CHECK(role IN ('radiologist','admin','viewer')),"
    "  password_hash TEXT,"
    "  disabled INTEGER NOT NULL DEFAULT 0,"
    "  created_at REAL NOT NULL,"
    "  updated_at REAL NOT NULL);"
    "CREATE TABLE audit("
    "  id INTEGER PRIMARY KEY,"
    "  at REAL NOT NULL,"
    "  user TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  item_id INTEGER,"
    "  study_uid TEXT,"
    "  sr_sop_instance_uid TEXT,"
    "  detail TEXT,"
    "  prev_hash TEXT NOT NULL,"
    "  hash TEXT NOT NULL);"
    "CREATE INDEX audit_study ON audit(study_uid);"
    "CREATE INDEX audit_user ON audit(user);"
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
    /* 5: the review queue (store_reviews.c): items claimed, edited, signed, rejected or
     * superseded, with who and when, the final texts and states, edit statistics, a
     * priority, and what the archive entry of a signed study needs (the draft-time
     * embedding, patient hash, view and date: batch's files are not in the store); one row
     * per signed version of an item (the first signature, then amendments). SQLite cannot
     * change a CHECK constraint, so the table is rebuilt; the states of migration 2 that
     * nothing ever set map to 'draft'. */
    "CREATE TABLE reviews_v5("
    "  id INTEGER PRIMARY KEY,"
    "  study_uid TEXT NOT NULL,"
    "  content_version TEXT NOT NULL,"
    "  state TEXT NOT NULL"
    "    CHECK(state IN ('draft','in_review','signed','rejected','superseded')),"
    "  sr_path TEXT NOT NULL,"
    "  sr_sop_instance_uid TEXT,"
    "  frontal_sop_instance_uid TEXT,"
    "  model_version TEXT,"
    "  findings_text TEXT,"
    "  impression_text TEXT,"
    "  findings_json TEXT,"
    "  neighbours_json TEXT,"
    "  embedding BLOB,"
    "  images_json TEXT,"
    "  patient_hash TEXT NOT NULL DEFAULT '',"
    "  view INTEGER NOT NULL DEFAULT 0,"
    "  study_date INTEGER NOT NULL DEFAULT 0,"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  claimed_by TEXT,"
    "  claimed_at REAL,"
    "  claim_expires REAL,"
    "  final_findings_text TEXT,"
    "  final_impression_text TEXT,"
    "  explicit_states TEXT,"
    "  final_states TEXT,"
    "  findings_added INTEGER NOT NULL DEFAULT 0,"
    "  findings_removed INTEGER NOT NULL DEFAULT 0,"
    "  findings_changed INTEGER NOT NULL DEFAULT 0,"
    "  chars_edited INTEGER NOT NULL DEFAULT 0,"
    "  edited_by TEXT,"
    "  edited_at REAL,"
    "  signed_by TEXT,"
    "  signed_at REAL,"
    "  rejected_by TEXT,"
    "  rejected_at REAL,"
    "  reject_reason TEXT,"
    "  reject_note TEXT,"
    "  superseded_by INTEGER,"
    "  created_at REAL NOT NULL,"
    "  updated_at REAL NOT NULL,"
    "  UNIQUE(study_uid, content_version));"
    "INSERT INTO reviews_v5(id, study_uid, content_version, state, sr_path,"
    "  sr_sop_instance_uid, frontal_sop_instance_uid, model_version, findings_text,"
    "  impression_text, findings_json, neighbours_json, created_at, updated_at)"
    "  SELECT id, study_uid, content_version,"
    "    CASE state WHEN 'rejected' THEN 'rejected' ELSE 'draft' END, sr_path,"
    "    sr_sop_instance_uid, frontal_sop_instance_uid, model_version, findings_text,"
    "    impression_text, findings_json, neighbours_json, created_at, updated_at FROM reviews;"
    "DROP TABLE reviews;"
    "ALTER TABLE reviews_v5 RENAME TO reviews;"
    "CREATE INDEX reviews_state ON reviews(state, priority DESC, created_at, id);"
    "CREATE INDEX reviews_age ON reviews(state, created_at, id);"
    "CREATE INDEX reviews_study ON reviews(study_uid);"
    "CREATE TABLE signatures("
    "  id INTEGER PRIMARY KEY,"
    "  review_id INTEGER NOT NULL REFERENCES reviews(id),"
    "  version INTEGER NOT NULL,"
    "  state TEXT NOT NULL CHECK(state IN ('current','superseded')),"
    "  sr_path TEXT NOT NULL,"
    "  sr_sop_instance_uid TEXT NOT NULL,"
    "  predecessor_sop_instance_uid TEXT NOT NULL,"
    "  signed_by TEXT NOT NULL,"
    "  signed_at REAL NOT NULL,"
    "  findings_text TEXT,"
    "  impression_text TEXT,"
    "  final_states TEXT NOT NULL,"
    "  UNIQUE(review_id, version));"
    /* A running index learns of new archive rows from MAX(id) and of deleted ones (a signed
     * entry replaced by an amendment) from this counter, without counting the archive. */
    "CREATE TABLE archive_marks(deletions INTEGER NOT NULL);"
    "INSERT INTO archive_marks VALUES(0);"
    "CREATE TRIGGER archive_deleted AFTER DELETE ON archive"
    "  BEGIN UPDATE archive_marks SET deletions=deletions+1; END;",
    /* 6: the AI Results SR beside each draft and signed text report (NULL: none written,
     * sr.air off or an item drafted before). */
    "ALTER TABLE reviews ADD COLUMN air_sr_path TEXT;"
    "ALTER TABLE reviews ADD COLUMN air_sr_sop_instance_uid TEXT;"
    "ALTER TABLE signatures ADD COLUMN air_sr_path TEXT;"
    "ALTER TABLE signatures ADD COLUMN air_sr_sop_instance_uid TEXT;",
    /* 7: batch --from-pacs: the studies a PACS answered and what became of each, and the
     * date pages of a query already asked, so that a rerun continues. */
    "CREATE TABLE qr_studies("
    "  source TEXT NOT NULL,"
    "  study_uid TEXT NOT NULL,"
    "  study_date TEXT,"
    "  modalities TEXT,"
    "  description TEXT,"
    "  accession TEXT,"
    "  n_instances INTEGER NOT NULL,"
    "  state TEXT NOT NULL CHECK(state IN"
    "   ('queried','retrieved','drafted','skipped','failed','imported')),"
    "  done_instances INTEGER,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT,"
    "  review_id INTEGER,"
    "  created_at REAL NOT NULL,"
    "  updated_at REAL NOT NULL,"
    "  PRIMARY KEY(source, study_uid));"
    "CREATE INDEX qr_studies_state ON qr_studies(source, state, study_date);"
    "CREATE TABLE qr_pages("
    "  source TEXT NOT NULL,"
    "  query TEXT NOT NULL,"
    "  date_from TEXT NOT NULL,"
    "  date_to TEXT NOT NULL,"
    "  matches INTEGER NOT NULL,"
    "  done_at REAL NOT NULL,"
    "  PRIMARY KEY(source, query, date_from, date_to));",
    /* 8: several nodes on one database: the node that runs a job or sends a delivery, and
     * each node's last sign of life, so that the work of a node that stopped answering goes
     * back to the queues (rd_store_node_heartbeat) and a restarting node takes back only
     * its own. */
    "ALTER TABLE jobs ADD COLUMN node TEXT;"
    "ALTER TABLE outbox ADD COLUMN node TEXT;"
    "CREATE TABLE nodes("
    "  name TEXT PRIMARY KEY,"
    "  started_at REAL NOT NULL,"
    "  heartbeat_at REAL NOT NULL);",
    /* 9: batch --queue: a reprocessing run put into the shared job queue, and its studies
     * with the time each was added, so that its progress is read from the jobs and study
     * versions that came after. */
    "CREATE TABLE runs("
    "  id INTEGER PRIMARY KEY,"
    "  label TEXT NOT NULL,"
    "  created_at REAL NOT NULL);"
    "CREATE TABLE run_studies("
    "  run_id INTEGER NOT NULL REFERENCES runs(id),"
    "  study_uid TEXT NOT NULL,"
    "  added_at REAL NOT NULL,"
    "  PRIMARY KEY(run_id, study_uid));",
    /* 10: which data folder the index belongs to (DATA/store-id): on PostgreSQL a schema is
     * bound to one folder, so that two installations never share an index by mistake. */
    "CREATE TABLE store_identity(store_id TEXT NOT NULL);",
    /* 11: store.sync filesystem: a group's rows commit before the one syncfs that makes
     * them and their files durable; until it returns they are listed here (grp: the
     * group), and a start after a power cut checks their files (rd_store_recover). */
    "CREATE TABLE unsynced_puts(sop_instance_uid TEXT NOT NULL, grp INTEGER NOT NULL);"
    "CREATE INDEX unsynced_puts_grp ON unsynced_puts(grp);",
};

#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

/* ---- the statement helper ---- */

rd_status rd__db_error(rd_store *s, const char *what, rd_error *err)
{
    return rd_error_set(err, RD_E_DB, "%s: %s: %s", s->db_name, what,
                        s->db ? sqlite3_errmsg(s->db) : "no connection");
}

/* The cache slot of `sql`, or -1 when it was never prepared on this connection. */
static int cache_find(rd_store *s, const char *sql)
{
    for (int i = 0; i < s->n_slots; i++) {
        /* The address finds the entry; the text guards against a caller that passed a
         * buffer which now holds other SQL at the same address. */
        if (s->slots[i].sql == sql && strcmp(sqlite3_sql(s->slots[i].stmt), sql) == 0)
            return i;
    }
    return -1;
}

static int bind_one(sqlite3_stmt *stmt, int idx, const rd__arg *a)
{
    switch (a->type) {
    case RD__ARG_TEXT:
        return a->p ? sqlite3_bind_text(stmt, idx, a->p, -1, SQLITE_STATIC)
                    : sqlite3_bind_null(stmt, idx);
    case RD__ARG_INT:
        return sqlite3_bind_int64(stmt, idx, a->i);
    case RD__ARG_REAL:
        return sqlite3_bind_double(stmt, idx, a->d);
    case RD__ARG_BLOB:
        return sqlite3_bind_blob64(stmt, idx, a->p, (sqlite3_uint64)a->i, SQLITE_STATIC);
    case RD__ARG_NULL:
        break;
    }
    return sqlite3_bind_null(stmt, idx);
}

/* The statement fault, when this statement is the one armed (rd_store__fail_statement). */
static int injected(rd_store *s)
{
    s->n_statements++;
    if (s->fail_at > 0 && s->n_statements == s->fail_at) {
        s->fail_at = 0;
        return s->fail_busy ? SQLITE_BUSY : SQLITE_IOERR;
    }
    return SQLITE_OK;
}

static rd_status injected_error(rd_store *s, const char *what, int rc, rd_error *err)
{
    return rd_error_set(err, RD_E_DB, "%s: %s: %s (injected)", s->db_name, what,
                        sqlite3_errstr(rc));
}

rd_status rd__stmt_open(rd__stmt *q, rd_store *s, const char *what, const char *sql, rd__args args,
                        rd_error *err)
{
    int slot;
    *q = (rd__stmt)RD__STMT_INIT;
    q->s = s;
    q->what = what;
    if (s->pg) {
        int rc = injected(s);
        if (rc != SQLITE_OK)
            return injected_error(s, what, rc, err);
        return rd__pg_stmt_open(q, sql, args, err);
    }
    slot = cache_find(s, sql);
    if (slot >= 0 && !s->slots[slot].in_use) {
        q->stmt = s->slots[slot].stmt;
        q->slot = slot;
        s->slots[slot].in_use = 1;
    } else {
        if (sqlite3_prepare_v2(s->db, sql, -1, &q->stmt, NULL) != SQLITE_OK) {
            rd_status st = rd_error_set(err, RD_E_DB, "%s: %s: preparing: %s", s->db_name, what,
                                        sqlite3_errmsg(s->db));
            sqlite3_finalize(q->stmt);
            q->stmt = NULL;
            return st;
        }
        /* The same SQL busy in an enclosing query (a scan whose callback queries again)
         * gets a statement of its own, finalized on close; a full cache likewise. */
        if (slot < 0 && s->n_slots < RD__STMT_CACHE_SIZE) {
            q->slot = s->n_slots++;
            s->slots[q->slot] = (rd__stmt_slot){sql, q->stmt, 1};
        }
    }
    for (int i = 0; i < args.n; i++) {
        if (bind_one(q->stmt, i + 1, &args.v[i]) != SQLITE_OK) {
            rd_status st = rd__db_error(s, what, err);
            rd__stmt_close(q);
            return st;
        }
    }
    return RD_OK;
}

rd_status rd__stmt_step(rd__stmt *q, int *row, rd_error *err)
{
    int rc;
    if (q->res) {
        /* PostgreSQL ran the statement (and counted it for the faults) when it opened. */
        *row = rd__pg_stmt_step(q);
        return RD_OK;
    }
    rc = injected(q->s);
    if (rc != SQLITE_OK) {
        *row = 0;
        return injected_error(q->s, q->what, rc, err);
    }
    rc = sqlite3_step(q->stmt);
    *row = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return RD_OK;
    return rd__db_error(q->s, q->what, err);
}

rd_status rd__stmt_row(rd__stmt *q, rd_store *s, const char *what, const char *sql, rd__args args,
                       int *row, rd_error *err)
{
    rd_status st = rd__stmt_open(q, s, what, sql, args, err);
    *row = 0;
    if (st != RD_OK)
        return st;
    return rd__stmt_step(q, row, err);
}

void rd__stmt_close(rd__stmt *q)
{
    if (q && q->res)
        rd__pg_stmt_close(q);
    if (!q || !q->stmt)
        return;
    if (q->slot >= 0) {
        /* Reset ends the statement's read of the database (a statement left stepping
         * would hold its snapshot and block checkpoints); clearing the bindings drops the
         * borrowed pointers. */
        sqlite3_reset(q->stmt);
        sqlite3_clear_bindings(q->stmt);
        q->s->slots[q->slot].in_use = 0;
    } else {
        sqlite3_finalize(q->stmt);
    }
    q->stmt = NULL;
    q->slot = -1;
}

const char *rd__col_text(rd__stmt *q, int col)
{
    size_t len;
    return rd__col_bytes(q, col, &len);
}

const char *rd__col_bytes(rd__stmt *q, int col, size_t *len)
{
    const char *p;
    if (q->res)
        return rd__pg_col_text(q, col, len);
    /* The text first, then its size, as SQLite documents. */
    p = (const char *)sqlite3_column_text(q->stmt, col);
    *len = p ? (size_t)sqlite3_column_bytes(q->stmt, col) : 0;
    return p;
}

int rd__col_int(rd__stmt *q, int col)
{
    return (int)rd__col_int64(q, col);
}

int64_t rd__col_int64(rd__stmt *q, int col)
{
    return q->res ? rd__pg_col_int64(q, col) : sqlite3_column_int64(q->stmt, col);
}

double rd__col_real(rd__stmt *q, int col)
{
    return q->res ? rd__pg_col_real(q, col) : sqlite3_column_double(q->stmt, col);
}

int rd__col_is_null(rd__stmt *q, int col)
{
    size_t len;
    if (q->res)
        return rd__pg_col_text(q, col, &len) == NULL;
    return sqlite3_column_type(q->stmt, col) == SQLITE_NULL;
}

const void *rd__col_blob(rd__stmt *q, int col, size_t *bytes)
{
    const void *p;
    if (q->res)
        return rd__pg_col_blob(q, col, bytes);
    /* The pointer first, then the size, as SQLite documents for a BLOB read. */
    p = sqlite3_column_blob(q->stmt, col);
    *bytes = (size_t)sqlite3_column_bytes(q->stmt, col);
    return p;
}

rd_status rd__run(rd_store *s, const char *what, const char *sql, rd__args args, int *changes,
                  rd_error *err)
{
    rd__stmt q;
    int row;
    rd_status st = rd__stmt_row(&q, s, what, sql, args, &row, err);
    if (st == RD_OK && changes)
        *changes = q.res ? rd__pg_changes(&q) : sqlite3_changes(s->db);
    rd__stmt_close(&q);
    return st;
}

rd_status rd__query_int64(rd_store *s, const char *what, const char *sql, rd__args args,
                          int64_t *out, int *found, rd_error *err)
{
    rd__stmt q;
    int row;
    rd_status st = rd__stmt_row(&q, s, what, sql, args, &row, err);
    if (st == RD_OK && row)
        *out = rd__col_int64(&q, 0);
    if (st == RD_OK && found)
        *found = row;
    else if (st == RD_OK && !row)
        st = rd_error_set(err, RD_E_DB, "%s: %s: no row", s->db_name, what);
    rd__stmt_close(&q);
    return st;
}

rd_status rd__count(rd_store *s, const char *sql, rd__args args, long *count, rd_error *err)
{
    int64_t n = 0;
    rd_status st = rd__query_int64(s, "counting", sql, args, &n, NULL, err);
    if (st == RD_OK)
        *count = (long)n;
    return st;
}

rd_status rd__last_insert_id(rd_store *s, int64_t *id, rd_error *err)
{
    if (s->pg)
        /* The identity column's sequence was the last this connection advanced. */
        return rd__query_int64(s, "reading the new row's id", "SELECT lastval()", RD__NO_ARGS, id,
                               NULL, err);
    *id = sqlite3_last_insert_rowid(s->db);
    return RD_OK;
}

int rd__in_transaction(rd_store *s)
{
    return s->pg ? rd__pg_in_transaction(s) : !sqlite3_get_autocommit(s->db);
}

rd_status rd__begin(rd_store *s, rd_error *err)
{
    rd_status st;
    if (!s->pg)
        return rd__run(s, "beginning a transaction", "BEGIN IMMEDIATE", RD__NO_ARGS, NULL, err);
    if ((st = rd__run(s, "beginning a transaction", "BEGIN", RD__NO_ARGS, NULL, err)) != RD_OK)
        return st;
    s->pg_in_tx = 1;
    if ((st = rd__pg_lock(s, err)) != RD_OK)
        rd__rollback(s);
    return st;
}

rd_status rd__commit_sync(rd_store *s, int full, rd_error *err)
{
    if (sqlite3_exec(s->db, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL,
                     NULL, NULL) != SQLITE_OK) {
        if (full)
            s->commit_sync_off = 1;
        return rd__db_error(s, full ? "setting synchronous=FULL" : "setting synchronous=NORMAL",
                            err);
    }
    s->commit_sync_off = !full;
    return RD_OK;
}

rd_status rd__commit(rd_store *s, rd_error *err)
{
    rd_status st;
    /* Never a commit without its sync but a group leader's (which calls the helper). */
    if (s->commit_sync_off && (st = rd__commit_sync(s, 1, err)) != RD_OK) {
        rd__rollback(s);
        return st;
    }
    return rd__commit_as_set(s, err);
}

rd_status rd__commit_as_set(rd_store *s, rd_error *err)
{
    rd_status st = rd__run(s, "committing", "COMMIT", RD__NO_ARGS, NULL, err);
    s->pg_in_tx = 0;
    return st;
}

void rd__rollback(rd_store *s)
{
    if (s->pg)
        rd__pg_rollback(s);
    else if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

rd_status rd__exec(rd_store *s, const char *what, const char *sql, rd_error *err)
{
    char *msg = NULL;
    int rc = injected(s);
    if (rc != SQLITE_OK)
        return injected_error(s, what, rc, err);
    if (s->pg)
        return rd__pg_exec(s, what, sql, 0, err);
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        rd_status st = rd_error_set(err, RD_E_DB, "%s: %s: %s", s->db_name, what,
                                    msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return st;
    }
    return RD_OK;
}

/* ---- opening and migrating ---- */

/* The schema version (0 for a new database), or -1 when it cannot be read. */
static int read_version(rd_store *s)
{
    int64_t has = 0, v = 0;
    int found = 0;
    if (rd__query_int64(s, "reading the schema version",
                        s->pg ? "SELECT COUNT(*) FROM information_schema.tables WHERE"
                                " table_schema=current_schema() AND table_name='schema_version'"
                              : "SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND"
                                " name='schema_version'",
                        RD__NO_ARGS, &has, NULL, NULL) != RD_OK)
        return -1;
    if (!has)
        return 0;
    if (rd__query_int64(s, "reading the schema version", "SELECT version FROM schema_version",
                        RD__NO_ARGS, &v, &found, NULL) != RD_OK)
        return -1;
    return found ? (int)v : 0;
}

static rd_status migrate(rd_store *s, rd_error *err)
{
    rd_status st;
    int v;
    /* IMMEDIATE takes the write lock first, so that two processes opening a new store at
     * once apply each migration exactly once. */
    if ((st = rd__begin(s, err)) != RD_OK)
        return st;
    if (s->pg && (st = rd__pg_prepare_schema(s, err)) != RD_OK)
        goto out;
    v = read_version(s);
    if (v < 0) {
        st = rd__db_error(s, "reading the schema version", err);
        goto out;
    }
    if (v > N_MIGRATIONS) {
        st = rd_error_set(err, RD_E_DB, "%s: schema version %d is newer than this radraft (%d)",
                          s->db_name, v, N_MIGRATIONS);
        goto out;
    }
    if (v == 0 && (st = rd__exec(s, "creating the schema version",
                                 "CREATE TABLE schema_version(version INTEGER NOT NULL);"
                                 "INSERT INTO schema_version VALUES(0);",
                                 err)) != RD_OK)
        goto out;
    for (; v < N_MIGRATIONS; v++) {
        char what[64];
        snprintf(what, sizeof what, "migration %d", v + 1);
        st = s->pg ? rd__pg_migration(s, v, migrations[v], err)
                   : rd__exec(s, what, migrations[v], err);
        if (st != RD_OK)
            goto out;
        if ((st = rd__run(s, what, "UPDATE schema_version SET version=?1", RD__ARGS(RD__INT(v + 1)),
                          NULL, err)) != RD_OK)
            goto out;
    }
    if (s->pg && (st = rd__pg_check_identity(s, err)) != RD_OK)
        goto out;
    st = rd__commit(s, err);
out:
    if (st != RD_OK)
        rd__rollback(s);
    return st;
}

int rd__own_file_system(const char *dir)
{
    char parent[RD__STORE_PATH_MAX + 4];
    struct stat d, p;
    snprintf(parent, sizeof parent, "%s/..", dir);
    /* "/" is its own parent, and has every other program's files. */
    return stat(dir, &d) == 0 && stat(parent, &p) == 0 && d.st_dev != p.st_dev;
}

void rd_store_options_default(rd_store_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->duplicate_policy = RD_STORE_DUP_KEEP_FIRST;
    opts->busy_timeout_ms = DEFAULT_BUSY_TIMEOUT_MS;
    opts->backend = RD_STORE_SQLITE;
    opts->node_timeout_seconds = DEFAULT_NODE_TIMEOUT_S;
}

rd_status rd_store_backend_parse(const char *text, rd_store_backend *out, rd_error *err)
{
    if (strcmp(text, "sqlite") == 0)
        *out = RD_STORE_SQLITE;
    else if (strcmp(text, "postgresql") == 0)
        *out = RD_STORE_POSTGRESQL;
    else
        return rd_error_set(err, RD_E_INVALID, "store.backend: 'sqlite' or 'postgresql', not '%s'",
                            text);
    return RD_OK;
}

rd_status rd_store_options_from_config(rd_store_options *opts, const rd_config *cfg, rd_error *err)
{
    rd_status st;
    rd_store_options_default(opts);
    if ((st = rd_store_dup_policy_parse(cfg->store_duplicate_policy, &opts->duplicate_policy,
                                        err)) != RD_OK ||
        (st = rd_store_backend_parse(cfg->store_backend, &opts->backend, err)) != RD_OK)
        return st;
    if (opts->backend == RD_STORE_POSTGRESQL && !cfg->store_postgresql_dsn[0])
        return rd_error_set(err, RD_E_INVALID,
                            "store.backend is postgresql: store.postgresql_dsn must name the"
                            " database (e.g. \"host=db1 dbname=radraft user=radraft\")");
    opts->sync_auto = strcmp(cfg->store_sync, "auto") == 0;
    opts->sync_filesystem = strcmp(cfg->store_sync, "filesystem") == 0;
    if (!opts->sync_auto && !opts->sync_filesystem && strcmp(cfg->store_sync, "file") != 0)
        return rd_error_set(err, RD_E_INVALID,
                            "store.sync: 'auto', 'file' or 'filesystem', not '%s'",
                            cfg->store_sync);
    rd_strlcpy(opts->postgresql_dsn, cfg->store_postgresql_dsn, sizeof opts->postgresql_dsn);
    rd_strlcpy(opts->postgresql_schema, cfg->store_postgresql_schema,
               sizeof opts->postgresql_schema);
    opts->node_timeout_seconds = cfg->server_node_timeout_seconds;
    if (cfg->server_node_name[0]) {
        rd_strlcpy(opts->node, cfg->server_node_name, sizeof opts->node);
    } else {
        /* host:port names a listener uniquely and stays the same across its restarts. */
        char host[256] = "";
        if (gethostname(host, sizeof host - 1) != 0 || !host[0])
            rd_strlcpy(host, "localhost", sizeof host);
        host[sizeof host - 1] = '\0';
        snprintf(opts->node, sizeof opts->node, "%.*s:%d", (int)sizeof opts->node - 8, host,
                 cfg->server_port);
    }
    return RD_OK;
}

rd_status rd_store_open(rd_store **out, const char *data_dir, const rd_store_options *opts,
                        rd_error *err)
{
    rd_store *s = calloc(1, sizeof *s);
    char path[RD__STORE_PATH_MAX + 32];
    rd_status st;

    if (!s)
        return rd_error_set(err, RD_E_NOMEM, "out of memory opening the store");
    if (opts)
        s->opts = *opts;
    else
        rd_store_options_default(&s->opts);
    if (s->opts.busy_timeout_ms <= 0)
        s->opts.busy_timeout_ms = DEFAULT_BUSY_TIMEOUT_MS;
    if (rd_strlcpy(s->dir, data_dir, sizeof s->dir) >= sizeof s->dir - 64) {
        st = rd_error_set(err, RD_E_INVALID, "%s: data directory path too long", data_dir);
        goto out;
    }
    snprintf(s->db_name, sizeof s->db_name, "%s/radraft.db", s->dir);
    snprintf(path, sizeof path, "%s/store", s->dir);
    if ((st = rd_mkdirs(path, err)) != RD_OK)
        goto out;
    if (s->opts.sync_auto)
        s->opts.sync_filesystem = rd__own_file_system(s->dir);
    if (s->opts.backend == RD_STORE_POSTGRESQL) {
        if ((st = rd__pg_open(s, err)) == RD_OK)
            st = migrate(s, err);
        goto out;
    }
    snprintf(path, sizeof path, "%s/radraft.db", s->dir);
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        st = rd_error_set(err, RD_E_DB, "%s: %s", path,
                          s->db ? sqlite3_errmsg(s->db) : "cannot open");
        goto out;
    }
    /* Every connection waits this long for another's write lock inside SQLite; that is all
     * the store does about SQLITE_BUSY (see store_int.h). */
    sqlite3_busy_timeout(s->db, s->opts.busy_timeout_ms);
    /* WAL lets readers and one writer proceed together; synchronous=FULL makes every
     * commit durable before it returns, which the C-STORE success response relies on.
     * Switching a new database to WAL takes a lock that SQLite may not wait for (no busy
     * handler there): a connection that opens it at the same moment as another gets
     * SQLITE_BUSY at once, and tries again within the busy timeout. */
    for (int waited_ms = 0;; waited_ms += 5) {
        st = rd__exec(s, "setting the journal mode",
                      "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", err);
        if (st == RD_OK || (sqlite3_errcode(s->db) & 0xff) != SQLITE_BUSY ||
            waited_ms >= s->opts.busy_timeout_ms)
            break;
        usleep(5000);
    }
    if (st != RD_OK)
        goto out;
    st = migrate(s, err);
out:
    if (st != RD_OK) {
        rd_store_close(s);
        return st;
    }
    *out = s;
    return RD_OK;
}

void rd_store_close(rd_store *s)
{
    if (!s)
        return;
    /* A connection closes only once its statements are finalized. */
    for (int i = 0; i < s->n_slots; i++)
        sqlite3_finalize(s->slots[i].stmt);
    sqlite3_close(s->db);
    rd__pg_close(s);
    free(s);
}

int rd_store_schema_version(rd_store *s)
{
    return read_version(s);
}

double rd_store_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* ---- hooks for the store's tests ---- */

sqlite3 *rd_store__db(rd_store *s)
{
    return s->db;
}

long rd_store__fail_statement(rd_store *s, long nth, int busy)
{
    s->fail_at = nth > 0 ? s->n_statements + nth : 0;
    s->fail_busy = busy;
    return s->n_statements;
}

void rd_store__set_fault(rd_store *s, rd_store_fault fault)
{
    s->fault = fault;
}
