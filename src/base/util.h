/* radraft — small private helpers shared by the modules (not part of the public API). */
#ifndef RADRAFT_UTIL_H
#define RADRAFT_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "radraft/error.h"
#include "radraft/limits.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Copies at most size-1 bytes and always terminates; returns strlen(src). */
size_t rd_strlcpy(char *dst, const char *src, size_t size);

/* *out = a * b, returning 0 when the product overflows size_t (nothing is written then). */
static inline int rd_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

/* Reads a whole file of at most `max_bytes` into a NUL-terminated buffer the caller frees.
 * A larger file is RD_E_TOO_LARGE, a missing one RD_E_NOT_FOUND. */
rd_status rd_read_file(const char *path, size_t max_bytes, char **out, size_t *len, rd_error *err);

/* Writes `len` bytes to `path` through a temporary file in the same folder, fsync and
 * rename, so that a reader sees the old file or the whole new one. */
rd_status rd_write_file_atomic(const char *path, const void *data, size_t len, rd_error *err);

/* Creates a folder and its parents (mode 0755, less the umask); existing ones are fine, but
 * a file where a folder should be is RD_E_IO. Each folder it creates is fsynced into the
 * folder above, so that a file later placed in it (and its folder fsynced) survives a power
 * loss with the whole path. */
rd_status rd_mkdirs(const char *path, rd_error *err);

/* The path of a file written beside an SR: `sr_path` less its ".dcm" and then "-sr", then
 * `suffix` ("x-draft-sr.dcm" + "-fhir.json" -> "x-draft-fhir.json"). RD_E_INVALID, naming
 * `what`, when it does not fit `size` (out is then ""). */
rd_status rd_path_beside_sr(const char *sr_path, const char *suffix, const char *what, char *out,
                            size_t size, rd_error *err);

/* A wakeup between threads: a mutex, a condition variable and a count of posts. A post is
 * never lost: one made while nobody waits makes the next wait return at once. Waiters use it
 * to shorten a polling sleep, so correctness never depends on a post arriving. The struct
 * belongs to the caller; init before use, destroy once no thread uses it. */
typedef struct rd_wake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned long seq; /* number of posts so far */
    int pending;       /* a post that no wait has consumed yet */
    int ready;         /* set by a successful init, so destroy is safe after a failed one */
} rd_wake;

rd_status rd_wake_init(rd_wake *w, rd_error *err);
/* Accepts NULL and a wake whose init failed. */
void rd_wake_destroy(rd_wake *w);
/* Wakes every thread now waiting, or the next wait. Accepts NULL. */
void rd_wake_post(rd_wake *w);
/* Waits at most timeout_s seconds (monotonic clock) for a post; a post made since the last
 * wait returns at once. Returns 1 when woken by a post, 0 on timeout. With NULL it just
 * sleeps for timeout_s. */
int rd_wake_wait(rd_wake *w, double timeout_s);

#ifdef __cplusplus
}
#endif
/* SHA-256 of `len` bytes as 64 lowercase hex digits plus NUL (src/base/sha256.c). */
void rd_sha256_hex(const void *data, size_t len, char out[RD_SHA256_HEX_SIZE]);

/* 1 if the `n` bytes are well-formed UTF-8 (no overlong forms, surrogates or code points
 * above U+10FFFF). */
int rd_utf8_valid(const char *s, size_t n);

#endif
