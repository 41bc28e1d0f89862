/* radraft — the recursive folder walk (see walk.h). */
#include "base/walk.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "radraft/log.h"
#include "base/util.h"

typedef struct dir_id {
    dev_t dev;
    ino_t ino;
} dir_id;

typedef struct walker {
    rd_walk_options o;
    rd_walk_fn fn;
    void *ctx;
    rd_walk_stats *st;
    /* The folders from the root down to the one being walked: a folder found again among
     * them is a loop through a link. */
    dir_id open[RD_WALK_MAX_DEPTH + 1];
    int n_open;
    /* The current path; each level appends "/name" and cuts it off again. */
    char path[RD_WALK_PATH_MAX];
} walker;

void rd_walk_options_default(rd_walk_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->max_depth = RD_WALK_DEFAULT_MAX_DEPTH;
    opts->max_entries = RD_WALK_DEFAULT_MAX_ENTRIES;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* A folder that cannot be listed: skipped with a warning, or the walk's error. */
static rd_status unreadable(walker *w, int errnum, rd_error *err)
{
    if (w->o.skip_unreadable) {
        rd_log_warn("%s: cannot open the folder: %s; skipped", w->path, strerror(errnum));
        w->st->unreadable++;
        return RD_OK;
    }
    return rd_error_set(err, RD_E_IO, "%s: cannot open the folder: %s", w->path, strerror(errnum));
}

/* Reads the names of the folder at w->path (hidden ones left out), counting them against
 * the entry cap. The folder is closed before its entries are visited, so that a deep walk
 * holds one descriptor at a time. On RD_OK the caller owns *names (free_names). */
static rd_status list_names(walker *w, char ***names, size_t *n, int *listed, rd_error *err)
{
    DIR *d;
    struct dirent *e;
    char **v = NULL;
    size_t count = 0, cap = 0;
    rd_status st = RD_OK;

    *names = NULL;
    *n = 0;
    *listed = 0;
    if (!(d = opendir(w->path)))
        return unreadable(w, errno, err);
    for (;;) {
        errno = 0;
        if (!(e = readdir(d))) {
            if (errno != 0) {
                st = unreadable(w, errno, err);
                goto out;
            }
            break;
        }
        if (e->d_name[0] == '.')
            continue;
        if (++w->st->entries > w->o.max_entries) {
            st = rd_error_set(err, RD_E_TOO_LARGE, "%s: more than %ld entries in the walk", w->path,
                              w->o.max_entries);
            goto out;
        }
        if (count == cap) {
            size_t ncap = cap ? 2 * cap : 64, bytes;
            char **nv;
            if (!rd_mul_size(ncap, sizeof *nv, &bytes) || !(nv = realloc(v, bytes))) {
                st = rd_error_set(err, RD_E_NOMEM, "%s: out of memory listing the folder", w->path);
                goto out;
            }
            v = nv;
            cap = ncap;
        }
        if (!(v[count] = strdup(e->d_name))) {
            st = rd_error_set(err, RD_E_NOMEM, "%s: out of memory listing the folder", w->path);
            goto out;
        }
        count++;
    }
    if (w->o.sorted && count > 1)
        qsort(v, count, sizeof *v, cmp_name);
    *listed = 1;
out:
    closedir(d);
    if (st != RD_OK || !*listed) {
        free_names(v, count);
        return st;
    }
    *names = v;
    *n = count;
    return RD_OK;
}

static int is_open(const walker *w, const struct stat *sb)
{
    for (int i = 0; i < w->n_open; i++)
        if (w->open[i].dev == sb->st_dev && w->open[i].ino == sb->st_ino)
            return 1;
    return 0;
}

/* Walks the folder at w->path (`len` characters), `level` levels below the root, whose
 * stat is `sb`. */
static rd_status walk_dir(walker *w, size_t len, int level, const struct stat *sb, rd_error *err)
{
    char **names = NULL;
    size_t n = 0;
    int listed = 0;
    rd_status st;

    w->open[w->n_open].dev = sb->st_dev;
    w->open[w->n_open].ino = sb->st_ino;
    w->n_open++;
    w->st->folders++;
    if ((st = list_names(w, &names, &n, &listed, err)) != RD_OK || !listed)
        goto out;
    for (size_t i = 0; i < n && st == RD_OK; i++) {
        size_t nlen = strlen(names[i]);
        struct stat lb, tb;
        if (len + 1 + nlen >= sizeof w->path) {
            rd_log_warn("%s/%s: path too long; skipped", w->path, names[i]);
            w->st->skipped++;
            continue;
        }
        w->path[len] = '/';
        memcpy(w->path + len + 1, names[i], nlen + 1);
        if (lstat(w->path, &lb) != 0) {
            /* Removed since the folder was listed. */
            w->st->skipped++;
        } else if (S_ISLNK(lb.st_mode) && !w->o.follow_symlinks) {
            rd_log_debug("%s: a symbolic link; not followed", w->path);
            w->st->skipped++;
        } else if (S_ISLNK(lb.st_mode) && stat(w->path, &tb) != 0) {
            rd_log_warn("%s: a link to nothing (%s); skipped", w->path, strerror(errno));
            w->st->skipped++;
        } else {
            const struct stat *es = S_ISLNK(lb.st_mode) ? &tb : &lb;
            if (S_ISREG(es->st_mode)) {
                w->st->files++;
                st = w->fn(w->ctx, w->path, es, err);
            } else if (!S_ISDIR(es->st_mode)) {
                w->st->skipped++;
            } else if (is_open(w, es)) {
                rd_log_warn("%s: a link back to a folder above it; not followed", w->path);
                w->st->loops++;
            } else if (level + 1 >= w->o.max_depth) {
                if (!w->o.skip_too_deep) {
                    st = rd_error_set(err, RD_E_TOO_LARGE,
                                      "%s: folders nested more than %d levels deep", w->path,
                                      w->o.max_depth);
                } else {
                    rd_log_debug("%s: more than %d levels deep; skipped", w->path, w->o.max_depth);
                    w->st->too_deep++;
                }
            } else {
                st = walk_dir(w, len + 1 + nlen, level + 1, es, err);
            }
        }
        w->path[len] = '\0';
    }
out:
    free_names(names, n);
    w->n_open--;
    return st;
}

rd_status rd_walk(const char *root, const rd_walk_options *opts, rd_walk_fn fn, void *ctx,
                  rd_walk_stats *stats, rd_error *err)
{
    rd_walk_stats local;
    walker *w = NULL;
    struct stat sb;
    size_t len;
    rd_status st = RD_OK;

    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    if (!root || !fn)
        return rd_error_set(err, RD_E_INVALID, "walk: no root or no callback");
    if (opts &&
        (opts->max_depth < 0 || opts->max_depth > RD_WALK_MAX_DEPTH || opts->max_entries < 0))
        return rd_error_set(err, RD_E_INVALID, "walk: max_depth %d (0..%d) or max_entries %ld",
                            opts->max_depth, RD_WALK_MAX_DEPTH, opts->max_entries);
    if (stat(root, &sb) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return rd_error_set(err, RD_E_NOT_FOUND, "%s: not found", root);
        return rd_error_set(err, RD_E_IO, "%s: %s", root, strerror(errno));
    }
    if (S_ISREG(sb.st_mode)) {
        stats->files++;
        return fn(ctx, root, &sb, err);
    }
    if (!S_ISDIR(sb.st_mode))
        return RD_OK;
    if ((len = strlen(root)) >= RD_WALK_PATH_MAX)
        return rd_error_set(err, RD_E_TOO_LARGE, "%.64s...: path too long", root);
    /* The walker holds a path buffer and the open-folder stack: too big for a caller's
     * stack on a small thread, so it lives on the heap. */
    if (!(w = calloc(1, sizeof *w)))
        return rd_error_set(err, RD_E_NOMEM, "walk: out of memory");
    if (opts)
        w->o = *opts;
    else
        rd_walk_options_default(&w->o);
    if (w->o.max_depth == 0)
        w->o.max_depth = RD_WALK_DEFAULT_MAX_DEPTH;
    if (w->o.max_entries == 0)
        w->o.max_entries = RD_WALK_DEFAULT_MAX_ENTRIES;
    w->fn = fn;
    w->ctx = ctx;
    w->st = stats;
    memcpy(w->path, root, len + 1);
    st = walk_dir(w, len, 0, &sb, err);
    free(w);
    return st;
}
