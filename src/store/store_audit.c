/* radraft — the audit trail: the `audit` table (migration 4), one row per audited action
 * (a claim, a view of patient data, an edit, a signature, a change to a user). This file
 * owns the rows' format, their hash chain and its verification. The table is append-only
 * in SQLite (triggers refuse UPDATE and DELETE); the chain makes a change made around the
 * triggers (dropping them, editing the file) visible to `radraft audit verify`.
 *
 * The chain. Row ids are consecutive from 1. Each row stores prev_hash, the hash of the row
 * before it (64 '0' for the first row), and hash, the SHA-256 (lowercase hex) of this
 * message, all ASCII but for the fields' own UTF-8 bytes:
 *
 *     "radraft-audit-1\n" prev_hash "\n" F(id) F(at) F(user) F(action) F(item_id)
 *     F(study_uid) F(sr_sop_instance_uid) F(detail)
 *
 * where F(v) is the netstring "<decimal byte length>:<bytes>," of the column's text and
 * F(NULL) is "~,"; id and item_id are printed as decimal integers ("%lld"), at (seconds
 * since the epoch) with exactly six decimals ("%.6f"), and the text columns are their
 * bytes as stored. The length prefixes make the encoding unambiguous: no two different rows
 * give the same message, whatever characters their fields hold. The absent values are
 * stored one way only: user "" (radraft itself), item_id NULL for none (0 in the API), and
 * NULL for an absent or empty study UID, SR UID or detail.
 *
 * What the chain shows: a changed row fails its own hash; a removed, inserted or reordered
 * row breaks the prev_hash of the row after it. Removing the newest rows leaves a shorter
 * chain that still verifies: only a copy of a recent hash kept elsewhere shows that.
 *
 * Concurrency: a row is appended inside a transaction opened with BEGIN IMMEDIATE, and the
 * previous row's id and hash are read inside it, so that two connections appending at once
 * are serialized by SQLite's write lock and each chains to the row the other committed. */
#include <stdio.h>
#include <string.h>

#include "radraft/store.h"
#include "store/store_int.h"
#include "base/util.h"

#define GENESIS_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* The longest message: the fixed text and hashes, two integers, a time and the capped
 * fields, each with its length prefix; a row read back with longer fields (written around
 * the store) does not fit and so fails verification. */
#define MESSAGE_MAX 2048

/* The message of one row, built by appending fields. */
typedef struct message {
    char buf[MESSAGE_MAX];
    size_t n;
    int overflow;
} message;

static void put_bytes(message *m, const void *p, size_t len)
{
    if (m->overflow || len > sizeof m->buf - m->n) {
        m->overflow = 1;
        return;
    }
    memcpy(m->buf + m->n, p, len);
    m->n += len;
}

/* F(v): a netstring of `len` bytes, or "~," for NULL. */
static void put_field(message *m, const char *p, size_t len)
{
    char prefix[32];
    int k;
    if (!p) {
        put_bytes(m, "~,", 2);
        return;
    }
    k = snprintf(prefix, sizeof prefix, "%zu:", len);
    put_bytes(m, prefix, (size_t)k);
    put_bytes(m, p, len);
    put_bytes(m, ",", 1);
}

static void put_int(message *m, int64_t v, int is_null)
{
    char text[32];
    int k = snprintf(text, sizeof text, "%lld", (long long)v);
    put_field(m, is_null ? NULL : text, (size_t)k);
}

/* One row's fields as the hash sees them: exact bytes and lengths, NULL for SQL NULL. */
typedef struct row_fields {
    int64_t id;
    double at;
    const char *user, *action, *study_uid, *sr_uid, *detail;
    size_t user_len, action_len, study_len, sr_len, detail_len;
    int64_t item_id;
    int item_is_null;
} row_fields;

