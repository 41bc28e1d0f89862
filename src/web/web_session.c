/* radraft — the web server's session table and login lockout.
 *
 * Both tables live in memory only: a restart logs everyone out and forgets failed logins,
 * which is the safe direction for both. Each is a fixed array behind one mutex, scanned
 * whole; at a few thousand entries a scan costs microseconds, far less than the argon2id
 * hash of a login, and a fixed bound means a flood of logins cannot grow the process. */
#include "web/web_int.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

typedef struct session_slot {
    int used;
    unsigned char token[RD__WEB_TOKEN_BYTES];
    double last_use;
    rd__web_session s;
} session_slot;

struct rd__web_sessions {
    pthread_mutex_t lock;
    int capacity;
    double idle_seconds;
    session_slot *slots;
};

static void hex_encode(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes exactly 64 hex digits; 0 for anything else. */
static int token_decode(const char *hex, unsigned char out[RD__WEB_TOKEN_BYTES])
{
    if (!hex || strlen(hex) != 2 * RD__WEB_TOKEN_BYTES)
        return 0;
    for (size_t i = 0; i < RD__WEB_TOKEN_BYTES; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 1;
}

rd_status rd__web_sessions_create(rd__web_sessions **out, int capacity, double idle_seconds,
                                  rd_error *err)
{
    rd__web_sessions *t;
    *out = NULL;
    if (capacity < 1 || capacity > RD__WEB_MAX_SESSIONS || !(idle_seconds > 0))
        return rd_error_set(err, RD_E_INVALID, "session table: capacity %d, idle %g s", capacity,
                            idle_seconds);
    if (sodium_init() < 0)
        return rd_error_set(err, RD_E_INTERNAL, "libsodium could not start");
    t = calloc(1, sizeof *t);
    if (t)
        t->slots = calloc((size_t)capacity, sizeof *t->slots);
    if (!t || !t->slots) {
        free(t);
        return rd_error_set(err, RD_E_NOMEM, "out of memory for the session table");
    }
    pthread_mutex_init(&t->lock, NULL);
    t->capacity = capacity;
    t->idle_seconds = idle_seconds;
    *out = t;
    return RD_OK;
}

void rd__web_sessions_free(rd__web_sessions *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->lock);
    /* The tokens are secrets: leave nothing of them in freed memory. */
    sodium_memzero(t->slots, (size_t)t->capacity * sizeof *t->slots);
    free(t->slots);
    free(t);
}

static int expired(const rd__web_sessions *t, const session_slot *sl, double now)
{
    return now - sl->last_use >= t->idle_seconds;
}

rd_status rd__web_session_open(rd__web_sessions *t, rd__web_session *s, double now,
                               char token[RD__WEB_TOKEN_HEX], rd_error *err)
{
    unsigned char csrf[RD__WEB_TOKEN_BYTES];
    session_slot *free_slot = NULL;
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < t->capacity; i++) {
        session_slot *sl = &t->slots[i];
        if (sl->used && expired(t, sl, now)) {
            sodium_memzero(sl, sizeof *sl);
        }
        if (!sl->used && !free_slot)
            free_slot = sl;
    }
    if (!free_slot) {
        pthread_mutex_unlock(&t->lock);
        return rd_error_set(err, RD_E_TOO_LARGE, "too many sessions (%d): try again later",
                            t->capacity);
    }
    randombytes_buf(free_slot->token, sizeof free_slot->token);
    randombytes_buf(csrf, sizeof csrf);
    hex_encode(csrf, sizeof csrf, s->csrf);
    hex_encode(free_slot->token, sizeof free_slot->token, token);
    free_slot->s = *s;
    free_slot->last_use = now;
    free_slot->used = 1;
    pthread_mutex_unlock(&t->lock);
    sodium_memzero(csrf, sizeof csrf);
    return RD_OK;
}

/* The slot of a token, under the lock. Every used slot is compared, whatever matches, so
 * that the time taken does not depend on where (or whether) the token is. */
static session_slot *find_slot(rd__web_sessions *t, const unsigned char tok[RD__WEB_TOKEN_BYTES])
{
    session_slot *hit = NULL;
    for (int i = 0; i < t->capacity; i++) {
        session_slot *sl = &t->slots[i];
        if (sl->used && sodium_memcmp(sl->token, tok, RD__WEB_TOKEN_BYTES) == 0)
            hit = sl;
    }
    return hit;
}

rd_status rd__web_session_find(rd__web_sessions *t, const char *token, double now,
                               rd__web_session *out, rd_error *err)
{
    unsigned char tok[RD__WEB_TOKEN_BYTES];
    session_slot *sl;
    if (!token_decode(token, tok))
        return rd_error_set(err, RD_E_NOT_FOUND, "no session");
    pthread_mutex_lock(&t->lock);
    sl = find_slot(t, tok);
    if (sl && expired(t, sl, now)) {
        sodium_memzero(sl, sizeof *sl);
        sl = NULL;
    }
    if (sl) {
        sl->last_use = now;
        *out = sl->s;
    }
    pthread_mutex_unlock(&t->lock);
    return sl ? RD_OK : rd_error_set(err, RD_E_NOT_FOUND, "no session, or it expired");
}

