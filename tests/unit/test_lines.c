/* The bounded line reader (src/base/lines.c) behind the JSON Lines and CSV inputs. */
#include <stdio.h>
#include <string.h>

#include "base/lines.h"
#include "rdtest.h"

/* A stream holding `len` bytes of `text`, rewound for reading. */
static FILE *stream_of(const char *text, size_t len)
{
    FILE *fp = tmpfile();
    if (!fp)
        return NULL;
    if (fwrite(text, 1, len, fp) != len) {
        fclose(fp);
        return NULL;
    }
    rewind(fp);
    return fp;
}

RD_TEST(lines_in_order_with_their_numbers)
{
    const char text[] = "first\n\nthird line\r\nlast without newline";
    FILE *fp = stream_of(text, sizeof text - 1);
    rd_line_reader r;
    rd_error err;
    int eof = -1;
    REQUIRE(fp != NULL);
    rd_line_reader_init(&r, fp);
    REQUIRE_OK(rd_line_read(&r, 100, &eof, &err), &err);
    CHECK_EQ_INT(eof, 0);
    CHECK_STR(r.buf, "first");
    CHECK_EQ_INT(r.len, 5);
    CHECK_EQ_INT(r.lineno, 1);
    /* An empty line is a line, not the end. */
    REQUIRE_OK(rd_line_read(&r, 100, &eof, &err), &err);
    CHECK_EQ_INT(eof, 0);
    CHECK_STR(r.buf, "");
    CHECK_EQ_INT(r.len, 0);
    CHECK_EQ_INT(r.lineno, 2);
    /* A Windows line end loses its carriage return. */
    REQUIRE_OK(rd_line_read(&r, 100, &eof, &err), &err);
    CHECK_STR(r.buf, "third line");
    CHECK_EQ_INT(r.len, 10);
    CHECK_EQ_INT(r.lineno, 3);
    /* The last line needs no newline. */
    REQUIRE_OK(rd_line_read(&r, 100, &eof, &err), &err);
    CHECK_EQ_INT(eof, 0);
    CHECK_STR(r.buf, "last without newline");
    CHECK_EQ_INT(r.lineno, 4);
    REQUIRE_OK(rd_line_read(&r, 100, &eof, &err), &err);
    CHECK_EQ_INT(eof, 1);
    CHECK_EQ_INT(r.lineno, 4);
    /* The end stays the end. */
    REQUIRE_OK(rd_line_read(&r, 100, &eof, &err), &err);
    CHECK_EQ_INT(eof, 1);
    rd_line_reader_free(&r);
    fclose(fp);
}

RD_TEST(lines_empty_input_is_the_end_at_once)
{
    FILE *fp = stream_of("", 0);
    rd_line_reader r;
    rd_error err;
    int eof = 0;
    REQUIRE(fp != NULL);
    rd_line_reader_init(&r, fp);
    REQUIRE_OK(rd_line_read(&r, 100, &eof, &err), &err);
    CHECK_EQ_INT(eof, 1);
    CHECK_EQ_INT(r.lineno, 0);
    rd_line_reader_free(&r);
    rd_line_reader_free(&r); /* twice is harmless */
    rd_line_reader_free(NULL);
    fclose(fp);
}

/* A line of exactly `max` bytes is accepted; one byte more is RD_E_TOO_LARGE with its
 * number, and the reader goes on with the next line. */
RD_TEST(lines_too_long_is_refused_and_skipped)
{
    char text[64];
    int n = snprintf(text, sizeof text, "%s\n%s\nnext\n", "12345678", "123456789");
    FILE *fp = stream_of(text, (size_t)n);
    rd_line_reader r;
    rd_error err;
    int eof = 0;
    REQUIRE(fp != NULL);
    rd_line_reader_init(&r, fp);
    REQUIRE_OK(rd_line_read(&r, 8, &eof, &err), &err);
    CHECK_STR(r.buf, "12345678");
    CHECK_EQ_INT(rd_line_read(&r, 8, &eof, &err), RD_E_TOO_LARGE);
    CHECK_EQ_INT(eof, 0);
    CHECK_EQ_INT(r.lineno, 2);
    CHECK_MSG(strstr(rd_error_message(&err), "line 2 is longer than 8 bytes") != NULL,
              "message: %s", rd_error_message(&err));
    REQUIRE_OK(rd_line_read(&r, 8, &eof, &err), &err);
    CHECK_EQ_INT(eof, 0);
    CHECK_STR(r.buf, "next");
    CHECK_EQ_INT(r.lineno, 3);
    REQUIRE_OK(rd_line_read(&r, 8, &eof, &err), &err);
    CHECK_EQ_INT(eof, 1);
    rd_line_reader_free(&r);
    fclose(fp);
}

/* Lines longer than the first buffer grow it, and the bytes come through unchanged (a NUL
 * inside a line included: len counts it). */
RD_TEST(lines_long_and_binary_lines_come_through)
{
    static char text[20002];
    FILE *fp;
    rd_line_reader r;
    rd_error err;
    int eof = 0;
    for (int i = 0; i < 20000; i++)
        text[i] = (char)('a' + i % 26);
    text[100] = '\0';
    text[20000] = '\n';
    text[20001] = 'z';
    fp = stream_of(text, sizeof text);
    REQUIRE(fp != NULL);
    rd_line_reader_init(&r, fp);
    REQUIRE_OK(rd_line_read(&r, RD_LINE_MAX, &eof, &err), &err);
    CHECK_EQ_INT(r.len, 20000);
    CHECK(memcmp(r.buf, text, 20000) == 0);
    CHECK_EQ_INT(r.buf[20000], '\0');
    REQUIRE_OK(rd_line_read(&r, RD_LINE_MAX, &eof, &err), &err);
    CHECK_STR(r.buf, "z");
    rd_line_reader_free(&r);
    fclose(fp);
}

/* A stream that cannot be read is RD_E_IO, not the end of input. */
RD_TEST(lines_read_error_is_an_io_error)
{
    rd_line_reader r;
    rd_error err;
    int eof = 0;
    /* Write-only: every read fails with the stream's error indicator set. */
    FILE *fp = fopen("/dev/null", "w");
    REQUIRE(fp != NULL);
    rd_line_reader_init(&r, fp);
    CHECK_EQ_INT(rd_line_read(&r, 100, &eof, &err), RD_E_IO);
    CHECK_EQ_INT(eof, 0);
    rd_line_reader_free(&r);
    fclose(fp);
}

RD_TEST_MAIN()
