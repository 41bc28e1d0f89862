/* radraft — users of the review queue: the `users` table (migration 4). This file owns the
 * rules every user row satisfies (login name, display name as a DICOM person name, role,
 * password hash as opaque printable text) and the changes to the table, alone or together
 * with their audit row in one transaction. It never sees a password: hashing and checking
 * passwords is the review module's (src/review/users.c), and whether the acting user may
 * make a change is decided there too. */
#include <string.h>

#include "radraft/store.h"
#include "store/store_int.h"
#include "base/util.h"

const char *rd_user_role_name(rd_user_role role)
{
    switch (role) {
    case RD_ROLE_VIEWER:
        return "viewer";
    case RD_ROLE_RADIOLOGIST:
        return "radiologist";
    case RD_ROLE_ADMIN:
        return "admin";
    }
    return "?";
}

rd_status rd_user_role_parse(const char *name, rd_user_role *out, rd_error *err)
{
    static const rd_user_role roles[] = {RD_ROLE_VIEWER, RD_ROLE_RADIOLOGIST, RD_ROLE_ADMIN};
    for (size_t i = 0; name && i < sizeof roles / sizeof roles[0]; i++)
        if (strcmp(name, rd_user_role_name(roles[i])) == 0) {
            *out = roles[i];
            return RD_OK;
        }
    return rd_error_set(err, RD_E_INVALID, "unknown role '%.64s' (viewer, radiologist or admin)",
                        name ? name : "");
}

int rd_user_name_valid(const char *name)
{
    size_t n = 0;
    if (!name)
        return 0;
    for (; name[n]; n++) {
        char c = name[n];
        if (n >= RD_USER_NAME_MAX || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return n > 0;
}

int rd__utf8_plain(const char *p, size_t len)
{
    const unsigned char *s = (const unsigned char *)p;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        unsigned cp, min;
        int more;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return 0;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            more = 1, cp = c & 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef)
            more = 2, cp = c & 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4)
            more = 3, cp = c & 0x07, min = 0x10000;
        else
            return 0; /* a continuation byte first, an overlong C0/C1 lead, or above F4 */
        if (len - i <= (size_t)more)
            return 0;
        for (int k = 1; k <= more; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        /* Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8;
         * the C1 controls (U+0080..U+009F) are control characters like the C0 ones. */
        if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff ||
            (cp >= 0x80 && cp <= 0x9f))
            return 0;
        i += (size_t)more + 1;
    }
    return 1;
}

rd_status rd_user_display_name_check(const char *pn, rd_error *err)
{
    size_t len = pn ? strlen(pn) : 0;
    int groups = 1, components = 1, content = 0;
    if (len == 0)
        return rd_error_set(err, RD_E_INVALID,
                            "a display name (DICOM PN, Family^Given) is required");
    if (len > RD_USER_DISPLAY_MAX)
        return rd_error_set(err, RD_E_TOO_LARGE, "display name: %zu bytes, at most %d", len,
                            RD_USER_DISPLAY_MAX);
    if (!rd__utf8_plain(pn, len))
        return rd_error_set(err, RD_E_INVALID,
                            "display name: not valid UTF-8 or holds a control character");
    /* A PN value is up to three component groups (alphabetic=ideographic=phonetic), each up
     * to five components (family^given^middle^prefix^suffix); a backslash would make it two
     * values. */
    for (size_t i = 0; i < len; i++) {
        if (pn[i] == '\\')
            return rd_error_set(err, RD_E_INVALID, "display name: a backslash is not allowed");
        if (pn[i] == '=') {
            if (++groups > 3)
                return rd_error_set(err, RD_E_INVALID,
                                    "display name: at most 3 '='-separated component groups");
            components = 1;
        } else if (pn[i] == '^') {
            if (++components > 5)
                return rd_error_set(err, RD_E_INVALID,
                                    "display name: at most 5 '^'-separated components "
                                    "(Family^Given^Middle^Prefix^Suffix)");
        } else if (pn[i] != ' ') {
            content = 1;
        }
    }
    if (!content)
        return rd_error_set(err, RD_E_INVALID, "display name: no name between the separators");
    return RD_OK;
}

/* A password hash is opaque to the store (a crypto_pwhash_str string), but it is printed
 * into no file and compared by libsodium, so it is held to printable ASCII of bounded
 * length. NULL and "" mean no password. */