/* The row's hash, or 0 when its fields are too long to be a row the store wrote. */
static int row_hash(const char *prev_hash, const row_fields *f, char out[RD_SHA256_HEX_SIZE])
{
    message m;
    char at[64];
    int k = snprintf(at, sizeof at, "%.6f", f->at);
    m.n = 0;
    m.overflow = k < 0 || k >= (int)sizeof at;
    put_bytes(&m, "radraft-audit-1\n", 16);
    put_bytes(&m, prev_hash, strlen(prev_hash));
    put_bytes(&m, "\n", 1);
    put_int(&m, f->id, 0);
    put_field(&m, at, (size_t)(k > 0 ? k : 0));
    put_field(&m, f->user, f->user_len);
    put_field(&m, f->action, f->action_len);
    put_int(&m, f->item_id, f->item_is_null);
    put_field(&m, f->study_uid, f->study_len);
    put_field(&m, f->sr_uid, f->sr_len);
    put_field(&m, f->detail, f->detail_len);
    if (m.overflow)
        return 0;
    rd_sha256_hex(m.buf, m.n, out);
    return 1;
}

/* NULL for an absent or empty optional text, so that it is stored (and hashed) one way. */
static const char *opt_text(const char *v)
{
    return v && v[0] ? v : NULL;
}

static rd_status check_text(const char *what, const char *v, size_t max, rd_error *err)
{
    size_t len = v ? strlen(v) : 0;
    if (len > max)
        return rd_error_set(err, RD_E_TOO_LARGE, "audit %s: %zu bytes, at most %zu", what, len,
                            max);
    if (!rd__utf8_plain(v ? v : "", len))
        return rd_error_set(err, RD_E_INVALID,
                            "audit %s: not valid UTF-8 or holds a control character", what);
    return RD_OK;
}

static rd_status check_event(const rd_audit_event *ev, rd_error *err)
{
    rd_status rc;
    if (!ev->action || !ev->action[0])
        return rd_error_set(err, RD_E_INVALID, "audit event: an action is required");
    if ((rc = check_text("action", ev->action, RD_AUDIT_ACTION_MAX, err)) != RD_OK ||
        (rc = check_text("study UID", ev->study_uid, RD_UID_MAX, err)) != RD_OK ||
        (rc = check_text("SR UID", ev->sr_sop_instance_uid, RD_UID_MAX, err)) != RD_OK ||
        (rc = check_text("detail", ev->detail, RD_AUDIT_DETAIL_MAX, err)) != RD_OK)
        return rc;
    if (ev->user && ev->user[0] && !rd_user_name_valid(ev->user))
        return rd_error_set(err, RD_E_INVALID, "audit user '%.80s': not a valid user name",
                            ev->user);
    if (ev->item_id < 0)
        return rd_error_set(err, RD_E_INVALID, "audit item id %lld: not an id",
                            (long long)ev->item_id);
    return RD_OK;
}

static size_t len_of(const char *v)
{
    return v ? strlen(v) : 0;
}

rd_status rd__audit_insert(rd_store *s, const rd_audit_event *ev, double now, rd_error *err)
{
    rd__stmt q = RD__STMT_INIT;
    char prev[RD_SHA256_HEX_SIZE] = GENESIS_HASH, hash[RD_SHA256_HEX_SIZE];
    row_fields f;
    rd_status rc;
    int row = 0;

    /* Outside a transaction the read of the previous hash and the insert would be two
     * transactions, between which another connection could append: two rows would then
     * chain to the same predecessor. */
    if (!rd__in_transaction(s))
        return rd_error_set(err, RD_E_INTERNAL,
                            "audit row appended outside a transaction (a bug in radraft)");
    if ((rc = check_event(ev, err)) != RD_OK)
        return rc;
    memset(&f, 0, sizeof f);
    if ((rc = rd__stmt_row(&q, s, "reading the last audit row",
                           "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1", RD__NO_ARGS, &row,
                           err)) != RD_OK)
        goto out;
    if (row) {
        f.id = rd__col_int64(&q, 0);
        rd_strlcpy(prev, rd__or_empty(rd__col_text(&q, 1)), sizeof prev);
    }
    rd__stmt_close(&q);
    f.id++;
    f.at = now;
    f.user = rd__or_empty(ev->user);
    f.action = ev->action;
    f.item_id = ev->item_id;
    f.item_is_null = ev->item_id == 0;
    f.study_uid = opt_text(ev->study_uid);
    f.sr_uid = opt_text(ev->sr_sop_instance_uid);
    f.detail = opt_text(ev->detail);
    f.user_len = len_of(f.user);
    f.action_len = len_of(f.action);
    f.study_len = len_of(f.study_uid);
    f.sr_len = len_of(f.sr_uid);
    f.detail_len = len_of(f.detail);
    /* The caps of check_event keep every event within MESSAGE_MAX. */
    if (!row_hash(prev, &f, hash)) {
        rc = rd_error_set(err, RD_E_INTERNAL, "audit row %lld does not fit its message",
                          (long long)f.id);
        goto out;
    }
    rc = rd__run(s, "appending an audit row",
                 "INSERT INTO audit(id, at, user, action, item_id, study_uid,"
                 " sr_sop_instance_uid, detail, prev_hash, hash)"
                 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                 RD__ARGS(RD__INT(f.id), RD__REAL(f.at), RD__TEXT(f.user), RD__TEXT(f.action),
                          f.item_is_null ? RD__NULL : RD__INT(f.item_id), RD__TEXT(f.study_uid),
                          RD__TEXT(f.sr_uid), RD__TEXT(f.detail), RD__TEXT(prev), RD__TEXT(hash)),
                 NULL, err);
out:
    rd__stmt_close(&q);
    return rc;
}

