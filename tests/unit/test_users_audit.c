/* Users of the review queue and the audit trail: roles, validation of names and display
 * names, password hashes, the role check, user management with its bootstrap rule, the
 * hash chain (several rows, two writers at once, tampering around the triggers). */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "radraft/review.h"
#include "radraft/store.h"
#include "rdtest.h"
#include "rdtest_store.h"
#include "store/store_int.h"
#include "base/util.h"

static rd_store_user user_of(const char *name, rd_user_role role, const char *pn)
{
    rd_store_user u;
    memset(&u, 0, sizeof u);
    rd_strlcpy(u.name, name, sizeof u.name);
    rd_strlcpy(u.display_name, pn, sizeof u.display_name);
    u.role = role;
    return u;
}

static rd_status count_user(void *ctx, const rd_store_user *u, rd_error *err)
{
    (void)u;
    (void)err;
    (*(int *)ctx)++;
    return RD_OK;
}

/* Audit rows read back, for the checks. */
typedef struct rows {
    rd_audit_row r[16];
    int n;
} rows;

static rd_status collect_row(void *ctx, const rd_audit_row *r, rd_error *err)
{
    rows *rs = ctx;
    (void)err;
    if (rs->n < 16)
        rs->r[rs->n] = *r;
    rs->n++;
    return RD_OK;
}

/* Runs SQL on a second, raw connection to the store's database, as someone working around
 * radraft would. Returns SQLite's result code; *msg (may be NULL) gets its message. */
static int raw_sql(const char *dir, const char *sql, char *msg, size_t size)
{
    char path[1200];
    sqlite3 *db = NULL;
    char *emsg = NULL;
    int rc;
    snprintf(path, sizeof path, "%s/radraft.db", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        sqlite3_close(db);
        return SQLITE_CANTOPEN;
    }
    sqlite3_busy_timeout(db, 10000);
    rc = sqlite3_exec(db, sql, NULL, NULL, &emsg);
    if (msg)
        rd_strlcpy(msg, emsg ? emsg : "", size);
    sqlite3_free(emsg);
    sqlite3_close(db);
    return rc;
}