int rd__web_session_close(rd__web_sessions *t, const char *token)
{
    unsigned char tok[RD__WEB_TOKEN_BYTES];
    session_slot *sl;
    if (!token_decode(token, tok))
        return 0;
    pthread_mutex_lock(&t->lock);
    sl = find_slot(t, tok);
    if (sl)
        sodium_memzero(sl, sizeof *sl);
    pthread_mutex_unlock(&t->lock);
    return sl != NULL;
}

int rd__web_session_count(rd__web_sessions *t, double now)
{
    int n = 0;
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < t->capacity; i++)
        n += t->slots[i].used && !expired(t, &t->slots[i], now);
    pthread_mutex_unlock(&t->lock);
    return n;
}

int rd__web_csrf_ok(const char *expected, const char *given)
{
    unsigned char a[RD__WEB_TOKEN_BYTES], b[RD__WEB_TOKEN_BYTES];
    if (!token_decode(expected, a) || !token_decode(given, b))
        return 0;
    return sodium_memcmp(a, b, sizeof a) == 0;
}

/* ---- lockout ---- */

#define LOCKOUT_KEY_MAX 128

typedef struct lockout_slot {
    char key[LOCKOUT_KEY_MAX];
    int failures;
    double window_start;
} lockout_slot;

struct rd__web_lockout {
    pthread_mutex_t lock;
    int max_failures;
    double window;
    lockout_slot slots[RD__WEB_MAX_LOCKOUTS];
};

rd_status rd__web_lockout_create(rd__web_lockout **out, int max_failures, double window_seconds,
                                 rd_error *err)
{
    rd__web_lockout *l;
    *out = NULL;
    if (max_failures < 1 || !(window_seconds > 0))
        return rd_error_set(err, RD_E_INVALID, "lockout: %d failures in %g s", max_failures,
                            window_seconds);
    if (!(l = calloc(1, sizeof *l)))
        return rd_error_set(err, RD_E_NOMEM, "out of memory for the lockout table");
    pthread_mutex_init(&l->lock, NULL);
    l->max_failures = max_failures;
    l->window = window_seconds;
    *out = l;
    return RD_OK;
}

void rd__web_lockout_free(rd__web_lockout *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->lock);
    free(l);
}

/* The slot of `key` whose window is still open, under the lock; a slot whose window has
 * passed is emptied on the way. */
static lockout_slot *lockout_find(rd__web_lockout *l, const char *key, double now)
{
    lockout_slot *hit = NULL;
    for (int i = 0; i < RD__WEB_MAX_LOCKOUTS; i++) {
        lockout_slot *sl = &l->slots[i];
        if (!sl->key[0])
            continue;
        if (now - sl->window_start >= l->window) {
            memset(sl, 0, sizeof *sl);
            continue;
        }
        if (strncmp(sl->key, key, sizeof sl->key) == 0)
            hit = sl;
    }
    return hit;
}

int rd__web_lockout_locked(rd__web_lockout *l, const char *key, double now)
{
    lockout_slot *sl;
    int locked;
    pthread_mutex_lock(&l->lock);
    sl = lockout_find(l, key, now);
    locked = sl && sl->failures >= l->max_failures;
    pthread_mutex_unlock(&l->lock);
    return locked;
}

int rd__web_lockout_fail(rd__web_lockout *l, const char *key, double now)
{
    lockout_slot *sl;
    int n;
    pthread_mutex_lock(&l->lock);
    sl = lockout_find(l, key, now);
    if (!sl) {
        /* A new window: an empty slot, else the one whose window began first. */
        lockout_slot *oldest = &l->slots[0];
        for (int i = 0; i < RD__WEB_MAX_LOCKOUTS && !sl; i++) {
            if (!l->slots[i].key[0])
                sl = &l->slots[i];
            else if (l->slots[i].window_start < oldest->window_start)
                oldest = &l->slots[i];
        }
        if (!sl)
            sl = oldest;
        memset(sl, 0, sizeof *sl);
        rd_strlcpy(sl->key, key, sizeof sl->key);
        sl->window_start = now;
    }
    n = ++sl->failures;
    pthread_mutex_unlock(&l->lock);
    return n;
}

void rd__web_lockout_clear(rd__web_lockout *l, const char *key)
{
    pthread_mutex_lock(&l->lock);
    for (int i = 0; i < RD__WEB_MAX_LOCKOUTS; i++)
        if (l->slots[i].key[0] && strncmp(l->slots[i].key, key, sizeof l->slots[i].key) == 0)
            memset(&l->slots[i], 0, sizeof l->slots[i]);
    pthread_mutex_unlock(&l->lock);
}
