/* radraft — the store's archive table: rows of past studies with their embeddings, read and
 * written for the in-memory index (src/index.c). The SQL stays here, behind the store API,
 * so that another database backend replaces only the store module. */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/store.h"
#include "store/store_int.h"
#include "base/util.h"

/* Caps on what a row read back may hold; larger values mean a damaged or foreign database. */
#define ARCHIVE_MAX_DIM 4096
#define ARCHIVE_STATES_LEN 15

static rd_status db_fail(rd_store *s, rd_error *err, const char *what)
{
    return rd_error_set(err, RD_E_DB, "%s/radraft.db: archive: %s: %s", rd_store__dir(s), what,
                        sqlite3_errmsg(rd_store__db(s)));
}

/* Embeddings are stored little-endian whatever the host, so that a database (or a seed
 * built from it) moves between machines. */
static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void swap_floats(float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char b[4], t;
        memcpy(b, &v[i], 4);
        t = b[0], b[0] = b[3], b[3] = t;
        t = b[1], b[1] = b[2], b[2] = t;
        memcpy(&v[i], b, 4);
    }
}

rd_status rd_store_archive_add(rd_store *s, const rd_store_archive_row *row, int64_t *id,
                               int *added, rd_error *err)
{
    sqlite3 *db = rd_store__db(s);
    sqlite3_stmt *st = NULL;
    float *le = NULL;
    const void *blob;
    size_t bytes;
    rd_status rs = RD_OK;
    int rc;

    if (!row->model_version || !row->key || !row->study_uid || !row->states ||
        strlen(row->states) != ARCHIVE_STATES_LEN || row->dim <= 0 || row->dim > ARCHIVE_MAX_DIM ||
        !row->embedding)
        return rd_error_set(err, RD_E_INVALID, "archive row: missing or malformed field");
    bytes = (size_t)row->dim * sizeof(float);
    blob = row->embedding;
    if (!host_is_little_endian()) {
        if (!(le = malloc(bytes)))
            return rd_error_set(err, RD_E_NOMEM, "out of memory writing an archive row");
        memcpy(le, row->embedding, bytes);
        swap_floats(le, (size_t)row->dim);
        blob = le;
    }
    /* The insert is one statement, so it is atomic by itself; a duplicate key is not an
     * error but a no-op that reports the existing row. */
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO archive(model_version, key, study_uid, patient_hash, view,"
                           " study_date, source, states, findings_text, impression_text, dim,"
                           " embedding, added_at) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)"
                           " ON CONFLICT(model_version, key) DO NOTHING",
                           -1, &st, NULL) != SQLITE_OK) {
        rs = db_fail(s, err, "prepare");
        goto out;
    }
    sqlite3_bind_text(st, 1, row->model_version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, row->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, row->study_uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, row->patient_hash ? row->patient_hash : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, row->view);
    sqlite3_bind_int(st, 6, row->study_date);
    sqlite3_bind_int(st, 7, row->source);
    sqlite3_bind_text(st, 8, row->states, -1, SQLITE_STATIC);
    if (row->findings_text)
        sqlite3_bind_text(st, 9, row->findings_text, -1, SQLITE_STATIC);
    if (row->impression_text)
        sqlite3_bind_text(st, 10, row->impression_text, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 11, row->dim);
    sqlite3_bind_blob(st, 12, blob, (int)bytes, SQLITE_STATIC);
    sqlite3_bind_double(st, 13, rd_store_now());
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        rs = db_fail(s, err, "insert");
        goto out;
    }
    if (sqlite3_changes(db) == 1) {
        if (id)
            *id = sqlite3_last_insert_rowid(db);
        if (added)
            *added = 1;
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT id FROM archive WHERE model_version=? AND key=?", -1, &st,
                           NULL) != SQLITE_OK) {
        rs = db_fail(s, err, "prepare");
        goto out;
    }
    sqlite3_bind_text(st, 1, row->model_version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, row->key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        rs = db_fail(s, err, "looking up an existing row");
        goto out;
    }
    if (id)
        *id = sqlite3_column_int64(st, 0);
    if (added)
        *added = 0;
out:
    sqlite3_finalize(st);
    free(le);
    return rs;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : NULL;
}

