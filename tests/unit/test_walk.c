/* The folder walk: order, hidden names, links and loops, unreadable folders, the caps. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rdtest.h"
#include "base/util.h"
#include "base/walk.h"

/* What a walk visited: the paths relative to the root, in visiting order. */
typedef struct seen {
    size_t root_len;
    char paths[64][256];
    int n;
    int stop_after; /* > 0: the callback fails on that file */
} seen;

static rd_status on_file(void *ctx, const char *path, const struct stat *sb, rd_error *err)
{
    seen *s = ctx;
    if (!S_ISREG(sb->st_mode))
        return rd_error_set(err, RD_E_INTERNAL, "%s: not a regular file", path);
    if (s->n >= 64)
        return rd_error_set(err, RD_E_TOO_LARGE, "test: too many files");
    rd_strlcpy(s->paths[s->n], path + (strlen(path) > s->root_len ? s->root_len + 1 : 0),
               sizeof s->paths[0]);
    s->n++;
    if (s->stop_after > 0 && s->n == s->stop_after)
        return rd_error_set(err, RD_E_INVALID, "test: stop at %s", path);
    return RD_OK;
}

/* dir + "/" + name into buf; the test stops when it does not fit. */
static void join(char *buf, size_t size, const char *dir, const char *name)
{
    if ((size_t)snprintf(buf, size, "%s/%s", dir, name) >= size) {
        fprintf(stderr, "FATAL: path too long: %s/%s\n", dir, name);
        exit(1);
    }
}

static void make_file(const char *dir, const char *name)
{
    char path[1024];
    join(path, sizeof path, dir, name);
    FILE *fp = fopen(path, "w");
    if (!fp) {
        fprintf(stderr, "FATAL: cannot create %s\n", path);
        exit(1);
    }
    fputs("x", fp);
    fclose(fp);
}

static void make_dir(const char *dir, const char *name)
{
    char path[1024];
    join(path, sizeof path, dir, name);
    if (mkdir(path, 0755) != 0) {
        fprintf(stderr, "FATAL: cannot create %s\n", path);
        exit(1);
    }
}

static void make_link(const char *dir, const char *name, const char *target)
{
    char path[1024];
    join(path, sizeof path, dir, name);
    if (symlink(target, path) != 0) {
        fprintf(stderr, "FATAL: cannot link %s\n", path);
        exit(1);
    }
}

static void seen_init(seen *s, const char *root)
{
    memset(s, 0, sizeof *s);
    s->root_len = strlen(root);
}

RD_TEST(sorted_order_and_hidden_names)
{
    const char *root = rd_test_tmpdir("walk_sorted");
    rd_walk_options o;
    rd_walk_stats stats;
    rd_error err;
    seen s;
    char sub[1024];

    /* Created out of order, so that readdir's order is unlikely to be the sorted one. */
    make_file(root, "m.dcm");
    make_dir(root, "zeta");
    make_file(root, "b.dcm");
    make_dir(root, "c");
    make_file(root, ".hidden");
    make_dir(root, ".git");
    make_file(root, "A.dcm");
    join(sub, sizeof sub, root, "c");
    make_file(sub, "y");
    make_file(sub, "x");
    join(sub, sizeof sub, root, "zeta");
    make_file(sub, "1");
    join(sub, sizeof sub, root, ".git");
    make_file(sub, "config");

    rd_walk_options_default(&o);
    o.sorted = 1;
    seen_init(&s, root);
    REQUIRE_OK(rd_walk(root, &o, on_file, &s, &stats, &err), &err);
    REQUIRE(s.n == 6);
    /* strcmp order, depth first: a folder's files come where its name sorts. */
    CHECK_STR(s.paths[0], "A.dcm");
    CHECK_STR(s.paths[1], "b.dcm");
    CHECK_STR(s.paths[2], "c/x");
    CHECK_STR(s.paths[3], "c/y");
    CHECK_STR(s.paths[4], "m.dcm");
    CHECK_STR(s.paths[5], "zeta/1");
    CHECK_EQ_INT(stats.files, 6);
    CHECK_EQ_INT(stats.folders, 3);
    CHECK_EQ_INT(stats.entries, 8); /* hidden names are not counted */

    /* Unsorted: the same set of files. */
    o.sorted = 0;
    seen_init(&s, root);
    CHECK_OK(rd_walk(root, &o, on_file, &s, NULL, &err), &err);
    CHECK_EQ_INT(s.n, 6);
}

