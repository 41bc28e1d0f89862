/* radraft — users of the review queue: password hashing (argon2id through libsodium), the
 * role check every queue action starts with, and the user management that `radraft user`
 * and the web page share. It owns the rules of who may change which user; the rows
 * themselves and their audit records are the store's (src/store/store_users.c, which
 * commits each change together with its audit row).
 *
 * The acting user's role is checked before the store's transaction opens, so that an
 * admin disabled at the same instant by another process may still complete one change;
 * the audit row records who made it either way. */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "radraft/review.h"
#include "radraft/store.h"
#include "base/util.h"

/* sodium_init() once per process. Set once under pthread_once and only read afterwards,
 * so that it is no mutable global in the sense of the design's rule. */
static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ready;

static void sodium_start(void)
{
    /* 0: started now, 1: started before (by another library); -1: failure. */
    sodium_ready = sodium_init() >= 0;
}

static rd_status need_sodium(rd_error *err)
{
    pthread_once(&sodium_once, sodium_start);
    if (!sodium_ready)
        return rd_error_set(err, RD_E_INTERNAL, "libsodium could not be initialized");
    return RD_OK;
}

static rd_status check_password(const char *password, rd_error *err)
{
    size_t len = password ? strlen(password) : 0;
    if (len < RD_PASSWORD_MIN || len > RD_PASSWORD_MAX)
        return rd_error_set(err, RD_E_INVALID, "a password of %d to %d bytes is required (got %zu)",
                            RD_PASSWORD_MIN, RD_PASSWORD_MAX, len);
    return RD_OK;
}

