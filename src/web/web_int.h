/* radraft — private declarations of the web server: the session table and the login
 * lockout (src/web/web_session.c), declared here so that the unit tests reach them. */
#ifndef RADRAFT_WEB_INT_H
#define RADRAFT_WEB_INT_H

#include <stddef.h>

#include "radraft/error.h"
#include "radraft/store.h"

/* Sessions held at once, and addresses or users whose failed logins are counted. */
#define RD__WEB_MAX_SESSIONS 4096
#define RD__WEB_MAX_LOCKOUTS 4096

/* A token as it travels: 32 random bytes as 64 lower-case hex digits. */
#define RD__WEB_TOKEN_BYTES 32
#define RD__WEB_TOKEN_HEX (2 * RD__WEB_TOKEN_BYTES + 1)

/* What a live session knows of its user (a copy: the table keeps its own). */
typedef struct rd__web_session {
    char user[RD_USER_NAME_MAX + 1];
    char display_name[RD_USER_DISPLAY_MAX + 1];
    rd_user_role role;
    char csrf[RD__WEB_TOKEN_HEX];
} rd__web_session;

typedef struct rd__web_sessions rd__web_sessions;

/* A table of at most `capacity` sessions (1..RD__WEB_MAX_SESSIONS) that end after
 * `idle_seconds` without use. Errors: RD_E_INVALID, RD_E_NOMEM. */
rd_status rd__web_sessions_create(rd__web_sessions **out, int capacity, double idle_seconds,
                                  rd_error *err);
/* Accepts NULL. */
void rd__web_sessions_free(rd__web_sessions *t);

/* Opens a session for `user` at time `now` (seconds, any monotonic clock): fills `token`
 * (the cookie's value) and s->csrf with fresh random tokens. Expired sessions make room
 * first; RD_E_TOO_LARGE when the table is still full. */
rd_status rd__web_session_open(rd__web_sessions *t, rd__web_session *s, double now,
                               char token[RD__WEB_TOKEN_HEX], rd_error *err);

/* The live session of `token` (any string: a malformed one is simply not found) into
 * *out, renewing its last use to `now`. RD_E_NOT_FOUND when there is none or it expired
 * (an expired one is deleted). Tokens are compared in constant time. */
rd_status rd__web_session_find(rd__web_sessions *t, const char *token, double now,
                               rd__web_session *out, rd_error *err);

/* Ends the session of `token`; 1 when there was one. */
int rd__web_session_close(rd__web_sessions *t, const char *token);

/* Number of live sessions at `now`. */
int rd__web_session_count(rd__web_sessions *t, double now);

/* 1 when the CSRF token `given` (may be NULL) is `expected`, compared in constant time. */
int rd__web_csrf_ok(const char *expected, const char *given);

/* Failed logins per key ("user:NAME", "addr:ADDRESS") in windows of `window_seconds`
 * starting at each key's first failure; a key with `max_failures` failures in its window
 * is locked until the window ends. The table holds RD__WEB_MAX_LOCKOUTS keys; when it is
 * full the key whose window began first is forgotten. */
typedef struct rd__web_lockout rd__web_lockout;

rd_status rd__web_lockout_create(rd__web_lockout **out, int max_failures, double window_seconds,
                                 rd_error *err);
void rd__web_lockout_free(rd__web_lockout *l);
/* 1 when `key` is locked at `now`. */
int rd__web_lockout_locked(rd__web_lockout *l, const char *key, double now);
/* Counts one failure of `key` at `now`; returns the failures in its window. */
int rd__web_lockout_fail(rd__web_lockout *l, const char *key, double now);
/* Forgets the failures of `key` (a successful login of that user). */
void rd__web_lockout_clear(rd__web_lockout *l, const char *key);

#endif