RD_TEST(root_file_missing_root_and_callback_error)
{
    const char *root = rd_test_tmpdir("walk_roots");
    rd_error err;
    seen s;
    char path[1024];

    make_file(root, "one.dcm");
    make_file(root, "two.dcm");
    make_file(root, "three.dcm");
    join(path, sizeof path, root, "one.dcm");
    seen_init(&s, "");
    CHECK_OK(rd_walk(path, NULL, on_file, &s, NULL, &err), &err);
    CHECK_EQ_INT(s.n, 1);

    join(path, sizeof path, root, "missing");
    CHECK_EQ_INT(rd_walk(path, NULL, on_file, &s, NULL, &err), RD_E_NOT_FOUND);
    CHECK(strstr(rd_error_message(&err), "missing") != NULL);

    /* A callback's error stops the walk and is what it returns. */
    seen_init(&s, root);
    s.stop_after = 2;
    CHECK_EQ_INT(rd_walk(root, NULL, on_file, &s, NULL, &err), RD_E_INVALID);
    CHECK_EQ_INT(s.n, 2);
    CHECK(strstr(rd_error_message(&err), "test: stop at") != NULL);

    CHECK_EQ_INT(rd_walk(root, NULL, NULL, NULL, NULL, &err), RD_E_INVALID);
}

RD_TEST(symlinks_followed_or_not_and_loops_end)
{
    const char *root = rd_test_tmpdir("walk_links");
    rd_walk_options o;
    rd_walk_stats stats;
    rd_error err;
    seen s;
    char a[1024], b[1024], outside[1024];

    /* root/a/b/up -> ../.. (the root: a loop), root/a/b/self -> . (a loop),
     * root/a/f.lnk -> f (a file), root/dangling -> nowhere, root/ext -> ../walk_links_ext (a
     * folder outside the root). */
    join(outside, sizeof outside, root, "../walk_links_ext");
    {
        char cmd[2200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", outside, outside);
        REQUIRE(system(cmd) == 0);
    }
    make_file(outside, "e.dcm");
    make_dir(root, "a");
    join(a, sizeof a, root, "a");
    make_file(a, "f");
    make_link(a, "f.lnk", "f");
    make_dir(a, "b");
    join(b, sizeof b, root, "a/b");
    make_file(b, "g");
    make_link(b, "up", "../..");
    make_link(b, "self", ".");
    make_link(root, "dangling", "nowhere");
    make_link(root, "ext", "../walk_links_ext");

    rd_walk_options_default(&o);
    o.sorted = 1;
    o.follow_symlinks = 1;
    seen_init(&s, root);
    REQUIRE_OK(rd_walk(root, &o, on_file, &s, &stats, &err), &err);
    REQUIRE(s.n == 4);
    CHECK_STR(s.paths[0], "a/b/g");
    CHECK_STR(s.paths[1], "a/f");
    CHECK_STR(s.paths[2], "a/f.lnk");
    CHECK_STR(s.paths[3], "ext/e.dcm");
    CHECK_EQ_INT(stats.loops, 2);
    CHECK_EQ_INT(stats.skipped, 1); /* the dangling link */

    /* Not followed: only the real files; every link is skipped. */
    o.follow_symlinks = 0;
    seen_init(&s, root);
    REQUIRE_OK(rd_walk(root, &o, on_file, &s, &stats, &err), &err);
    REQUIRE(s.n == 2);
    CHECK_STR(s.paths[0], "a/b/g");
    CHECK_STR(s.paths[1], "a/f");
    CHECK_EQ_INT(stats.loops, 0);
    CHECK_EQ_INT(stats.skipped, 5);

    /* A root given as a link is followed either way: the user named it. */
    {
        char link_root[1100];
        join(link_root, sizeof link_root, root, "ext");
        seen_init(&s, link_root);
        CHECK_OK(rd_walk(link_root, &o, on_file, &s, NULL, &err), &err);
        CHECK_EQ_INT(s.n, 1);
    }
}

/* Builds root/d1/d2/.../d6 with a file "f" at every level. */
static void make_deep(const char *root)
{
    char dir[1024];
    rd_strlcpy(dir, root, sizeof dir);
    for (int i = 1; i <= 6; i++) {
        char name[8];
        make_file(dir, "f");
        snprintf(name, sizeof name, "d%d", i);
        make_dir(dir, name);
        size_t l = strlen(dir);
        snprintf(dir + l, sizeof dir - l, "/%s", name);
    }
    make_file(dir, "f");
}

RD_TEST(depth_cap_skips_or_fails)
{
    const char *root = rd_test_tmpdir("walk_deep");
    rd_walk_options o;
    rd_walk_stats stats;
    rd_error err;
    seen s;

    make_deep(root);
    rd_walk_options_default(&o);
    o.sorted = 1;
    /* Without a cap that bites: all 7 files. */
    seen_init(&s, root);
    CHECK_OK(rd_walk(root, &o, on_file, &s, &stats, &err), &err);
    CHECK_EQ_INT(s.n, 7);
    CHECK_EQ_INT(stats.too_deep, 0);

    /* max_depth 3: the folders 1 and 2 levels below the root are entered, d3 is not. */
    o.max_depth = 3;
    o.skip_too_deep = 1;
    seen_init(&s, root);
    CHECK_OK(rd_walk(root, &o, on_file, &s, &stats, &err), &err);
    REQUIRE(s.n == 3);
    CHECK_STR(s.paths[0], "d1/d2/f");
    CHECK_STR(s.paths[1], "d1/f");
    CHECK_STR(s.paths[2], "f");
    CHECK_EQ_INT(stats.too_deep, 1);
    CHECK_EQ_INT(stats.folders, 3);

    /* The same cap as an error names the folder. */
    o.skip_too_deep = 0;
    seen_init(&s, root);
    CHECK_EQ_INT(rd_walk(root, &o, on_file, &s, &stats, &err), RD_E_TOO_LARGE);
    CHECK(strstr(rd_error_message(&err), "d1/d2/d3") != NULL);

    /* Out-of-range options are refused. */
    o.max_depth = RD_WALK_MAX_DEPTH + 1;
    CHECK_EQ_INT(rd_walk(root, &o, on_file, &s, NULL, &err), RD_E_INVALID);
}

RD_TEST(entry_cap_bounds_the_walk)
{
    const char *root = rd_test_tmpdir("walk_entries");
    rd_walk_options o;
    rd_walk_stats stats;
    rd_error err;
    seen s;
    char name[16];

    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "f%d", i);
        make_file(root, name);
    }
    rd_walk_options_default(&o);
    o.max_entries = 10;
    seen_init(&s, root);
    CHECK_OK(rd_walk(root, &o, on_file, &s, &stats, &err), &err);
    CHECK_EQ_INT(s.n, 10);
    o.max_entries = 9;
    seen_init(&s, root);
    CHECK_EQ_INT(rd_walk(root, &o, on_file, &s, &stats, &err), RD_E_TOO_LARGE);
    CHECK_EQ_INT(s.n, 0); /* the cap bites while listing, before any file is visited */
}