static rd_status check_hash(const char *hash, rd_error *err)
{
    size_t len = hash ? strlen(hash) : 0;
    if (len > RD_USER_HASH_MAX)
        return rd_error_set(err, RD_E_TOO_LARGE, "password hash: %zu bytes, at most %d", len,
                            RD_USER_HASH_MAX);
    for (size_t i = 0; i < len; i++)
        if (hash[i] <= ' ' || hash[i] > '~')
            return rd_error_set(err, RD_E_INVALID, "password hash: not printable ASCII");
    return RD_OK;
}

static rd_status check_name(const char *name, rd_error *err)
{
    if (!rd_user_name_valid(name))
        return rd_error_set(err, RD_E_INVALID,
                            "user name '%.80s': 1 to %d of A-Z a-z 0-9 . _ - expected",
                            name ? name : "", RD_USER_NAME_MAX);
    return RD_OK;
}

static rd_status check_user(const rd_store_user *u, rd_error *err)
{
    rd_status rc;
    if ((rc = check_name(u->name, err)) != RD_OK)
        return rc;
    if ((rc = rd_user_display_name_check(u->display_name, err)) != RD_OK)
        return rd_error_prefix(err, rc, "user '%s'", u->name);
    if (u->role != RD_ROLE_VIEWER && u->role != RD_ROLE_RADIOLOGIST && u->role != RD_ROLE_ADMIN)
        return rd_error_set(err, RD_E_INVALID, "user '%s': unknown role %d", u->name, (int)u->role);
    return check_hash(u->password_hash, err);
}

/* "" and NULL both bind SQL NULL: a user without a password has no hash at all. */
static const char *hash_or_null(const char *hash)
{
    return hash && hash[0] ? hash : NULL;
}

/* Appends `ev` (when given) inside the open transaction. */
static rd_status audit_with(rd_store *s, const rd_audit_event *ev, double now, rd_error *err)
{
    return ev ? rd__audit_insert(s, ev, now, err) : RD_OK;
}

rd_status rd_store_user_add_audited(rd_store *s, const rd_store_user *u, int only_if_first,
                                    const rd_audit_event *ev, rd_error *err)
{
    rd_status rc;
    double now = rd_store_now();
    int changed = 0;
    long n = 0;

    if ((rc = check_user(u, err)) != RD_OK)
        return rc;
    if ((rc = rd__begin(s, err)) != RD_OK)
        return rc;
    if (only_if_first) {
        if ((rc = rd__count(s, "SELECT COUNT(*) FROM users", RD__NO_ARGS, &n, err)) != RD_OK)
            goto out;
        if (n > 0) {
            rc = rd_error_set(err, RD_E_DENIED,
                              "%ld user%s exist already: only the first user is added without "
                              "an acting admin",
                              n, n == 1 ? "" : "s");
            goto out;
        }
    }
    if ((rc = rd__run(s, "adding a user",
                      "INSERT INTO users(name, display_name, role, password_hash, disabled,"
                      " created_at, updated_at) VALUES(?1, ?2, ?3, ?4, 0, ?5, ?5)"
                      " ON CONFLICT(name) DO NOTHING",
                      RD__ARGS(RD__TEXT(u->name), RD__TEXT(u->display_name),
                               RD__TEXT(rd_user_role_name(u->role)),
                               RD__TEXT(hash_or_null(u->password_hash)), RD__REAL(now)),
                      &changed, err)) != RD_OK)
        goto out;
    if (changed != 1) {
        rc = rd_error_set(err, RD_E_INVALID, "user '%s' exists already", u->name);
        goto out;
    }
    if ((rc = audit_with(s, ev, now, err)) != RD_OK)
        goto out;
    rc = rd__commit(s, err);
out:
    if (rc != RD_OK)
        rd__rollback(s);
    return rc;
}

rd_status rd_store_user_add(rd_store *s, const rd_store_user *u, rd_error *err)
{
    return rd_store_user_add_audited(s, u, 0, NULL, err);
}

/* The columns every read of the users table selects, in this order. */
#define USER_COLUMNS "name, display_name, role, password_hash, disabled, created_at, updated_at"