rd_status rd_store_audit_append(rd_store *s, const rd_audit_event *ev, rd_error *err)
{
    rd_status rc;
    if ((rc = check_event(ev, err)) != RD_OK)
        return rc;
    if ((rc = rd__begin(s, err)) != RD_OK)
        return rc;
    if ((rc = rd__audit_insert(s, ev, rd_store_now(), err)) == RD_OK)
        rc = rd__commit(s, err);
    if (rc != RD_OK)
        rd__rollback(s);
    return rc;
}

/* Column `col` of the current row: its exact bytes (text may hold a NUL when written
 * around the store), or NULL for SQL NULL. */
static const char *col_bytes(rd__stmt *q, int col, size_t *len)
{
    return rd__col_bytes(q, col, len);
}

/* The columns every read of the audit table selects, in this order. */
#define AUDIT_COLUMNS                                                                              \
    "id, at, user, action, item_id, study_uid, sr_sop_instance_uid, detail, prev_hash, hash"

static void read_fields(rd__stmt *q, row_fields *f)
{
    memset(f, 0, sizeof *f);
    f->id = rd__col_int64(q, 0);
    f->at = rd__col_real(q, 1);
    f->user = col_bytes(q, 2, &f->user_len);
    f->action = col_bytes(q, 3, &f->action_len);
    f->item_is_null = rd__col_is_null(q, 4);
    f->item_id = f->item_is_null ? 0 : rd__col_int64(q, 4);
    f->study_uid = col_bytes(q, 5, &f->study_len);
    f->sr_uid = col_bytes(q, 6, &f->sr_len);
    f->detail = col_bytes(q, 7, &f->detail_len);
}

