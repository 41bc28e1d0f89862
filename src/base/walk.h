/* radraft — private: the recursive folder walk behind the commands that take folders of
 * files (batch, archive, predict), so that they agree on what a folder holds and share
 * one set of bounds against hostile trees.
 *
 * What a walk visits: a root that is a regular file is visited itself; a root that is a
 * folder is walked recursively. A root is always resolved through symbolic links (the
 * user named it); below a root, links are followed only with follow_symlinks. Names that
 * begin with '.' are never visited (hidden files, and "." and ".."), nor are entries whose
 * path would not fit in RD_WALK_PATH_MAX, nor anything that is neither a regular file nor a
 * folder (devices, FIFOs, sockets, dangling links). The callback sees regular files only.
 *
 * Bounds: a folder max_depth levels below its root (the root's own entries are 1 level
 * below it) is not entered; at most max_entries entries are looked at per walk; with
 * follow_symlinks, a link back to a folder that is already being walked (one on the path
 * from the root) is a loop and is not entered. A folder reached twice through links that
 * do not loop is walked twice: the entry cap bounds that.
 */
#ifndef RADRAFT_WALK_H
#define RADRAFT_WALK_H

#include <sys/stat.h>

#include "radraft/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_WALK_PATH_MAX 4096
#define RD_WALK_DEFAULT_MAX_DEPTH 32
#define RD_WALK_MAX_DEPTH 256
#define RD_WALK_DEFAULT_MAX_ENTRIES 100000000L

/* Called for every regular file, with its path (root + "/" + names) and its stat (of the
 * link's target when the file was reached through a link). Both are borrowed for the call.
 * A status other than RD_OK stops the walk, which returns it (with the callback's `err`). */
typedef rd_status (*rd_walk_fn)(void *ctx, const char *path, const struct stat *sb, rd_error *err);

typedef struct rd_walk_options {
    int follow_symlinks; /* non-zero: follow links below the roots (loops are not entered) */
    int sorted;          /* non-zero: each folder's entries in strcmp order (else readdir's) */
    int skip_unreadable; /* non-zero: a folder that cannot be opened or read is skipped with a
                            warning; else the walk stops with RD_E_IO naming it */
    int skip_too_deep;   /* non-zero: a folder at max_depth is skipped (logged at debug);
                            else the walk stops with RD_E_TOO_LARGE naming it */
    int max_depth;       /* 1..RD_WALK_MAX_DEPTH; 0: RD_WALK_DEFAULT_MAX_DEPTH */
    long max_entries;    /* > 0; 0: RD_WALK_DEFAULT_MAX_ENTRIES; past it RD_E_TOO_LARGE */
} rd_walk_options;

/* What a walk saw, for summaries and tests. */
typedef struct rd_walk_stats {
    long files;      /* regular files given to the callback */
    long folders;    /* folders entered (the root included) */
    long entries;    /* entries looked at (counted against max_entries) */
    long skipped;    /* entries not visited: links not followed, other file types, too long
                        paths, entries that vanished or dangle */
    long unreadable; /* folders skipped because they could not be read (skip_unreadable) */
    long too_deep;   /* folders skipped at max_depth (skip_too_deep) */
    long loops;      /* links not followed because they lead back to a folder being walked */
} rd_walk_stats;

/* Defaults: links not followed, readdir order, unreadable folders are an error, a folder at
 * the default depth is an error, the default entry cap. */
void rd_walk_options_default(rd_walk_options *opts);

/* Walks `root` (a regular file or a folder), calling `fn` for each regular file. `opts` may
 * be NULL for the defaults; `stats` (may be NULL) is zeroed and then counted into, also when
 * the walk fails. Errors: RD_E_NOT_FOUND (the root does not exist), RD_E_IO (a folder that
 * cannot be read, without skip_unreadable), RD_E_TOO_LARGE (max_entries, or max_depth
 * without skip_too_deep), RD_E_NOMEM (sorted names), RD_E_INVALID (bad options), or the
 * callback's status. A root that is neither a file nor a folder is RD_OK with nothing
 * visited. */
rd_status rd_walk(const char *root, const rd_walk_options *opts, rd_walk_fn fn, void *ctx,
                  rd_walk_stats *stats, rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
