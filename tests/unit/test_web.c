/* The web server's parts that need no HTTP client: the session table (open, find, idle
 * expiry, logout, capacity, CSRF), the login lockout (counting in a window, per key,
 * clearing), the in-memory PNG encoder, and rd_web_start's configuration checks plus one
 * request over a real socket. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "radraft/config.h"
#include "radraft/image.h"
#include "radraft/web.h"
#include "rdtest.h"
#include "web/web_int.h"

/* dir/name into a configuration string; 0 when it does not fit. */
static int set_path(char *dst, size_t size, const char *dir, const char *name)
{
    int n = snprintf(dst, size, "%s/%s", dir, name);
    return n > 0 && (size_t)n < size;
}

static rd__web_session make_session(const char *user)
{
    rd__web_session s;
    memset(&s, 0, sizeof s);
    snprintf(s.user, sizeof s.user, "%s", user);
    snprintf(s.display_name, sizeof s.display_name, "Doe^%s", user);
    s.role = RD_ROLE_RADIOLOGIST;
    return s;
}

RD_TEST(session_open_find_close)
{
    rd__web_sessions *t = NULL;
    rd__web_session s = make_session("rad"), got;
    char token[RD__WEB_TOKEN_HEX], token2[RD__WEB_TOKEN_HEX];
    rd_error err;
    REQUIRE_OK(rd__web_sessions_create(&t, 16, 60, &err), &err);
    REQUIRE_OK(rd__web_session_open(t, &s, 100, token, &err), &err);
    CHECK_EQ_INT((int)strlen(token), 64);
    CHECK_EQ_INT((int)strlen(s.csrf), 64);
    CHECK(strcmp(token, s.csrf) != 0);
    REQUIRE_OK(rd__web_session_find(t, token, 101, &got, &err), &err);
    CHECK_STR(got.user, "rad");
    CHECK_STR(got.csrf, s.csrf);
    CHECK(rd__web_csrf_ok(got.csrf, s.csrf));
    /* Another session of the same user has its own tokens. */
    rd__web_session s2 = make_session("rad");
    REQUIRE_OK(rd__web_session_open(t, &s2, 100, token2, &err), &err);
    CHECK(strcmp(token, token2) != 0);
    CHECK(strcmp(s.csrf, s2.csrf) != 0);
    CHECK(!rd__web_csrf_ok(s.csrf, s2.csrf));
    CHECK(!rd__web_csrf_ok(s.csrf, NULL));
    CHECK(!rd__web_csrf_ok(s.csrf, ""));
    CHECK_EQ_INT(rd__web_session_count(t, 101), 2);
    /* Malformed tokens are simply not found. */
    CHECK_EQ_INT(rd__web_session_find(t, "", 101, &got, &err), RD_E_NOT_FOUND);
    CHECK_EQ_INT(rd__web_session_find(t, "zz", 101, &got, &err), RD_E_NOT_FOUND);
    char wrong[RD__WEB_TOKEN_HEX];
    memcpy(wrong, token, sizeof wrong);
    wrong[10] = wrong[10] == '0' ? '1' : '0';
    CHECK_EQ_INT(rd__web_session_find(t, wrong, 101, &got, &err), RD_E_NOT_FOUND);
    /* Upper-case hex of the same bytes is the same token. */
    char upper[RD__WEB_TOKEN_HEX];
    for (int i = 0; i < RD__WEB_TOKEN_HEX; i++)
        upper[i] = (char)(token[i] >= 'a' && token[i] <= 'f' ? token[i] - 32 : token[i]);
    CHECK_OK(rd__web_session_find(t, upper, 101, &got, &err), &err);
    /* Logout ends one session only. */
    CHECK_EQ_INT(rd__web_session_close(t, token), 1);
    CHECK_EQ_INT(rd__web_session_close(t, token), 0);
    CHECK_EQ_INT(rd__web_session_find(t, token, 102, &got, &err), RD_E_NOT_FOUND);
    CHECK_OK(rd__web_session_find(t, token2, 102, &got, &err), &err);
    rd__web_sessions_free(t);
    rd__web_sessions_free(NULL);
}

RD_TEST(session_idle_expiry)
{
    rd__web_sessions *t = NULL;
    rd__web_session s = make_session("rad"), got;
    char token[RD__WEB_TOKEN_HEX];
    rd_error err;
    REQUIRE_OK(rd__web_sessions_create(&t, 4, 60, &err), &err);
    REQUIRE_OK(rd__web_session_open(t, &s, 0, token, &err), &err);
    /* Each use renews it: 50 s apart stays alive well past 60 s in all. */
    CHECK_OK(rd__web_session_find(t, token, 50, &got, &err), &err);
    CHECK_OK(rd__web_session_find(t, token, 100, &got, &err), &err);
    CHECK_EQ_INT(rd__web_session_count(t, 150), 1);
    /* 60 s without use ends it, for good. */
    CHECK_EQ_INT(rd__web_session_find(t, token, 160, &got, &err), RD_E_NOT_FOUND);
    CHECK_EQ_INT(rd__web_session_find(t, token, 161, &got, &err), RD_E_NOT_FOUND);
    CHECK_EQ_INT(rd__web_session_count(t, 161), 0);
    rd__web_sessions_free(t);
}

