/* radraft — the main of the fuzz targets in ordinary builds (no libFuzzer): runs
 * LLVMFuzzerTestOneInput once on every file named, or in the folders named, as libFuzzer
 * does when given files. CTest runs it over each committed corpus (tests/fuzz/corpus), so
 * that the seed inputs and the regression inputs of fixed bugs (regress-*) are part of the
 * unit tests, and of their AddressSanitizer run in scripts/test.sh. It fails only by
 * crashing (or by a sanitizer's report), as a fuzz target does. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/util.h"
#include "fuzz.h"

/* The most bytes one input may have here (the corpora hold far smaller files). */
#define REPLAY_MAX_BYTES ((size_t)16 << 20)

static int run_file(const char *path)
{
    char *data = NULL;
    size_t len = 0;
    rd_error err;
    if (rd_read_file(path, REPLAY_MAX_BYTES, &data, &len, &err) != RD_OK) {
        fprintf(stderr, "fuzz replay: %s\n", rd_error_message(&err));
        return 0;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)data, len);
    free(data);
    return 1;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every regular file of `dir`, in name order; -1 when it cannot be read. */
static int run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL, path[4096];
    size_t n = 0, cap = 0;
    int ran = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            if (!(names = realloc(names, cap * sizeof *names)))
                abort();
        }
        if (!(names[n++] = strdup(e->d_name)))
            abort();
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && run_file(path))
            ran++;
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv)
{
    int ran = 0, failed = 0;
    LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
            int n = run_dir(argv[i]);
            if (n < 0)
                failed = 1;
            else
                ran += n;
        } else if (run_file(argv[i])) {
            ran++;
        } else {
            failed = 1;
        }
    }
    printf("%s: %d inputs run\n", argv[0], ran);
    return failed || ran == 0 ? 1 : 0;
}
