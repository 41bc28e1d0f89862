/* radraft — bounded line reading for JSON Lines and CSV input (private). */
#ifndef RADRAFT_LINES_H
#define RADRAFT_LINES_H

#include <stdio.h>

#include "radraft/error.h"

/* Longest line the line-oriented commands accept. */
#define RD_LINE_MAX (1u << 20)

typedef struct rd_line_reader {
    FILE *fp;  /* not owned */
    char *buf; /* owned: the current line, NUL-terminated, without its newline */
    size_t cap;
    size_t len;
    long lineno; /* 1-based number of the current line */
} rd_line_reader;

/* Starts reading `fp` (not owned). */
void rd_line_reader_init(rd_line_reader *r, FILE *fp);

/* Reads the next line into r->buf. Returns RD_OK with *eof = 0 for a line, RD_OK with
 * *eof = 1 at the end of input; RD_E_TOO_LARGE for a line longer than `max` bytes (the rest
 * of it is skipped, so reading can go on with the next line), RD_E_IO or RD_E_NOMEM. */
rd_status rd_line_read(rd_line_reader *r, size_t max, int *eof, rd_error *err);

/* Frees the buffer. Accepts a reader that never read. */
void rd_line_reader_free(rd_line_reader *r);

#endif