RD_TEST(session_capacity)
{
    rd__web_sessions *t = NULL;
    rd__web_session s = make_session("rad");
    char token[RD__WEB_TOKEN_HEX];
    rd_error err;
    CHECK_EQ_INT(rd__web_sessions_create(&t, 0, 60, &err), RD_E_INVALID);
    CHECK_EQ_INT(rd__web_sessions_create(&t, RD__WEB_MAX_SESSIONS + 1, 60, &err), RD_E_INVALID);
    CHECK_EQ_INT(rd__web_sessions_create(&t, 4, 0, &err), RD_E_INVALID);
    REQUIRE_OK(rd__web_sessions_create(&t, 3, 60, &err), &err);
    for (int i = 0; i < 3; i++)
        REQUIRE_OK(rd__web_session_open(t, &s, 10 + i, token, &err), &err);
    CHECK_EQ_INT(rd__web_session_open(t, &s, 20, token, &err), RD_E_TOO_LARGE);
    /* Once the first has gone idle it makes room; the live ones are kept. */
    CHECK_OK(rd__web_session_open(t, &s, 70, token, &err), &err);
    CHECK_EQ_INT(rd__web_session_count(t, 70), 3);
    CHECK_EQ_INT(rd__web_session_open(t, &s, 70, token, &err), RD_E_TOO_LARGE);
    rd__web_sessions_free(t);
}

RD_TEST(lockout_counts_in_a_window)
{
    rd__web_lockout *l = NULL;
    rd_error err;
    CHECK_EQ_INT(rd__web_lockout_create(&l, 0, 300, &err), RD_E_INVALID);
    REQUIRE_OK(rd__web_lockout_create(&l, 3, 300, &err), &err);
    CHECK(!rd__web_lockout_locked(l, "user:rad", 0));
    CHECK_EQ_INT(rd__web_lockout_fail(l, "user:rad", 0), 1);
    CHECK_EQ_INT(rd__web_lockout_fail(l, "user:rad", 10), 2);
    CHECK(!rd__web_lockout_locked(l, "user:rad", 10));
    CHECK_EQ_INT(rd__web_lockout_fail(l, "user:rad", 20), 3);
    CHECK(rd__web_lockout_locked(l, "user:rad", 20));
    CHECK(rd__web_lockout_locked(l, "user:rad", 299));
    /* Keys are counted apart. */
    CHECK(!rd__web_lockout_locked(l, "user:other", 20));
    CHECK(!rd__web_lockout_locked(l, "addr:127.0.0.1", 20));
    /* The window began at the first failure: at 300 s it has passed. */
    CHECK(!rd__web_lockout_locked(l, "user:rad", 300));
    CHECK_EQ_INT(rd__web_lockout_fail(l, "user:rad", 301), 1);
    /* A success clears the user's count. */
    rd__web_lockout_fail(l, "user:rad", 302);
    rd__web_lockout_fail(l, "user:rad", 303);
    CHECK(rd__web_lockout_locked(l, "user:rad", 303));
    rd__web_lockout_clear(l, "user:rad");
    CHECK(!rd__web_lockout_locked(l, "user:rad", 303));
    rd__web_lockout_free(l);
    rd__web_lockout_free(NULL);
}

RD_TEST(lockout_table_is_bounded)
{
    rd__web_lockout *l = NULL;
    rd_error err;
    char key[64];
    REQUIRE_OK(rd__web_lockout_create(&l, 2, 1000, &err), &err);
    /* More keys than the table holds: the oldest windows are forgotten, the newest kept. */
    for (int i = 0; i < RD__WEB_MAX_LOCKOUTS + 10; i++) {
        snprintf(key, sizeof key, "addr:10.0.%d.%d", i / 256, i % 256);
        rd__web_lockout_fail(l, key, i * 0.001);
        rd__web_lockout_fail(l, key, i * 0.001);
    }
    CHECK(!rd__web_lockout_locked(l, "addr:10.0.0.0", 5));
    snprintf(key, sizeof key, "addr:10.0.%d.%d", (RD__WEB_MAX_LOCKOUTS + 9) / 256,
             (RD__WEB_MAX_LOCKOUTS + 9) % 256);
    CHECK(rd__web_lockout_locked(l, key, 5));
    rd__web_lockout_free(l);
}