RD_TEST(role_names_parse)
{
    rd_user_role r = RD_ROLE_ADMIN;
    rd_error err;
    CHECK_OK(rd_user_role_parse("viewer", &r, &err), &err);
    CHECK_EQ_INT(r, RD_ROLE_VIEWER);
    CHECK_OK(rd_user_role_parse("radiologist", &r, &err), &err);
    CHECK_EQ_INT(r, RD_ROLE_RADIOLOGIST);
    CHECK_OK(rd_user_role_parse("admin", &r, &err), &err);
    CHECK_EQ_INT(r, RD_ROLE_ADMIN);
    CHECK_STR(rd_user_role_name(RD_ROLE_RADIOLOGIST), "radiologist");
    CHECK_STR(rd_user_role_name((rd_user_role)7), "?");
    CHECK_EQ_INT(rd_user_role_parse("Admin", &r, &err), RD_E_INVALID);
    CHECK(strstr(err.msg, "'Admin'") != NULL);
    CHECK_EQ_INT(rd_user_role_parse("", &r, &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_user_role_parse(NULL, &r, &err), RD_E_INVALID);
    /* The order the role check relies on. */
    CHECK(RD_ROLE_VIEWER < RD_ROLE_RADIOLOGIST && RD_ROLE_RADIOLOGIST < RD_ROLE_ADMIN);
}

RD_TEST(names_and_display_names)
{
    char name[80], pn[256];
    rd_error err;
    CHECK(rd_user_name_valid("a"));
    CHECK(rd_user_name_valid("jane.doe_2-x"));
    CHECK(!rd_user_name_valid(""));
    CHECK(!rd_user_name_valid(NULL));
    CHECK(!rd_user_name_valid("jane doe"));
    CHECK(!rd_user_name_valid("jane/doe"));
    CHECK(!rd_user_name_valid("j\xc3\xa9"));
    memset(name, 'a', 64);
    name[64] = '\0';
    CHECK(rd_user_name_valid(name));
    name[64] = 'a';
    name[65] = '\0';
    CHECK(!rd_user_name_valid(name));

    CHECK_OK(rd_user_display_name_check("Doe^Jane", &err), &err);
    CHECK_OK(rd_user_display_name_check("Doe^Jane^M^Dr^PhD", &err), &err);
    CHECK_OK(rd_user_display_name_check("M\xc3\xbcller^J\xc3\xbcrgen", &err), &err);
    CHECK_OK(rd_user_display_name_check("Yamada^Tarou=\xe5\xb1\xb1\xe7\x94\xb0^\xe5\xa4\xaa\xe9\x83"
                                        "\x8e",
                                        &err),
             &err);
    CHECK_EQ_INT(rd_user_display_name_check("", &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_user_display_name_check(NULL, &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_user_display_name_check("a^b^c^d^e^f", &err), RD_E_INVALID);
    CHECK(strstr(err.msg, "5") != NULL);
    CHECK_EQ_INT(rd_user_display_name_check("Doe\nJane", &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_user_display_name_check("Doe\x7f", &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_user_display_name_check("Doe\xc2\x85", &err), RD_E_INVALID); /* C1 NEL */
    CHECK_EQ_INT(rd_user_display_name_check("Doe\xff", &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_user_display_name_check("Doe\xc3", &err), RD_E_INVALID);      /* cut */
    CHECK_EQ_INT(rd_user_display_name_check("\xc0\xaf", &err), RD_E_INVALID);     /* overlong */
    CHECK_EQ_INT(rd_user_display_name_check("\xed\xa0\x80", &err), RD_E_INVALID); /* surrogate */
    CHECK_EQ_INT(rd_user_display_name_check("Doe\\Jane", &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_user_display_name_check("^^ ", &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_user_display_name_check("a=b=c=d", &err), RD_E_INVALID);
    memset(pn, 'x', 192);
    pn[192] = '\0';
    CHECK_OK(rd_user_display_name_check(pn, &err), &err);
    pn[192] = 'x';
    pn[193] = '\0';
    CHECK_EQ_INT(rd_user_display_name_check(pn, &err), RD_E_TOO_LARGE);
}

RD_TEST(user_add_get_duplicate_malformed)
{
    const char *dir = rd_test_tmpdir("users_add");
    rd_store *s = NULL;
    rd_store_user u, got;
    rd_error err;
    int n = 0;

    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    u = user_of("jdoe", RD_ROLE_RADIOLOGIST, "Doe^Jane");
    rd_strlcpy(u.password_hash, "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA",
               sizeof u.password_hash);
    REQUIRE_OK(rd_store_user_add(s, &u, &err), &err);
    REQUIRE_OK(rd_store_user_get(s, "jdoe", &got, &err), &err);
    CHECK_STR(got.name, "jdoe");
    CHECK_STR(got.display_name, "Doe^Jane");
    CHECK_EQ_INT(got.role, RD_ROLE_RADIOLOGIST);
    CHECK_EQ_INT(got.disabled, 0);
    CHECK_STR(got.password_hash, u.password_hash);
    CHECK(got.created_at > 0 && got.updated_at == got.created_at);

    /* The name is taken. */
    u = user_of("jdoe", RD_ROLE_VIEWER, "Other^One");
    CHECK_EQ_INT(rd_store_user_add(s, &u, &err), RD_E_INVALID);
    CHECK(strstr(err.msg, "'jdoe' exists already") != NULL);
    /* Malformed fields are refused before anything is written. */
    u = user_of("j doe", RD_ROLE_VIEWER, "Doe^J");
    CHECK_EQ_INT(rd_store_user_add(s, &u, &err), RD_E_INVALID);
    CHECK(strstr(err.msg, "j doe") != NULL);
    u = user_of("", RD_ROLE_VIEWER, "Doe^J");
    CHECK_EQ_INT(rd_store_user_add(s, &u, &err), RD_E_INVALID);
    u = user_of("viewer1", RD_ROLE_VIEWER, "a^b^c^d^e^f");
    CHECK_EQ_INT(rd_store_user_add(s, &u, &err), RD_E_INVALID);
    CHECK(strstr(err.msg, "viewer1") != NULL);
    u = user_of("viewer1", RD_ROLE_VIEWER, "Doe\tJ");
    CHECK_EQ_INT(rd_store_user_add(s, &u, &err), RD_E_INVALID);
    u = user_of("viewer1", (rd_user_role)9, "Doe^J");
    CHECK_EQ_INT(rd_store_user_add(s, &u, &err), RD_E_INVALID);
    u = user_of("viewer1", RD_ROLE_VIEWER, "Doe^J");
    rd_strlcpy(u.password_hash, "has space", sizeof u.password_hash);
    CHECK_EQ_INT(rd_store_user_add(s, &u, &err), RD_E_INVALID);
    memset(u.password_hash, 'h', RD_USER_HASH_MAX);
    u.password_hash[RD_USER_HASH_MAX] = '\0';
    CHECK_OK(rd_store_user_add(s, &u, &err), &err); /* the longest hash fits */
    CHECK_EQ_INT(rd_store_user_set_password(s, "viewer1", "", &err), RD_OK);
    REQUIRE_OK(rd_store_user_get(s, "viewer1", &got, &err), &err);
    CHECK_STR(got.password_hash, "");
    CHECK(got.updated_at >= got.created_at);

    CHECK_EQ_INT(rd_store_user_get(s, "nobody", &got, &err), RD_E_NOT_FOUND);
    CHECK(strstr(err.msg, "'nobody'") != NULL);
    CHECK_EQ_INT(rd_store_user_get(s, "../x", &got, &err), RD_E_NOT_FOUND);
    CHECK_EQ_INT(rd_store_user_set_disabled(s, "nobody", 1, &err), RD_E_NOT_FOUND);
    CHECK_EQ_INT(rd_store_user_set_password(s, "nobody", "x", &err), RD_E_NOT_FOUND);
    CHECK_OK(rd_store_user_set_disabled(s, "jdoe", 1, &err), &err);
    REQUIRE_OK(rd_store_user_get(s, "jdoe", &got, &err), &err);
    CHECK_EQ_INT(got.disabled, 1);
    CHECK_OK(rd_store_user_list(s, count_user, &n, &err), &err);
    CHECK_EQ_INT(n, 2);
    rd_store_close(s);
}

RD_TEST(password_hash_round_trip)
{
    char hash[RD_USER_HASH_MAX + 1], hash2[RD_USER_HASH_MAX + 1], longpw[RD_PASSWORD_MAX + 2];
    rd_error err;
    REQUIRE_OK(rd_review_password_hash("correct horse", hash, &err), &err);
    CHECK(strncmp(hash, "$argon2id$", 10) == 0);
    CHECK_OK(rd_review_password_check(hash, "correct horse", &err), &err);
    CHECK_EQ_INT(rd_review_password_check(hash, "correct horsE", &err), RD_E_DENIED);
    CHECK_EQ_INT(rd_review_password_check(hash, "", &err), RD_E_DENIED);
    CHECK_EQ_INT(rd_review_password_check("", "correct horse", &err), RD_E_DENIED);
    CHECK_EQ_INT(rd_review_password_check("$argon2id$garbage", "correct horse", &err), RD_E_DENIED);
    /* A fresh salt every time: the same password never gives the same hash. */
    REQUIRE_OK(rd_review_password_hash("correct horse", hash2, &err), &err);
    CHECK(strcmp(hash, hash2) != 0);
    CHECK_EQ_INT(rd_review_password_hash("short", hash, &err), RD_E_INVALID);
    CHECK(strstr(err.msg, "8 to 1024") != NULL);
    CHECK_EQ_INT(rd_review_password_hash(NULL, hash, &err), RD_E_INVALID);
    memset(longpw, 'p', RD_PASSWORD_MAX + 1);
    longpw[RD_PASSWORD_MAX + 1] = '\0';
    CHECK_EQ_INT(rd_review_password_hash(longpw, hash, &err), RD_E_INVALID);
    longpw[RD_PASSWORD_MAX] = '\0';
    CHECK_OK(rd_review_password_hash(longpw, hash, &err), &err);
    CHECK_OK(rd_review_password_check(hash, longpw, &err), &err);
}

RD_TEST(require_unknown_disabled_low_role)
{
    const char *dir = rd_test_tmpdir("users_require");
    rd_store *s = NULL;
    rd_store_user u, got;
    rd_error err;

    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    u = user_of("rad", RD_ROLE_RADIOLOGIST, "Rad^Ian");
    REQUIRE_OK(rd_store_user_add(s, &u, &err), &err);
    u = user_of("view", RD_ROLE_VIEWER, "View^Vera");
    REQUIRE_OK(rd_store_user_add(s, &u, &err), &err);
    u = user_of("gone", RD_ROLE_ADMIN, "Gone^Gary");
    REQUIRE_OK(rd_store_user_add(s, &u, &err), &err);
    REQUIRE_OK(rd_store_user_set_disabled(s, "gone", 1, &err), &err);

    CHECK_OK(rd_review_user_require(s, "rad", RD_ROLE_RADIOLOGIST, &got, &err), &err);
    CHECK_STR(got.name, "rad");
    CHECK_OK(rd_review_user_require(s, "rad", RD_ROLE_VIEWER, NULL, &err), &err);
    CHECK_EQ_INT(rd_review_user_require(s, "nobody", RD_ROLE_VIEWER, &got, &err), RD_E_NOT_FOUND);
    CHECK(strstr(err.msg, "'nobody'") != NULL);
    CHECK_EQ_INT(rd_review_user_require(s, "gone", RD_ROLE_VIEWER, &got, &err), RD_E_DENIED);
    CHECK(strstr(err.msg, "'gone' is disabled") != NULL);
    CHECK_EQ_INT(rd_review_user_require(s, "view", RD_ROLE_RADIOLOGIST, &got, &err), RD_E_DENIED);
    CHECK(strstr(err.msg, "'view' is a viewer") && strstr(err.msg, "radiologist role"));
    CHECK_EQ_INT(rd_review_user_require(s, "rad", RD_ROLE_ADMIN, &got, &err), RD_E_DENIED);
    CHECK(strstr(err.msg, "'rad' is a radiologist") && strstr(err.msg, "admin role"));
    rd_store_close(s);
}

RD_TEST(user_management_bootstrap_and_audit)
{
    const char *dir = rd_test_tmpdir("users_manage");
    rd_store *s = NULL;
    rd_store_user got;
    rd_error err;
    rows rs;
    long n = 0;
    int64_t bad = -1;

    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    /* The first user: no acting user, and it must be an admin. */
    CHECK_EQ_INT(rd_review_user_add(s, NULL, "rad", RD_ROLE_RADIOLOGIST, "Rad^Ian", NULL, &err),
                 RD_E_DENIED);
    CHECK(strstr(err.msg, "first user must be an admin") != NULL);
    CHECK_EQ_INT(rd_review_user_add(s, "ghost", "boss", RD_ROLE_ADMIN, "Boss^B", NULL, &err),
                 RD_E_NOT_FOUND);
    CHECK(strstr(err.msg, "no user exists yet") != NULL);
    REQUIRE_OK(rd_review_user_add(s, NULL, "boss", RD_ROLE_ADMIN, "Boss^B", "boss-password", &err),
               &err);
    /* Once a user exists, nobody is added without an acting admin. */
    CHECK_EQ_INT(rd_review_user_add(s, NULL, "boss2", RD_ROLE_ADMIN, "Boss^C", NULL, &err),
                 RD_E_DENIED);
    CHECK(strstr(err.msg, "acting admin") != NULL);
    /* The store's own check, inside the transaction, agrees. */
    {
        rd_store_user u = user_of("boss3", RD_ROLE_ADMIN, "Boss^D");
        CHECK_EQ_INT(rd_store_user_add_audited(s, &u, 1, NULL, &err), RD_E_DENIED);
    }
    REQUIRE_OK(
        rd_review_user_add(s, "boss", "rad", RD_ROLE_RADIOLOGIST, "Rad^Ian", "rad-password", &err),
        &err);
    REQUIRE_OK(
        rd_review_user_add(s, "boss", "view", RD_ROLE_VIEWER, "View^Vera", "view-password", &err),
        &err);
    /* A radiologist manages no user. */
    CHECK_EQ_INT(
        rd_review_user_add(s, "rad", "carol", RD_ROLE_VIEWER, "Carol^C", "carol-password", &err),
        RD_E_DENIED);
    CHECK(strstr(err.msg, "'rad' is a radiologist") && strstr(err.msg, "admin role"));
    CHECK_EQ_INT(rd_review_user_add(s, "boss", "rad", RD_ROLE_VIEWER, "Rad^Ian", NULL, &err),
                 RD_E_INVALID);
    CHECK_EQ_INT(rd_review_user_add(s, "boss", "x", RD_ROLE_VIEWER, "X^X", "short", &err),
                 RD_E_INVALID);

    /* Passwords: one's own, or anyone's as an admin; not another's as a radiologist. */
    CHECK_OK(rd_review_user_passwd(s, NULL, "rad", "new-rad-password", &err), &err);
    CHECK_OK(rd_review_user_login(s, "rad", "new-rad-password", RD_ROLE_RADIOLOGIST, &got, &err),
             &err);
    CHECK_EQ_INT(rd_review_user_login(s, "rad", "rad-password", RD_ROLE_VIEWER, &got, &err),
                 RD_E_DENIED);
    CHECK(strstr(err.msg, "wrong user name or password") != NULL);
    CHECK_EQ_INT(rd_review_user_login(s, "nobody", "rad-password", RD_ROLE_VIEWER, &got, &err),
                 RD_E_DENIED);
    CHECK(strstr(err.msg, "wrong user name or password") != NULL);
    CHECK_EQ_INT(rd_review_user_passwd(s, "rad", "view", "hijacked-pass", &err), RD_E_DENIED);
    CHECK(strstr(err.msg, "admin role") != NULL);
    CHECK_OK(rd_review_user_passwd(s, "boss", "view", "reset-by-admin", &err), &err);
    CHECK_OK(rd_review_user_login(s, "view", "reset-by-admin", RD_ROLE_VIEWER, NULL, &err), &err);

    /* Disabling: an admin, not themself; a disabled user can no longer act. */
    CHECK_EQ_INT(rd_review_user_disable(s, "rad", "view", 1, &err), RD_E_DENIED);
    CHECK_EQ_INT(rd_review_user_disable(s, "boss", "boss", 1, &err), RD_E_DENIED);
    CHECK(strstr(err.msg, "cannot disable themself") != NULL);
    CHECK_EQ_INT(rd_review_user_disable(s, "boss", "nobody", 1, &err), RD_E_NOT_FOUND);
    CHECK_OK(rd_review_user_disable(s, "boss", "rad", 1, &err), &err);
    CHECK_EQ_INT(rd_review_user_passwd(s, NULL, "rad", "another-password", &err), RD_E_DENIED);
    CHECK(strstr(err.msg, "'rad' is disabled") != NULL);
    CHECK_EQ_INT(rd_review_user_login(s, "rad", "new-rad-password", RD_ROLE_VIEWER, &got, &err),
                 RD_E_DENIED);
    CHECK(strstr(err.msg, "'rad' is disabled") != NULL);
    CHECK_OK(rd_review_user_disable(s, "boss", "rad", 0, &err), &err);
    CHECK_OK(rd_review_user_require(s, "rad", RD_ROLE_RADIOLOGIST, NULL, &err), &err);

    /* Every change, and only the changes, left its audit row, by whom it was made. */
    memset(&rs, 0, sizeof rs);
    REQUIRE_OK(rd_store_audit_list(s, NULL, NULL, collect_row, &rs, &err), &err);
    REQUIRE(rs.n == 7);
    CHECK_STR(rs.r[0].action, "user-add");
    CHECK_STR(rs.r[0].user, "");
    CHECK_STR(rs.r[0].detail, "user=boss role=admin first-user");
    CHECK_STR(rs.r[1].action, "user-add");
    CHECK_STR(rs.r[1].user, "boss");
    CHECK_STR(rs.r[1].detail, "user=rad role=radiologist");
    CHECK_STR(rs.r[3].action, "user-passwd");
    CHECK_STR(rs.r[3].user, "rad");
    CHECK_STR(rs.r[4].action, "user-passwd");
    CHECK_STR(rs.r[4].user, "boss");
    CHECK_STR(rs.r[4].detail, "user=view");
    CHECK_STR(rs.r[5].action, "user-disable");
    CHECK_STR(rs.r[6].action, "user-enable");
    memset(&rs, 0, sizeof rs);
    REQUIRE_OK(rd_store_audit_list(s, NULL, "rad", collect_row, &rs, &err), &err);
    CHECK_EQ_INT(rs.n, 1);
    CHECK_OK(rd_store_audit_verify(s, &n, &bad, &err), &err);
    CHECK_EQ_INT(n, 7);
    CHECK_EQ_INT(bad, 0);
    rd_store_close(s);
}

RD_TEST(audit_chain_verifies)
{
    const char *dir = rd_test_tmpdir("audit_chain");
    rd_store *s = NULL;
    rd_error err;
    rows rs;
    long n = -1;
    int64_t bad = -1;
    char detail[600];

    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    /* An empty trail is intact. */
    CHECK_OK(rd_store_audit_verify(s, &n, &bad, &err), &err);
    CHECK_EQ_INT(n, 0);
    {
        rd_audit_event evs[] = {
            {"jdoe", "claim", 7, "1.2.3", NULL, NULL},
            {"jdoe", "view", 7, "1.2.3", NULL, ""},
            {"jdoe", "sign", 7, "1.2.3", "1.2.3.9", "edited: 12 words"},
            {NULL, "supersede", 7, "1.2.3", NULL, "new images"},
            {"ann", "view", 8, "1.2.4", NULL, "r\xc3\xb6ntgen ^|,:~ 5:x,"},
        };
        for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
            REQUIRE_OK(rd_store_audit_append(s, &evs[i], &err), &err);
    }
    memset(&rs, 0, sizeof rs);
    REQUIRE_OK(rd_store_audit_list(s, NULL, NULL, collect_row, &rs, &err), &err);
    REQUIRE(rs.n == 5);
    CHECK_EQ_INT(rs.r[0].id, 1);
    CHECK_STR(rs.r[0].prev_hash,
              "0000000000000000000000000000000000000000000000000000000000000000");
    for (int i = 1; i < rs.n; i++) {
        CHECK_EQ_INT(rs.r[i].id, i + 1);
        CHECK_STR(rs.r[i].prev_hash, rs.r[i - 1].hash);
        CHECK(rs.r[i].at >= rs.r[i - 1].at);
    }
    CHECK_STR(rs.r[2].sr_sop_instance_uid, "1.2.3.9");
    CHECK_EQ_INT(rs.r[2].item_id, 7);
    CHECK_STR(rs.r[3].user, "");
    CHECK_STR(rs.r[1].detail, "");
    CHECK_OK(rd_store_audit_verify(s, &n, &bad, &err), &err);
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_INT(bad, 0);

    /* Filters: a study, a user, both. */
    memset(&rs, 0, sizeof rs);
    CHECK_OK(rd_store_audit_list(s, "1.2.3", NULL, collect_row, &rs, &err), &err);
    CHECK_EQ_INT(rs.n, 4);
    memset(&rs, 0, sizeof rs);
    CHECK_OK(rd_store_audit_list(s, NULL, "ann", collect_row, &rs, &err), &err);
    CHECK_EQ_INT(rs.n, 1);
    memset(&rs, 0, sizeof rs);
    CHECK_OK(rd_store_audit_list(s, "1.2.3", "ann", collect_row, &rs, &err), &err);
    CHECK_EQ_INT(rs.n, 0);

    /* The caps: action 31 bytes, detail 511; longer is refused whole, nothing written. */
    {
        rd_audit_event ev = {"jdoe", "view", 0, NULL, NULL, detail};
        memset(detail, 'd', 511);
        detail[511] = '\0';
        CHECK_OK(rd_store_audit_append(s, &ev, &err), &err);
        detail[511] = 'd';
        detail[512] = '\0';
        CHECK_EQ_INT(rd_store_audit_append(s, &ev, &err), RD_E_TOO_LARGE);
        CHECK(strstr(err.msg, "detail") != NULL);
        ev.detail = "fine";
        ev.action = "an-action-name-of-32-characters!";
        CHECK_EQ_INT(rd_store_audit_append(s, &ev, &err), RD_E_TOO_LARGE);
        ev.action = "an-action-name-of-31-character!";
        CHECK_OK(rd_store_audit_append(s, &ev, &err), &err);
        ev.action = "";
        CHECK_EQ_INT(rd_store_audit_append(s, &ev, &err), RD_E_INVALID);
        ev.action = "view";
        ev.detail = "two\nlines";
        CHECK_EQ_INT(rd_store_audit_append(s, &ev, &err), RD_E_INVALID);
        ev.detail = NULL;
        ev.user = "not a name";
        CHECK_EQ_INT(rd_store_audit_append(s, &ev, &err), RD_E_INVALID);
        ev.user = "jdoe";
        ev.study_uid = "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26";
        CHECK_EQ_INT(rd_store_audit_append(s, &ev, &err), RD_E_TOO_LARGE);
    }
    CHECK_OK(rd_store_audit_verify(s, &n, &bad, &err), &err);
    CHECK_EQ_INT(n, 7);

    /* rd__audit_insert belongs inside the caller's transaction. */
    {
        rd_audit_event ev = {"jdoe", "view", 0, NULL, NULL, NULL};
        CHECK_EQ_INT(rd__audit_insert(s, &ev, rd_store_now(), &err), RD_E_INTERNAL);
        REQUIRE_OK(rd__begin(s, &err), &err);
        CHECK_OK(rd__audit_insert(s, &ev, rd_store_now(), &err), &err);
        rd__rollback(s);
        REQUIRE_OK(rd__begin(s, &err), &err);
        CHECK_OK(rd__audit_insert(s, &ev, rd_store_now(), &err), &err);
        CHECK_OK(rd__audit_insert(s, &ev, rd_store_now(), &err), &err);
        CHECK_OK(rd__commit(s, &err), &err);
    }
    CHECK_OK(rd_store_audit_verify(s, &n, &bad, &err), &err);
    CHECK_EQ_INT(n, 9);
    rd_store_close(s);
}

typedef struct appender {
    const char *dir;
    const char *user;
    int n;
    pthread_barrier_t *start;
    rd_status st;
    rd_error err;
} appender;

static void *append_many(void *arg)
{
    appender *a = arg;
    rd_store *s = NULL;
    char detail[64];
    /* Each thread its own connection, as the design asks. */
    a->st = rd_store_open(&s, a->dir, rdt_store_opts(a->dir), &a->err);
    for (int i = 0; i < a->n; i++) {
        rd_audit_event ev = {a->user, "view", i + 1, "1.2.840.1", NULL, detail};
        /* The threads meet every 10 appends and then race for the next 10: left alone, the
         * one holding the lock takes it again at once while the other sleeps in SQLite's
         * busy handler, and the appends would hardly interleave. Both always reach the
         * barrier, even after an error, so that neither waits forever. */
        if (i % 10 == 0)
            pthread_barrier_wait(a->start);
        if (a->st != RD_OK)
            continue;
        snprintf(detail, sizeof detail, "%s #%d", a->user, i);
        a->st = rd_store_audit_append(s, &ev, &a->err);
    }
    rd_store_close(s);
    return NULL;
}

/* Counts the changes of user from one row to the next: how much the writers interleaved. */
static rd_status count_switches(void *ctx, const rd_audit_row *r, rd_error *err)
{
    struct {
        char last[RD_USER_NAME_MAX + 1];
        int switches;
    } *c = ctx;
    (void)err;
    if (c->last[0] && strcmp(c->last, r->user) != 0)
        c->switches++;
    rd_strlcpy(c->last, r->user, sizeof c->last);
    return RD_OK;
}

RD_TEST(audit_two_writers_keep_the_chain)
{
    const char *dir = rd_test_tmpdir("audit_concurrent");
    rd_store *s = NULL;
    rd_error err;
    pthread_barrier_t start;
    appender a[2] = {{dir, "alice", 200, &start, RD_OK, {RD_OK, ""}},
                     {dir, "bob", 200, &start, RD_OK, {RD_OK, ""}}};
    pthread_t th[2];
    long n = 0;
    int64_t bad = -1;
    rows rs;
    struct {
        char last[RD_USER_NAME_MAX + 1];
        int switches;
    } sw = {"", 0};

    /* Created once before the threads start, so that they race on the appends only. */
    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    REQUIRE(pthread_barrier_init(&start, NULL, 2) == 0);
    for (int i = 0; i < 2; i++)
        REQUIRE(pthread_create(&th[i], NULL, append_many, &a[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < 2; i++)
        CHECK_OK(a[i].st, &a[i].err);
    CHECK_OK(rd_store_audit_verify(s, &n, &bad, &err), &err);
    CHECK_EQ_INT(n, 400);
    CHECK_EQ_INT(bad, 0);
    memset(&rs, 0, sizeof rs);
    CHECK_OK(rd_store_audit_list(s, NULL, "alice", collect_row, &rs, &err), &err);
    CHECK_EQ_INT(rs.n, 200);
    /* The writers did take turns: the test raced them rather than run them one by one. */
    CHECK_OK(rd_store_audit_list(s, NULL, NULL, count_switches, &sw, &err), &err);
    CHECK_MSG(sw.switches >= 10, "the writers interleaved only %d times", sw.switches);
    rd_store_close(s);
}

RD_TEST(audit_tampering_is_detected)
{
    const char *dir = rd_test_tmpdir("audit_tamper");
    rd_store *s = NULL;
    rd_error err;
    char msg[256];
    long n = 0;
    int64_t bad = 0;
    rows rs;

    REQUIRE_OK(rd_store_open(&s, dir, rdt_store_opts(dir), &err), &err);
    for (int i = 0; i < 4; i++) {
        rd_audit_event ev = {"jdoe", "view", i + 1, "1.2.3", NULL, NULL};
        REQUIRE_OK(rd_store_audit_append(s, &ev, &err), &err);
    }
    /* The triggers refuse an UPDATE and a DELETE... */
    CHECK(raw_sql(dir, "UPDATE audit SET user='mallory' WHERE id=2", msg, sizeof msg) != SQLITE_OK);
    CHECK(strstr(msg, "append-only") != NULL);
    CHECK(raw_sql(dir, "DELETE FROM audit WHERE id=3", msg, sizeof msg) != SQLITE_OK);
    CHECK(strstr(msg, "append-only") != NULL);
    CHECK_OK(rd_store_audit_verify(s, &n, &bad, &err), &err);
    CHECK_EQ_INT(n, 4);
    memset(&rs, 0, sizeof rs);
    CHECK_OK(rd_store_audit_list(s, NULL, "mallory", collect_row, &rs, &err), &err);
    CHECK_EQ_INT(rs.n, 0);

    /* ...and an edit made around them breaks the chain at that row. */
    REQUIRE(raw_sql(dir, "DROP TRIGGER audit_no_update; UPDATE audit SET user='mallory' WHERE id=2",
                    msg, sizeof msg) == SQLITE_OK);
    CHECK_EQ_INT(rd_store_audit_verify(s, &n, &bad, &err), RD_E_CORRUPT);
    CHECK_EQ_INT(bad, 2);
    CHECK_EQ_INT(n, 1);
    CHECK(strstr(err.msg, "row 2") != NULL);
    /* Putting the field back restores it; then a removed row breaks the row after it. */
    REQUIRE(raw_sql(dir, "UPDATE audit SET user='jdoe' WHERE id=2", msg, sizeof msg) == SQLITE_OK);
    CHECK_OK(rd_store_audit_verify(s, &n, &bad, &err), &err);
    REQUIRE(raw_sql(dir, "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id=3", msg,
                    sizeof msg) == SQLITE_OK);
    CHECK_EQ_INT(rd_store_audit_verify(s, &n, &bad, &err), RD_E_CORRUPT);
    CHECK_EQ_INT(bad, 4);
    CHECK(strstr(err.msg, "row 4") != NULL);
    /* A NULL where the store writes text, or a hash recomputed without the chain, fail too. */
    REQUIRE(raw_sql(dir, "DELETE FROM audit WHERE id=4; UPDATE audit SET detail='' WHERE id=1", msg,
                    sizeof msg) == SQLITE_OK);
    CHECK_EQ_INT(rd_store_audit_verify(s, &n, &bad, &err), RD_E_CORRUPT);
    CHECK_EQ_INT(bad, 1);
    rd_store_close(s);
}

RD_TEST_MAIN()
