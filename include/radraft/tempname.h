/* radraft — names of the temporary files that atomic writes rename into place. The name says
 * which process on which host writes it, so that a folder shared by several nodes can be
 * cleaned of what a killed writer left without touching what a live one is writing. */
#ifndef RADRAFT_TEMPNAME_H
#define RADRAFT_TEMPNAME_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes "<path>.tmp.<host>@<pid>" into buf (size bytes); the host is this machine's name
 * with anything but letters, digits, '-' and '_' made '_'. Returns 0 when it does not fit
 * (buf is then unusable). A caller that wants a unique name appends "-XXXXXX" for mkstemp. */
int rd_temp_name(char *buf, size_t size, const char *path);

/* What a file name says about the temporary it may be. */
typedef enum {
    RD_TEMP_NOT_TEMP, /* not a temporary radraft writes */
    RD_TEMP_LIVE,     /* this host's, and the process that writes it is running */
    RD_TEMP_DEAD,     /* this host's, and no process with its id runs: a left-over */
    RD_TEMP_ELSEWHERE /* another host's, or a name without a writer: only its age tells */
} rd_temp_owner;

/* Classifies a file name (no folder part) by the rd_temp_name convention; the older
 * "<name>.tmp-XXXXXX" and "<name>.tmp.<pid>" forms count as RD_TEMP_ELSEWHERE. */
rd_temp_owner rd_temp_owner_of(const char *name);

#ifdef __cplusplus
}
#endif
#endif