typedef struct hammer_ctx {
    rd__web_sessions *t;
    rd__web_lockout *l;
    int id;
    int failures;
} hammer_ctx;

/* One of several threads that open, use and close sessions and count failed logins at
 * once: the tables must stay consistent (and ThreadSanitizer quiet). */
static void *hammer(void *arg)
{
    hammer_ctx *h = arg;
    char token[RD__WEB_TOKEN_HEX], key[32];
    rd__web_session s = make_session("rad"), got;
    snprintf(key, sizeof key, "user:u%d", h->id);
    for (int i = 0; i < 200; i++) {
        if (rd__web_session_open(h->t, &s, i, token, NULL) != RD_OK ||
            rd__web_session_find(h->t, token, i, &got, NULL) != RD_OK ||
            strcmp(got.csrf, s.csrf) != 0 || rd__web_session_close(h->t, token) != 1)
            h->failures++;
        rd__web_lockout_fail(h->l, key, i);
        rd__web_lockout_fail(h->l, "addr:shared", i);
        (void)rd__web_lockout_locked(h->l, "addr:shared", i);
    }
    return NULL;
}

RD_TEST(tables_under_concurrent_use)
{
    rd__web_sessions *t = NULL;
    rd__web_lockout *l = NULL;
    pthread_t th[4];
    hammer_ctx ctx[4];
    rd_error err;
    REQUIRE_OK(rd__web_sessions_create(&t, 64, 1e9, &err), &err);
    REQUIRE_OK(rd__web_lockout_create(&l, 1000000, 1e9, &err), &err);
    for (int i = 0; i < 4; i++) {
        ctx[i] = (hammer_ctx){t, l, i, 0};
        REQUIRE(pthread_create(&th[i], NULL, hammer, &ctx[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(ctx[i].failures, 0);
    }
    CHECK_EQ_INT(rd__web_session_count(t, 0), 0);
    /* Every failure of the shared key was counted once. */
    CHECK_EQ_INT(rd__web_lockout_fail(l, "addr:shared", 0), 4 * 200 + 1);
    rd__web_lockout_free(l);
    rd__web_sessions_free(t);
}

RD_TEST(png_encode_round_trip)
{
    const char *dir = rd_test_tmpdir("web_png");
    char path[1200];
    rd_image *src = NULL, *back = NULL;
    rd_png_info info;
    void *png = NULL;
    size_t len = 0;
    rd_error err;
    FILE *fp;
    REQUIRE_OK(rd_image_create(&src, 41, 17, &err), &err);
    for (int i = 0; i < 41 * 17; i++)
        src->data[i] = (float)(i % 41) / 40.0f;
    src->data[0] = -3.0f; /* clamped */
    src->data[1] = 7.0f;
    REQUIRE_OK(rd_png_encode(src, &png, &len, &err), &err);
    REQUIRE(len > 8);
    CHECK(memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0);
    snprintf(path, sizeof path, "%s/enc.png", dir);
    REQUIRE((fp = fopen(path, "wb")) != NULL);
    CHECK_EQ_INT((int)fwrite(png, 1, len, fp), (int)len);
    fclose(fp);
    REQUIRE_OK(rd_png_read(path, &back, &info, &err), &err);
    CHECK_EQ_INT(info.width, 41);
    CHECK_EQ_INT(info.height, 17);
    CHECK_EQ_INT(info.bit_depth, 8);
    CHECK_NEAR(back->data[0], 0.0, 1e-6);
    CHECK_NEAR(back->data[1], 1.0, 1e-6);
    for (int i = 2; i < 41 * 17; i++)
        CHECK_NEAR(back->data[i], src->data[i], 0.5 / 255 + 1e-6);
    free(png);
    CHECK_EQ_INT(rd_png_encode(NULL, &png, &len, &err), RD_E_INVALID);
    CHECK(png == NULL);
    rd_image_free(back);
    rd_image_free(src);
}

RD_TEST(start_refuses_bad_configuration)
{
    rd_config cfg;
    rd_web *web = NULL;
    rd_error err;
    const char *dir = rd_test_tmpdir("web_cfg");
    char path[1200];
    rd_config_defaults(&cfg);
    REQUIRE(set_path(cfg.server_data_dir, sizeof cfg.server_data_dir, dir, "data"));
    CHECK_EQ_INT(rd_web_start(&web, &cfg, NULL, &err), RD_E_CONFIG); /* web.port 0 */
    CHECK(web == NULL);
    cfg.web_port = 25990 + (int)(getpid() % 9);
    snprintf(cfg.web_bind, sizeof cfg.web_bind, "localhost");
    CHECK_EQ_INT(rd_web_start(&web, &cfg, NULL, &err), RD_E_CONFIG);
    CHECK(strstr(err.msg, "web.bind") != NULL);
    snprintf(cfg.web_bind, sizeof cfg.web_bind, "127.0.0.1");
    REQUIRE(set_path(cfg.web_tls_certificate, sizeof cfg.web_tls_certificate, dir, "cert.pem"));
    CHECK_EQ_INT(rd_web_start(&web, &cfg, NULL, &err), RD_E_CONFIG); /* no key */
    REQUIRE(set_path(cfg.web_tls_private_key, sizeof cfg.web_tls_private_key, dir, "missing.pem"));
    CHECK_EQ_INT(rd_web_start(&web, &cfg, NULL, &err), RD_E_CONFIG); /* unreadable */
    snprintf(path, sizeof path, "%s/cert.pem", dir);
    FILE *fp = fopen(path, "w");
    REQUIRE(fp);
    fputs("not PEM at all\n", fp);
    fclose(fp);
    CHECK_EQ_INT(rd_web_start(&web, &cfg, NULL, &err), RD_E_CONFIG);
    CHECK(strstr(err.msg, "web.tls_certificate") != NULL);
    CHECK(web == NULL);
    rd_web_stop(NULL);
}

/* One plain HTTP/1.0 request over a socket; the whole response into `buf`. */
static int http_get(int port, const char *request, char *buf, size_t size)
{
    struct sockaddr_in sa;
    size_t got = 0;
    ssize_t n;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        write(fd, request, strlen(request)) != (ssize_t)strlen(request)) {
        close(fd);
        return -1;
    }
    while (got + 1 < size && (n = read(fd, buf + got, size - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    close(fd);
    return (int)got;
}

RD_TEST(serves_healthz_and_refuses_without_session)
{
    rd_config cfg;
    rd_web *web = NULL;
    rd_web_options opts = {3, NULL};
    rd_error err;
    char buf[8192];
    const char *dir = rd_test_tmpdir("web_serve");
    rd_config_defaults(&cfg);
    REQUIRE(set_path(cfg.server_data_dir, sizeof cfg.server_data_dir, dir, "data"));
    cfg.web_port = 25980 + (int)(getpid() % 9);
    REQUIRE_OK(rd_web_start(&web, &cfg, &opts, &err), &err);
    CHECK_EQ_INT(rd_web_port(web), cfg.web_port);
    REQUIRE(http_get(cfg.web_port, "GET /healthz HTTP/1.0\r\n\r\n", buf, sizeof buf) > 0);
    CHECK_MSG(strstr(buf, "HTTP/1.0 200") || strstr(buf, "HTTP/1.1 200"), "%s", buf);
    CHECK_MSG(strstr(buf, "\"workers\":3") != NULL, "%s", buf);
    CHECK(strstr(buf, "X-Frame-Options: DENY") != NULL);
    REQUIRE(http_get(cfg.web_port, "GET /api/queue HTTP/1.0\r\n\r\n", buf, sizeof buf) > 0);
    CHECK_MSG(strstr(buf, " 401 ") != NULL, "%s", buf);
    REQUIRE(http_get(cfg.web_port,
                     "GET /api/queue HTTP/1.0\r\nCookie: radraft_session=00zz\r\n\r\n", buf,
                     sizeof buf) > 0);
    CHECK_MSG(strstr(buf, " 401 ") != NULL, "%s", buf);
    REQUIRE(http_get(cfg.web_port, "POST /api/login HTTP/1.0\r\nContent-Length: 5\r\n\r\n{\"a\":",
                     buf, sizeof buf) > 0);
    CHECK_MSG(strstr(buf, " 400 ") != NULL, "%s", buf);
    REQUIRE(http_get(cfg.web_port,
                     "POST /api/login HTTP/1.0\r\nContent-Length: 99999999999\r\n\r\n", buf,
                     sizeof buf) > 0);
    CHECK_MSG(strstr(buf, " 413 ") != NULL, "%s", buf);
    REQUIRE(http_get(cfg.web_port, "GET /assets/%2e%2e/x HTTP/1.0\r\n\r\n", buf, sizeof buf) > 0);
    CHECK_MSG(strstr(buf, " 404 ") != NULL, "%s", buf);
    REQUIRE(http_get(cfg.web_port, "GET /api/queue/1x HTTP/1.0\r\n\r\n", buf, sizeof buf) > 0);
    CHECK_MSG(strstr(buf, " 404 ") != NULL, "%s", buf);
    rd_web_stop(web);
}

RD_TEST_MAIN()