static rd_status user_of_row(rd__stmt *q, rd_store_user *u, rd_error *err)
{
    memset(u, 0, sizeof *u);
    rd_strlcpy(u->name, rd__or_empty(rd__col_text(q, 0)), sizeof u->name);
    rd_strlcpy(u->display_name, rd__or_empty(rd__col_text(q, 1)), sizeof u->display_name);
    rd_strlcpy(u->password_hash, rd__or_empty(rd__col_text(q, 3)), sizeof u->password_hash);
    u->disabled = rd__col_int(q, 4) != 0;
    u->created_at = rd__col_real(q, 5);
    u->updated_at = rd__col_real(q, 6);
    /* The table's CHECK constraint allows only the three names. */
    return rd_user_role_parse(rd__col_text(q, 2), &u->role, err);
}

rd_status rd_store_user_get(rd_store *s, const char *name, rd_store_user *out, rd_error *err)
{
    rd__stmt q = RD__STMT_INIT;
    rd_status rc;
    int row = 0;

    if (!rd_user_name_valid(name))
        return rd_error_set(err, RD_E_NOT_FOUND, "no user '%.80s'", name ? name : "");
    rc = rd__stmt_row(&q, s, "reading a user", "SELECT " USER_COLUMNS " FROM users WHERE name=?1",
                      RD__ARGS(RD__TEXT(name)), &row, err);
    if (rc == RD_OK && !row)
        rc = rd_error_set(err, RD_E_NOT_FOUND, "no user '%s'", name);
    else if (rc == RD_OK)
        rc = user_of_row(&q, out, err);
    rd__stmt_close(&q);
    return rc;
}

/* Runs one UPDATE of a user's row and its audit row in one transaction. */
static rd_status update_user(rd_store *s, const char *what, const char *sql, const char *name,
                             rd__arg value, const rd_audit_event *ev, rd_error *err)
{
    rd_status rc;
    double now = rd_store_now();
    int changed = 0;

    if (!rd_user_name_valid(name))
        return rd_error_set(err, RD_E_NOT_FOUND, "no user '%.80s'", name ? name : "");
    if ((rc = rd__begin(s, err)) != RD_OK)
        return rc;
    if ((rc = rd__run(s, what, sql, RD__ARGS(value, RD__REAL(now), RD__TEXT(name)), &changed,
                      err)) != RD_OK)
        goto out;
    if (changed != 1) {
        rc = rd_error_set(err, RD_E_NOT_FOUND, "no user '%s'", name);
        goto out;
    }
    if ((rc = audit_with(s, ev, now, err)) != RD_OK)
        goto out;
    rc = rd__commit(s, err);
out:
    if (rc != RD_OK)
        rd__rollback(s);
    return rc;
}

rd_status rd_store_user_set_password_audited(rd_store *s, const char *name,
                                             const char *password_hash, const rd_audit_event *ev,
                                             rd_error *err)
{
    rd_status rc = check_hash(password_hash, err);
    if (rc != RD_OK)
        return rc;
    return update_user(s, "changing a password",
                       "UPDATE users SET password_hash=?1, updated_at=?2 WHERE name=?3", name,
                       RD__TEXT(hash_or_null(password_hash)), ev, err);
}

rd_status rd_store_user_set_password(rd_store *s, const char *name, const char *password_hash,
                                     rd_error *err)
{
    return rd_store_user_set_password_audited(s, name, password_hash, NULL, err);
}

rd_status rd_store_user_set_disabled_audited(rd_store *s, const char *name, int disabled,
                                             const rd_audit_event *ev, rd_error *err)
{
    return update_user(s, "disabling a user",
                       "UPDATE users SET disabled=?1, updated_at=?2 WHERE name=?3", name,
                       RD__INT(disabled ? 1 : 0), ev, err);
}

rd_status rd_store_user_set_disabled(rd_store *s, const char *name, int disabled, rd_error *err)
{
    return rd_store_user_set_disabled_audited(s, name, disabled, NULL, err);
}

rd_status rd_store_user_list(rd_store *s,
                             rd_status (*fn)(void *ctx, const rd_store_user *u, rd_error *err),
                             void *ctx, rd_error *err)
{
    rd__stmt q = RD__STMT_INIT;
    rd_store_user u;
    rd_status rc;
    int row = 0;

    rc = rd__stmt_row(&q, s, "listing users", "SELECT " USER_COLUMNS " FROM users ORDER BY name",
                      RD__NO_ARGS, &row, err);
    while (rc == RD_OK && row) {
        if ((rc = user_of_row(&q, &u, err)) != RD_OK || (rc = fn(ctx, &u, err)) != RD_OK)
            break;
        rc = rd__stmt_step(&q, &row, err);
    }
    rd__stmt_close(&q);
    return rc;
}