/* Runs the unreadable-folder checks; returns the number of failed checks. Root reads every
 * folder whatever its mode, so as root this runs in a child that has dropped to nobody. */
static int check_unreadable(const char *root)
{
    rd_walk_options o;
    rd_walk_stats stats;
    rd_error err;
    seen s;
    int before = rd_test_failures;

    rd_walk_options_default(&o);
    o.sorted = 1;
    seen_init(&s, root);
    CHECK_EQ_INT(rd_walk(root, &o, on_file, &s, &stats, &err), RD_E_IO);
    CHECK(strstr(rd_error_message(&err), "locked: cannot open the folder") != NULL);

    o.skip_unreadable = 1;
    seen_init(&s, root);
    CHECK_OK(rd_walk(root, &o, on_file, &s, &stats, &err), &err);
    CHECK_EQ_INT(stats.unreadable, 1);
    CHECK_EQ_INT(s.n, 2);
    if (s.n == 2) {
        CHECK_STR(s.paths[0], "a.dcm");
        CHECK_STR(s.paths[1], "z.dcm");
    }
    return rd_test_failures - before;
}

RD_TEST(unreadable_folder_is_an_error_or_skipped)
{
    const char *root = rd_test_tmpdir("walk_unreadable");
    char locked[1024];

    make_file(root, "a.dcm");
    make_dir(root, "locked");
    make_file(root, "z.dcm");
    join(locked, sizeof locked, root, "locked");
    make_file(locked, "secret.dcm");
    REQUIRE(chmod(locked, 0) == 0);
    if (geteuid() != 0) {
        check_unreadable(root);
    } else {
        pid_t pid = fork();
        int status = 0;
        REQUIRE(pid >= 0);
        if (pid == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0) {
                fprintf(stderr, "cannot drop to nobody: %s\n", strerror(errno));
                _exit(100);
            }
            _exit(check_unreadable(root) == 0 ? 0 : 1);
        }
        REQUIRE(waitpid(pid, &status, 0) == pid);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the unprivileged child failed (status %d)", status);
    }
    chmod(locked, 0755);
}

RD_TEST_MAIN()
