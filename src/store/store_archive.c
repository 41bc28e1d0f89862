/* radraft — the archive: rows of past studies with their embeddings, written when studies
 * are imported or signed and read back whole by the in-memory index (src/retrieval/). The
 * SQL stays here, behind the store API, so that another database backend replaces only the
 * store module. */
#include <stdlib.h>
#include <string.h>

#include "radraft/store.h"
#include "store/store_int.h"

/* Caps on what a row read back may hold; larger values mean a damaged or foreign database. */
#define ARCHIVE_MAX_DIM 4096
#define ARCHIVE_STATES_LEN 15

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
    float *le = NULL;
    const void *blob;
    size_t bytes;
    rd_status rs;
    int changed = 0;

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
    rs =
        rd__run(s, "archive: insert",
                "INSERT INTO archive(model_version, key, study_uid, patient_hash, view,"
                " study_date, source, states, findings_text, impression_text, dim,"
                " embedding, added_at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)"
                " ON CONFLICT(model_version, key) DO NOTHING",
                RD__ARGS(RD__TEXT(row->model_version), RD__TEXT(row->key), RD__TEXT(row->study_uid),
                         RD__TEXT(rd__or_empty(row->patient_hash)), RD__INT(row->view),
                         RD__INT(row->study_date), RD__INT(row->source), RD__TEXT(row->states),
                         RD__TEXT(row->findings_text), RD__TEXT(row->impression_text),
                         RD__INT(row->dim), RD__BLOB(blob, bytes), RD__REAL(rd_store_now())),
                &changed, err);
    free(le);
    if (rs != RD_OK)
        return rs;
    if (changed == 1) {
        if (id && (rs = rd__last_insert_id(s, id, err)) != RD_OK)
            return rs;
        if (added)
            *added = 1;
        return RD_OK;
    }
    int64_t existing = 0;
    rs = rd__query_int64(s, "archive: looking up an existing row",
                         "SELECT id FROM archive WHERE model_version=?1 AND key=?2",
                         RD__ARGS(RD__TEXT(row->model_version), RD__TEXT(row->key)), &existing,
                         NULL, err);
    if (rs != RD_OK)
        return rs;
    if (id)
        *id = existing;
    if (added)
        *added = 0;
    return RD_OK;
}

/* The columns that read_row reads, in its order. */
#define SELECT_ROWS                                                                                \
    "SELECT id, model_version, key, study_uid, patient_hash, view, study_date, source, states,"    \
    " findings_text, impression_text, dim, embedding FROM archive"

/* Fills *row from the scan's current row; with `with_embedding` the embedding is copied
 * into *buf (grown as needed), since a BLOB may be unaligned for floats. */
static rd_status read_row(rd_store *s, rd__stmt *q, int with_embedding, float **buf, size_t *buf_n,
                          rd_store_archive_row *row, rd_error *err)
{
    memset(row, 0, sizeof *row);
    row->id = rd__col_int64(q, 0);
    row->model_version = rd__col_text(q, 1);
    row->key = rd__col_text(q, 2);
    row->study_uid = rd__col_text(q, 3);
    row->patient_hash = rd__col_text(q, 4);
    row->view = rd__col_int(q, 5);
    row->study_date = rd__col_int(q, 6);
    row->source = rd__col_int(q, 7);
    row->states = rd__col_text(q, 8);
    row->findings_text = rd__col_text(q, 9);
    row->impression_text = rd__col_text(q, 10);
    row->dim = rd__col_int(q, 11);
    if (!row->model_version || !row->key || !row->study_uid || !row->states || row->dim <= 0 ||
        row->dim > ARCHIVE_MAX_DIM)
        return rd_error_set(err, RD_E_CORRUPT, "%s: archive row %lld is malformed", s->db_name,
                            (long long)row->id);
    if (!with_embedding)
        return RD_OK;
    size_t bytes;
    const void *blob = rd__col_blob(q, 12, &bytes);
    if (!blob || bytes != (size_t)row->dim * sizeof(float))
        return rd_error_set(err, RD_E_CORRUPT,
                            "%s: archive row %lld: embedding of %zu bytes, "
                            "expected %d floats",
                            s->db_name, (long long)row->id, bytes, row->dim);
    if ((size_t)row->dim > *buf_n) {
        float *nb = realloc(*buf, bytes);
        if (!nb)
            return rd_error_set(err, RD_E_NOMEM, "out of memory reading the archive");
        *buf = nb;
        *buf_n = (size_t)row->dim;
    }
    memcpy(*buf, blob, bytes);
    if (!host_is_little_endian())
        swap_floats(*buf, (size_t)row->dim);
    row->embedding = *buf;
    return RD_OK;
}

