/* radraft — the helpers of the fuzz targets (fuzz.h). */
#include "fuzz.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "radraft/log.h"

static char g_dir[512];
static FILE *g_null;

void rd_fuzz_remove_tree(const char *path)
{
    struct stat sb;
    DIR *d;
    struct dirent *e;
    char child[1024];
    if (lstat(path, &sb) != 0)
        return;
    if (!S_ISDIR(sb.st_mode)) {
        unlink(path);
        return;
    }
    if ((d = opendir(path)) != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) < (int)sizeof child)
                rd_fuzz_remove_tree(child);
        }
        closedir(d);
    }
    rmdir(path);
}

static void remove_dir(void)
{
    rd_fuzz_remove_tree(g_dir);
}

void rd_fuzz_init(void)
{
    const char *base = getenv("TMPDIR");
    if (g_dir[0])
        return;
    rd_log_set_level(RD_LOG_ERROR);
    if (!base || !base[0])
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/radraft-fuzz-XXXXXX", base);
    if (!mkdtemp(g_dir)) {
        perror("radraft fuzz: mkdtemp");
        abort();
    }
    atexit(remove_dir);
}

const char *rd_fuzz_dir(void)
{
    rd_fuzz_init();
    return g_dir;
}

const char *rd_fuzz_write_file(const char *name, const void *data, size_t size)
{
    static char path[1024];
    FILE *fp;
    snprintf(path, sizeof path, "%s/%s", rd_fuzz_dir(), name);
    fp = fopen(path, "wb");
    if (!fp || (size && fwrite(data, 1, size, fp) != size) || fclose(fp) != 0) {
        perror("radraft fuzz: writing the input file");
        abort();
    }
    return path;
}

char *rd_fuzz_strndup(const void *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

FILE *rd_fuzz_null(void)
{
    if (!g_null && !(g_null = fopen("/dev/null", "w")))
        abort();
    return g_null;
}