rd_status rd_store_audit_list(rd_store *s, const char *study_uid, const char *user,
                              rd_status (*fn)(void *ctx, const rd_audit_row *r, rd_error *err),
                              void *ctx, rd_error *err)
{
    rd__stmt q = RD__STMT_INIT;
    rd_audit_row r;
    rd_status rc;
    int row = 0;
    const char *what = "listing the audit trail";

    /* One statement per filter, so that each uses its index (audit_study, audit_user). */
    if (study_uid && user)
        rc = rd__stmt_row(&q, s, what,
                          "SELECT " AUDIT_COLUMNS
                          " FROM audit WHERE study_uid=?1 AND user=?2 ORDER BY id",
                          RD__ARGS(RD__TEXT(study_uid), RD__TEXT(user)), &row, err);
    else if (study_uid)
        rc = rd__stmt_row(&q, s, what,
                          "SELECT " AUDIT_COLUMNS " FROM audit WHERE study_uid=?1 ORDER BY id",
                          RD__ARGS(RD__TEXT(study_uid)), &row, err);
    else if (user)
        rc = rd__stmt_row(&q, s, what,
                          "SELECT " AUDIT_COLUMNS " FROM audit WHERE user=?1 ORDER BY id",
                          RD__ARGS(RD__TEXT(user)), &row, err);
    else
        rc = rd__stmt_row(&q, s, what, "SELECT " AUDIT_COLUMNS " FROM audit ORDER BY id",
                          RD__NO_ARGS, &row, err);
    while (rc == RD_OK && row) {
        memset(&r, 0, sizeof r);
        r.id = rd__col_int64(&q, 0);
        r.at = rd__col_real(&q, 1);
        rd_strlcpy(r.user, rd__or_empty(rd__col_text(&q, 2)), sizeof r.user);
        rd_strlcpy(r.action, rd__or_empty(rd__col_text(&q, 3)), sizeof r.action);
        r.item_id = rd__col_is_null(&q, 4) ? 0 : rd__col_int64(&q, 4);
        rd_strlcpy(r.study_uid, rd__or_empty(rd__col_text(&q, 5)), sizeof r.study_uid);
        rd_strlcpy(r.sr_sop_instance_uid, rd__or_empty(rd__col_text(&q, 6)),
                   sizeof r.sr_sop_instance_uid);
        rd_strlcpy(r.detail, rd__or_empty(rd__col_text(&q, 7)), sizeof r.detail);
        rd_strlcpy(r.prev_hash, rd__or_empty(rd__col_text(&q, 8)), sizeof r.prev_hash);
        rd_strlcpy(r.hash, rd__or_empty(rd__col_text(&q, 9)), sizeof r.hash);
        if ((rc = fn(ctx, &r, err)) != RD_OK)
            break;
        rc = rd__stmt_step(&q, &row, err);
    }
    rd__stmt_close(&q);
    return rc;
}

rd_status rd_store_audit_verify(rd_store *s, long *rows, int64_t *bad_id, rd_error *err)
{
    rd__stmt q = RD__STMT_INIT;
    char prev[RD_SHA256_HEX_SIZE] = GENESIS_HASH, want[RD_SHA256_HEX_SIZE];
    int64_t prev_id = 0;
    long n = 0;
    rd_status rc;
    int row = 0;

    if (bad_id)
        *bad_id = 0;
    /* One SELECT reads one snapshot of the table (WAL), whatever is appended meanwhile. */
    rc = rd__stmt_row(&q, s, "verifying the audit trail",
                      "SELECT " AUDIT_COLUMNS " FROM audit ORDER BY id", RD__NO_ARGS, &row, err);
    while (rc == RD_OK && row) {
        row_fields f;
        size_t prev_len, hash_len;
        const char *row_prev = col_bytes(&q, 8, &prev_len);
        const char *row_hash_text = col_bytes(&q, 9, &hash_len);
        read_fields(&q, &f);
        if (f.id != prev_id + 1 || !row_prev || prev_len != RD_SHA256_HEX_SIZE - 1 ||
            memcmp(row_prev, prev, prev_len) != 0) {
            if (prev_id == 0)
                rc = rd_error_set(err, RD_E_CORRUPT,
                                  "audit row %lld is not a first row (id 1, previous hash all "
                                  "zeros): a row before it was removed or it was changed",
                                  (long long)f.id);
            else
                rc = rd_error_set(err, RD_E_CORRUPT,
                                  "audit row %lld does not follow row %lld: its id or previous "
                                  "hash does not match (a row was removed, inserted or changed)",
                                  (long long)f.id, (long long)prev_id);
            break;
        }
        if (!row_hash(prev, &f, want) || !row_hash_text || hash_len != RD_SHA256_HEX_SIZE - 1 ||
            memcmp(row_hash_text, want, hash_len) != 0) {
            rc = rd_error_set(err, RD_E_CORRUPT,
                              "audit row %lld does not match its hash: the row was changed "
                              "after it was written",
                              (long long)f.id);
            break;
        }
        memcpy(prev, want, sizeof prev);
        prev_id = f.id;
        n++;
        rc = rd__stmt_step(&q, &row, err);
    }
    if (rc == RD_E_CORRUPT && bad_id)
        *bad_id = rd__col_int64(&q, 0);
    rd__stmt_close(&q);
    if (rows)
        *rows = n;
    return rc;
}