/* Calls `fn` for every row the statement yields. */
static rd_status scan_rows(rd_store *s, const char *what, const char *sql, rd__args args,
                           int with_embedding, rd_store_archive_fn fn, void *ctx, rd_error *err)
{
    rd__stmt q;
    rd_store_archive_row row;
    float *buf = NULL;
    size_t buf_n = 0;
    int more;
    rd_status rs = rd__stmt_open(&q, s, what, sql, args, err);
    while (rs == RD_OK && (rs = rd__stmt_step(&q, &more, err)) == RD_OK && more) {
        if ((rs = read_row(s, &q, with_embedding, &buf, &buf_n, &row, err)) == RD_OK)
            rs = fn(ctx, &row, err);
    }
    rd__stmt_close(&q);
    free(buf);
    return rs;
}

rd_status rd_store_archive_scan(rd_store *s, const char *model_version, int with_embedding,
                                rd_store_archive_fn fn, void *ctx, rd_error *err)
{
    if (model_version)
        return scan_rows(s, "archive: scan", SELECT_ROWS " WHERE model_version=?1 ORDER BY id",
                         RD__ARGS(RD__TEXT(model_version)), with_embedding, fn, ctx, err);
    return scan_rows(s, "archive: scan", SELECT_ROWS " ORDER BY id", RD__NO_ARGS, with_embedding,
                     fn, ctx, err);
}

rd_status rd_store_archive_scan_after(rd_store *s, const char *model_version, int64_t after_id,
                                      int with_embedding, rd_store_archive_fn fn, void *ctx,
                                      rd_error *err)
{
    return scan_rows(
        s, "archive: scan of new rows", SELECT_ROWS " WHERE model_version=?1 AND id>?2 ORDER BY id",
        RD__ARGS(RD__TEXT(model_version), RD__INT(after_id)), with_embedding, fn, ctx, err);
}

rd_status rd_store_archive_states(rd_store *s, int64_t id, char *states, size_t size, int *source,
                                  int *found, rd_error *err)
{
    rd__stmt q = RD__STMT_INIT;
    int row = 0;
    rd_status rs = rd__stmt_row(&q, s, "archive: states of a row",
                                "SELECT states, source FROM archive WHERE id=?1",
                                RD__ARGS(RD__INT(id)), &row, err);
    *found = 0;
    states[0] = '\0';
    if (rs == RD_OK && row && rd__col_text(&q, 0) &&
        strlen(rd__col_text(&q, 0)) == ARCHIVE_STATES_LEN && size > ARCHIVE_STATES_LEN) {
        memcpy(states, rd__col_text(&q, 0), ARCHIVE_STATES_LEN + 1);
        *source = rd__col_int(&q, 1);
        *found = 1;
    }
    rd__stmt_close(&q);
    return rs;
}

rd_status rd_store_archive_marks(rd_store *s, int64_t *max_id, int64_t *deletions, rd_error *err)
{
    rd_status rs = rd__query_int64(s, "archive: marks", "SELECT COALESCE(MAX(id), 0) FROM archive",
                                   RD__NO_ARGS, max_id, NULL, err);
    if (rs == RD_OK)
        rs = rd__query_int64(s, "archive: marks", "SELECT deletions FROM archive_marks",
                             RD__NO_ARGS, deletions, NULL, err);
    return rs;
}

rd_status rd_store_archive_count(rd_store *s, const char *model_version, long *count, rd_error *err)
{
    if (model_version)
        return rd__count(s, "SELECT COUNT(*) FROM archive WHERE model_version=?1",
                         RD__ARGS(RD__TEXT(model_version)), count, err);
    return rd__count(s, "SELECT COUNT(*) FROM archive", RD__NO_ARGS, count, err);
}

rd_status rd_store_archive_add_many(rd_store *s, const rd_store_archive_row *rows, size_t n,
                                    int64_t *ids, int *added, rd_error *err)
{
    rd_status rs;
    /* The batch is all or none; rd__begin takes the write lock at once, so that it does not
     * fail half-way on a lock upgrade when another connection writes meanwhile. */
    if ((rs = rd__begin(s, err)) != RD_OK)
        return rs;
    for (size_t i = 0; i < n && rs == RD_OK; i++)
        rs = rd_store_archive_add(s, &rows[i], ids ? &ids[i] : NULL, added ? &added[i] : NULL, err);
    if (rs == RD_OK)
        rs = rd__commit(s, err);
    if (rs != RD_OK)
        rd__rollback(s);
    return rs;
}
