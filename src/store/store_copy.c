/* radraft — copying a store's index into another (radraft store migrate): an SQLite data
 * directory's rows into a new PostgreSQL schema, table by table, every value with its type,
 * in one transaction of the destination, then the identity columns moved past the copied
 * ids and the row counts compared. The files stay where they are: the destination's data
 * directory is the same folder. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/store.h"
#include "store/store_int.h"

/* Every table of the schema in an order that keeps each reference to an earlier table
 * (signatures after reviews), and whether its id column is an identity. archive_marks
 * (one row the migrations create) and schema_version are not copied. */
static const struct {
    const char *name;
    int has_id;
} tables[RD_STORE_COPY_TABLES] = {
    {"instances", 0},  {"studies", 0},    {"jobs", 1},    {"outbox", 1}, {"study_versions", 0},
    {"reviews", 1},    {"signatures", 1}, {"archive", 1}, {"users", 0},  {"audit", 1},
    {"qr_studies", 0}, {"qr_pages", 0},   {"nodes", 0},   {"runs", 1},   {"run_studies", 0},
};

/* Longest INSERT the copy builds: every column name and a mark for each (the statement
 * helper quotes the column `user` for PostgreSQL). */
#define INSERT_MAX 8192

/* The column of the current row of `q` as a typed argument (borrowed from the row). */
static rd__arg arg_of(sqlite3_stmt *q, int col)
{
    switch (sqlite3_column_type(q, col)) {
    case SQLITE_INTEGER:
        return RD__INT(sqlite3_column_int64(q, col));
    case SQLITE_FLOAT:
        return RD__REAL(sqlite3_column_double(q, col));
    case SQLITE_TEXT:
        return RD__TEXT((const char *)sqlite3_column_text(q, col));
    case SQLITE_BLOB: {
        const void *p = sqlite3_column_blob(q, col);
        return RD__BLOB(p, sqlite3_column_bytes(q, col));
    }
    }
    return RD__NULL;
}

/* Copies one table's rows; *rows gets how many. */
static rd_status copy_table(rd_store *from, rd_store *to, const char *table, long *rows,
                            rd_error *err)
{
    char sql[INSERT_MAX], what[96];
    sqlite3_stmt *q = NULL;
    rd__arg *args = NULL;
    rd_status st = RD_OK;
    size_t len;
    int n, rc;

    snprintf(what, sizeof what, "copying %s", table);
    snprintf(sql, sizeof sql, "SELECT * FROM %s ORDER BY rowid", table);
    if (sqlite3_prepare_v2(from->db, sql, -1, &q, NULL) != SQLITE_OK)
        return rd__db_error(from, what, err);
    n = sqlite3_column_count(q);
    len = (size_t)snprintf(sql, sizeof sql, "INSERT INTO %s(", table);
    for (int c = 0; c < n && len < sizeof sql; c++)
        len += (size_t)snprintf(sql + len, sizeof sql - len, "%s%s", c ? ", " : "",
                                sqlite3_column_name(q, c));
    for (int c = 0; c < n && len < sizeof sql; c++)
        len +=
            (size_t)snprintf(sql + len, sizeof sql - len, "%s?%d", c ? ", " : ") VALUES(", c + 1);
    if (len + 2 >= sizeof sql || n == 0) {
        sqlite3_finalize(q);
        return rd_error_set(err, RD_E_INTERNAL, "%s: %d columns do not fit", what, n);
    }
    snprintf(sql + len, sizeof sql - len, ")");
    if (!(args = calloc((size_t)n, sizeof *args))) {
        sqlite3_finalize(q);
        return rd_error_set(err, RD_E_NOMEM, "out of memory %s", what);
    }
    *rows = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        for (int c = 0; c < n; c++)
            args[c] = arg_of(q, c);
        if ((st = rd__run(to, what, sql, (rd__args){args, n}, NULL, err)) != RD_OK)
            break;
        (*rows)++;
    }
    if (st == RD_OK && rc != SQLITE_DONE)
        st = rd__db_error(from, what, err);
    free(args);
    sqlite3_finalize(q);
    return st;
}

/* Moves the identity of `table` past its largest copied id. */
static rd_status move_identity(rd_store *to, const char *table, rd_error *err)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT setval(pg_get_serial_sequence('%s', 'id'), COALESCE(MAX(id), 0) + 1, false)"
             " FROM %s",
             table, table);
    return rd__exec(to, "moving an identity past the copied rows", sql, err);
}

rd_status rd_store_copy(rd_store *from, rd_store *to, rd_store_copied copied[RD_STORE_COPY_TABLES],
                        rd_error *err)
{
    rd_status st;
    long n = 0;
    int64_t deletions = 0;
    int found = 0;

    if (!from->db || !to->pg)
        return rd_error_set(err, RD_E_INVALID,
                            "store migrate copies an SQLite data directory into PostgreSQL");
    if (rd_store_schema_version(from) != rd_store_schema_version(to))
        return rd_error_set(err, RD_E_INVALID, "%s: schema version %d, %s: %d", from->db_name,
                            rd_store_schema_version(from), to->db_name,
                            rd_store_schema_version(to));
    if ((st = rd__begin(to, err)) != RD_OK)
        return st;
    /* Only into an empty schema: a copy over rows of its own would mix two stores. */
    for (int t = 0; t < RD_STORE_COPY_TABLES && st == RD_OK; t++) {
        char sql[96];
        long rows = 0;
        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", tables[t].name);
        if ((st = rd__count(to, sql, RD__NO_ARGS, &rows, err)) == RD_OK && rows > 0)
            st = rd_error_set(err, RD_E_INVALID,
                              "%s: table %s holds %ld rows already: copy into"
                              " an empty schema (store.postgresql_schema)",
                              to->db_name, tables[t].name, rows);
    }
    for (int t = 0; t < RD_STORE_COPY_TABLES && st == RD_OK; t++) {
        copied[t].table = tables[t].name;
        if ((st = copy_table(from, to, tables[t].name, &copied[t].rows, err)) == RD_OK &&
            tables[t].has_id)
            st = move_identity(to, tables[t].name, err);
    }
    if (st == RD_OK && (st = rd__query_int64(from, "reading the archive's deletions",
                                             "SELECT deletions FROM archive_marks", RD__NO_ARGS,
                                             &deletions, &found, err)) == RD_OK)
        st = rd__run(to, "copying the archive's deletions", "UPDATE archive_marks SET deletions=?1",
                     RD__ARGS(RD__INT(deletions)), NULL, err);
    /* What arrived, counted by the destination itself. */
    for (int t = 0; t < RD_STORE_COPY_TABLES && st == RD_OK; t++) {
        char sql[96];
        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", tables[t].name);
        if ((st = rd__count(to, sql, RD__NO_ARGS, &n, err)) == RD_OK && n != copied[t].rows)
            st = rd_error_set(err, RD_E_DB, "%s: %ld rows of %s copied, %ld arrived", to->db_name,
                              copied[t].rows, tables[t].name, n);
    }
    if (st == RD_OK)
        st = rd__commit(to, err);
    if (st != RD_OK)
        rd__rollback(to);
    return st;
}
