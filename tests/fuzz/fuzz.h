/* radraft — what the libFuzzer targets of tests/fuzz share (see scripts/fuzz.sh).
 *
 * Each target is one file, fuzz_<name>.c, that feeds its input to one of radraft's readers
 * of outside data the way the program itself does. A target fails only on a sanitizer report
 * (AddressSanitizer with leak detection, UndefinedBehaviorSanitizer) or a crash: every error
 * status of the code under test is a correct answer to a malformed input.
 */
#ifndef RADRAFT_FUZZ_H
#define RADRAFT_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Quiets radraft's log (errors only) and creates the process's scratch folder, removed with
 * its contents at a normal exit. Call it from LLVMFuzzerInitialize. */
void rd_fuzz_init(void);

/* The scratch folder: in $TMPDIR when it is set (scripts/fuzz.sh sets it inside its work
 * folder, so that a target that crashes leaves nothing elsewhere), else in /dev/shm when it
 * can be written (a file written per input then costs no disk I/O), else in /tmp. */
const char *rd_fuzz_dir(void);

/* Writes `size` bytes to `name` in the scratch folder (replacing it) and returns its path,
 * valid until the next call; aborts when it cannot, which is the harness's failure, not the
 * code's under test. */
const char *rd_fuzz_write_file(const char *name, const void *data, size_t size);

/* Removes `path` and, for a folder, everything in it (the web target's data directory, the
 * model target's model folder, the net target's store). */
void rd_fuzz_remove_tree(const char *path);

/* A NUL-terminated copy of `size` bytes (malloc'ed; the caller frees it). Aborts when out of
 * memory. */
char *rd_fuzz_strndup(const void *data, size_t size);

/* An open stream to /dev/null, for the writers a target exercises (the process's). */
FILE *rd_fuzz_null(void);

#endif