rd_status rd_review_password_hash(const char *password, char out[RD_USER_HASH_MAX + 1],
                                  rd_error *err)
{
    char hash[crypto_pwhash_STRBYTES];
    rd_status rc;

    /* A crypto_pwhash_str string always fits the store's column. */
    _Static_assert(crypto_pwhash_STRBYTES <= RD_USER_HASH_MAX + 1, "hash buffer too small");
    if ((rc = check_password(password, err)) != RD_OK || (rc = need_sodium(err)) != RD_OK)
        return rc;
    /* crypto_pwhash_str uses libsodium's default algorithm, argon2id since 1.0.15 (Debian
     * has 1.0.18); the interactive limits keep a login near a tenth of a second. It fails
     * only when it cannot allocate its memory. */
    if (crypto_pwhash_str(hash, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return rd_error_set(err, RD_E_NOMEM, "out of memory hashing a password");
    rd_strlcpy(out, hash, RD_USER_HASH_MAX + 1);
    sodium_memzero(hash, sizeof hash);
    return RD_OK;
}

rd_status rd_review_password_check(const char *hash, const char *password, rd_error *err)
{
    rd_status rc;
    if (!hash || !hash[0])
        return rd_error_set(err, RD_E_DENIED, "no password is set");
    if (!password || strlen(password) > RD_PASSWORD_MAX)
        return rd_error_set(err, RD_E_DENIED, "wrong password");
    if ((rc = need_sodium(err)) != RD_OK)
        return rc;
    if (crypto_pwhash_str_verify(hash, password, strlen(password)) != 0)
        return rd_error_set(err, RD_E_DENIED, "wrong password");
    return RD_OK;
}

rd_status rd_review_user_require(rd_store *s, const char *name, rd_user_role at_least,
                                 rd_store_user *out, rd_error *err)
{
    rd_store_user u;
    rd_status rc = rd_store_user_get(s, name, &u, err);
    if (rc != RD_OK)
        return rc;
    if (u.disabled)
        rc = rd_error_set(err, RD_E_DENIED, "user '%s' is disabled", u.name);
    else if (u.role < at_least)
        rc = rd_error_set(err, RD_E_DENIED, "user '%s' is a%s %s: the %s role is needed", u.name,
                          u.role == RD_ROLE_ADMIN ? "n" : "", rd_user_role_name(u.role),
                          rd_user_role_name(at_least));
    if (rc == RD_OK && out)
        *out = u;
    sodium_memzero(u.password_hash, sizeof u.password_hash);
    return rc;
}

rd_status rd_review_user_login(rd_store *s, const char *name, const char *password,
                               rd_user_role at_least, rd_store_user *out, rd_error *err)
{
    rd_store_user u;
    rd_status rc = rd_store_user_get(s, name, &u, err);
    if (rc == RD_E_NOT_FOUND ||
        (rc == RD_OK && rd_review_password_check(u.password_hash, password, NULL) != RD_OK))
        return rd_error_set(err, RD_E_DENIED, "wrong user name or password");
    if (rc != RD_OK)
        return rc;
    /* Only now, with the password right, may the answer say more about the user. */
    return rd_review_user_require(s, name, at_least, out, err);
}

static rd_status count_one(void *ctx, const rd_store_user *u, rd_error *err)
{
    (void)u;
    (void)err;
    (*(long *)ctx)++;
    return RD_OK;
}

rd_status rd_review_user_add(rd_store *s, const char *acting, const char *name, rd_user_role role,
                             const char *display_name, const char *password, rd_error *err)
{
    rd_store_user u;
    rd_audit_event ev;
    char detail[160];
    int bootstrap = !acting || !acting[0];
    long users = 0;
    rd_status rc;

    memset(&u, 0, sizeof u);
    if (!rd_user_name_valid(name))
        return rd_error_set(err, RD_E_INVALID,
                            "user name '%.80s': 1 to %d of A-Z a-z 0-9 . _ - expected",
                            name ? name : "", RD_USER_NAME_MAX);
    if (password && (rc = check_password(password, err)) != RD_OK)
        return rd_error_prefix(err, rc, "adding user '%s'", name);
    if ((rc = rd_store_user_list(s, count_one, &users, err)) != RD_OK)
        return rc;
    if (bootstrap && users > 0)
        return rd_error_set(err, RD_E_DENIED,
                            "adding user '%s': %ld user%s exist already, so an acting admin is "
                            "needed (only the first user is added without one)",
                            name, users, users == 1 ? "" : "s");
    if (bootstrap && role != RD_ROLE_ADMIN)
        return rd_error_set(err, RD_E_DENIED,
                            "adding user '%s': the first user must be an admin (role %s given), "
                            "or nobody could manage users",
                            name, rd_user_role_name(role));
    if (!bootstrap && users == 0)
        return rd_error_set(err, RD_E_NOT_FOUND,
                            "adding user '%s': no user '%s' (no user exists yet: add the first "
                            "admin without an acting user)",
                            name, acting);
    if (!bootstrap && (rc = rd_review_user_require(s, acting, RD_ROLE_ADMIN, NULL, err)) != RD_OK)
        return rd_error_prefix(err, rc, "adding user '%s'", name);

    if (rd_strlcpy(u.name, name, sizeof u.name) >= sizeof u.name ||
        rd_strlcpy(u.display_name, display_name ? display_name : "", sizeof u.display_name) >=
            sizeof u.display_name)
        return rd_error_set(err, RD_E_TOO_LARGE, "adding user '%s': display name: at most %d bytes",
                            name, RD_USER_DISPLAY_MAX);
    u.role = role;
    /* Hashing takes a tenth of a second and 64 MiB: it is done before the store's write
     * lock is taken, not while other writers wait. */
    if (password && (rc = rd_review_password_hash(password, u.password_hash, err)) != RD_OK)
        goto out;
    snprintf(detail, sizeof detail, "user=%s role=%s%s", name, rd_user_role_name(role),
             bootstrap ? " first-user" : "");
    memset(&ev, 0, sizeof ev);
    ev.user = bootstrap ? "" : acting;
    ev.action = "user-add";
    ev.detail = detail;
    rc = rd_store_user_add_audited(s, &u, bootstrap, &ev, err);
out:
    sodium_memzero(u.password_hash, sizeof u.password_hash);
    return rc;
}

rd_status rd_review_user_passwd(rd_store *s, const char *acting, const char *name,
                                const char *password, rd_error *err)
{
    char hash[RD_USER_HASH_MAX + 1], detail[160];
    rd_audit_event ev;
    rd_status rc;

    if (!rd_user_name_valid(name))
        return rd_error_set(err, RD_E_NOT_FOUND, "no user '%.80s'", name ? name : "");
    if (!acting || !acting[0])
        acting = name;
    if ((rc = check_password(password, err)) != RD_OK)
        return rd_error_prefix(err, rc, "changing the password of '%s'", name);
    if (strcmp(acting, name) == 0) {
        /* Any enabled user may change their own password. */
        if ((rc = rd_review_user_require(s, name, RD_ROLE_VIEWER, NULL, err)) != RD_OK)
            return rd_error_prefix(err, rc, "changing the password of '%s'", name);
    } else if ((rc = rd_review_user_require(s, acting, RD_ROLE_ADMIN, NULL, err)) != RD_OK) {
        return rd_error_prefix(err, rc, "changing the password of another user ('%s')", name);
    }
    if ((rc = rd_review_password_hash(password, hash, err)) != RD_OK)
        return rc;
    snprintf(detail, sizeof detail, "user=%s", name);
    memset(&ev, 0, sizeof ev);
    ev.user = acting;
    ev.action = "user-passwd";
    ev.detail = detail;
    rc = rd_store_user_set_password_audited(s, name, hash, &ev, err);
    sodium_memzero(hash, sizeof hash);
    return rc;
}

rd_status rd_review_user_disable(rd_store *s, const char *acting, const char *name, int disabled,
                                 rd_error *err)
{
    const char *verb = disabled ? "disabling" : "enabling";
    char detail[160];
    rd_audit_event ev;
    rd_status rc;

    if (!rd_user_name_valid(name))
        return rd_error_set(err, RD_E_NOT_FOUND, "no user '%.80s'", name ? name : "");
    if (!acting || !acting[0])
        return rd_error_set(err, RD_E_DENIED, "%s user '%s': an acting admin is needed", verb,
                            name);
    if ((rc = rd_review_user_require(s, acting, RD_ROLE_ADMIN, NULL, err)) != RD_OK)
        return rd_error_prefix(err, rc, "%s user '%s'", verb, name);
    if (disabled && strcmp(acting, name) == 0)
        return rd_error_set(err, RD_E_DENIED,
                            "disabling user '%s': an admin cannot disable themself (so that an "
                            "enabled admin always remains)",
                            name);
    snprintf(detail, sizeof detail, "user=%s", name);
    memset(&ev, 0, sizeof ev);
    ev.user = acting;
    ev.action = disabled ? "user-disable" : "user-enable";
    ev.detail = detail;
    return rd_store_user_set_disabled_audited(s, name, disabled, &ev, err);
}