rd_status rd_store_archive_scan(rd_store *s, const char *model_version, int with_embedding,
                                rd_store_archive_fn fn, void *ctx, rd_error *err)
{
    sqlite3 *db = rd_store__db(s);
    sqlite3_stmt *st = NULL;
    float *buf = NULL;
    size_t buf_n = 0;
    rd_status rs = RD_OK;
    int rc;
    const char *sql = model_version
                          ? "SELECT id, model_version, key, study_uid, patient_hash, view,"
                            " study_date, source, states, findings_text, impression_text, dim,"
                            " embedding FROM archive WHERE model_version=? ORDER BY id"
                          : "SELECT id, model_version, key, study_uid, patient_hash, view,"
                            " study_date, source, states, findings_text, impression_text, dim,"
                            " embedding FROM archive ORDER BY id";

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, err, "prepare");
    if (model_version)
        sqlite3_bind_text(st, 1, model_version, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rd_store_archive_row row;
        memset(&row, 0, sizeof row);
        row.id = sqlite3_column_int64(st, 0);
        row.model_version = col_text(st, 1);
        row.key = col_text(st, 2);
        row.study_uid = col_text(st, 3);
        row.patient_hash = col_text(st, 4);
        row.view = sqlite3_column_int(st, 5);
        row.study_date = sqlite3_column_int(st, 6);
        row.source = sqlite3_column_int(st, 7);
        row.states = col_text(st, 8);
        row.findings_text = col_text(st, 9);
        row.impression_text = col_text(st, 10);
        row.dim = sqlite3_column_int(st, 11);
        if (!row.model_version || !row.key || !row.study_uid || !row.states || row.dim <= 0 ||
            row.dim > ARCHIVE_MAX_DIM) {
            rs = rd_error_set(err, RD_E_CORRUPT, "%s/radraft.db: archive row %lld is malformed",
                              rd_store__dir(s), (long long)row.id);
            goto out;
        }
        if (with_embedding) {
            const void *blob = sqlite3_column_blob(st, 12);
            size_t bytes = (size_t)sqlite3_column_bytes(st, 12);
            if (!blob || bytes != (size_t)row.dim * sizeof(float)) {
                rs = rd_error_set(err, RD_E_CORRUPT,
                                  "%s/radraft.db: archive row %lld: embedding of %zu bytes, "
                                  "expected %d floats",
                                  rd_store__dir(s), (long long)row.id, bytes, row.dim);
                goto out;
            }
            /* The BLOB may be unaligned for floats: copy it. */
            if ((size_t)row.dim > buf_n) {
                float *nb = realloc(buf, bytes);
                if (!nb) {
                    rs = rd_error_set(err, RD_E_NOMEM, "out of memory reading the archive");
                    goto out;
                }
                buf = nb;
                buf_n = (size_t)row.dim;
            }
            memcpy(buf, blob, bytes);
            if (!host_is_little_endian())
                swap_floats(buf, (size_t)row.dim);
            row.embedding = buf;
        }
        if ((rs = fn(ctx, &row, err)) != RD_OK)
            goto out;
    }
    if (rc != SQLITE_DONE)
        rs = db_fail(s, err, "scan");
out:
    sqlite3_finalize(st);
    free(buf);
    return rs;
}

rd_status rd_store_archive_count(rd_store *s, const char *model_version, long *count, rd_error *err)
{
    sqlite3 *db = rd_store__db(s);
    sqlite3_stmt *st = NULL;
    rd_status rs = RD_OK;
    const char *sql = model_version ? "SELECT COUNT(*) FROM archive WHERE model_version=?"
                                    : "SELECT COUNT(*) FROM archive";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, err, "prepare");
    if (model_version)
        sqlite3_bind_text(st, 1, model_version, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        *count = (long)sqlite3_column_int64(st, 0);
    else
        rs = db_fail(s, err, "count");
    sqlite3_finalize(st);
    return rs;
}

rd_status rd_store_archive_add_many(rd_store *s, const rd_store_archive_row *rows, size_t n,
                                    int64_t *ids, int *added, rd_error *err)
{
    sqlite3 *db = rd_store__db(s);
    rd_status rs = RD_OK;
    /* IMMEDIATE takes the write lock at once, so that the batch does not fail half-way on a
     * lock upgrade when another connection writes meanwhile (the busy timeout waits). */
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(s, err, "begin");
    for (size_t i = 0; i < n && rs == RD_OK; i++)
        rs = rd_store_archive_add(s, &rows[i], ids ? &ids[i] : NULL, added ? &added[i] : NULL, err);
    if (rs == RD_OK && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rs = db_fail(s, err, "commit");
    if (rs != RD_OK && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rs;
}
