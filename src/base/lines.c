#include "base/lines.h"

#include <stdlib.h>
#include <string.h>

void rd_line_reader_init(rd_line_reader *r, FILE *fp)
{
    memset(r, 0, sizeof *r);
    r->fp = fp;
}

void rd_line_reader_free(rd_line_reader *r)
{
    if (!r)
        return;
    free(r->buf);
    r->buf = NULL;
    r->cap = r->len = 0;
}

rd_status rd_line_read(rd_line_reader *r, size_t max, int *eof, rd_error *err)
{
    int c, too_long = 0, any = 0;
    r->len = 0;
    *eof = 0;
    while ((c = getc(r->fp)) != EOF) {
        any = 1;
        if (c == '\n')
            break;
        if (too_long)
            continue;
        if (r->len >= max) {
            too_long = 1;
            continue;
        }
        if (r->len + 1 >= r->cap) {
            size_t ncap = r->cap ? r->cap * 2 : 4096;
            char *nb;
            if (ncap > max + 1)
                ncap = max + 1;
            nb = realloc(r->buf, ncap);
            if (!nb)
                return rd_error_set(err, RD_E_NOMEM, "out of memory reading line %ld",
                                    r->lineno + 1);
            r->buf = nb;
            r->cap = ncap;
        }
        r->buf[r->len++] = (char)c;
    }
    if (ferror(r->fp))
        return rd_error_set(err, RD_E_IO, "read error after line %ld", r->lineno);
    if (!any) {
        *eof = 1;
        return RD_OK;
    }
    r->lineno++;
    if (too_long)
        return rd_error_set(err, RD_E_TOO_LARGE, "line %ld is longer than %zu bytes", r->lineno,
                            max);
    if (!r->buf) {
        r->buf = malloc(1);
        if (!r->buf)
            return rd_error_set(err, RD_E_NOMEM, "out of memory reading line %ld", r->lineno);
        r->cap = 1;
    }
    /* A Windows line end leaves a carriage return, which is not part of the line. */
    if (r->len > 0 && r->buf[r->len - 1] == '\r')
        r->len--;
    r->buf[r->len] = '\0';
    return RD_OK;
}
