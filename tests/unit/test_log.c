/* The log (src/base/log.c): levels, the line's form, and control characters escaped. */
#include <regex.h>
#include <stdio.h>
#include <string.h>

#include "radraft/log.h"
#include "rdtest.h"

/* What rd_log wrote to a temporary stream while `level` was set, in `buf`. */
typedef struct captured {
    char buf[16384];
    size_t len;
} captured;

static FILE *capture_begin(rd_log_level level)
{
    FILE *fp = tmpfile();
    if (fp) {
        rd_log_set_stream(fp);
        rd_log_set_level(level);
    }
    return fp;
}

static void capture_end(FILE *fp, captured *c)
{
    rd_log_set_stream(NULL);
    rd_log_set_level(RD_LOG_INFO);
    rewind(fp);
    c->len = fread(c->buf, 1, sizeof c->buf - 1, fp);
    c->buf[c->len] = '\0';
    fclose(fp);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* A level lets through itself and what is more severe, nothing less severe. */
RD_TEST(log_level_filters_less_severe_lines)
{
    captured c;
    FILE *fp = capture_begin(RD_LOG_WARN);
    REQUIRE(fp != NULL);
    CHECK_EQ_INT(rd_log_get_level(), RD_LOG_WARN);
    rd_log_error("an error %d", 1);
    rd_log_warn("a warning %d", 2);
    rd_log_info("some info %d", 3);
    rd_log_debug("a detail %d", 4);
    capture_end(fp, &c);
    CHECK_EQ_INT(count_lines(c.buf), 2);
    CHECK(strstr(c.buf, "radraft error: an error 1\n") != NULL);
    CHECK(strstr(c.buf, "radraft warn: a warning 2\n") != NULL);
    CHECK(strstr(c.buf, "some info") == NULL);
    CHECK(strstr(c.buf, "a detail") == NULL);

    fp = capture_begin(RD_LOG_DEBUG);
    REQUIRE(fp != NULL);
    rd_log_debug("a detail %s", "shown");
    capture_end(fp, &c);
    CHECK(strstr(c.buf, "radraft debug: a detail shown\n") != NULL);

    fp = capture_begin(RD_LOG_ERROR);
    REQUIRE(fp != NULL);
    rd_log_warn("hidden");
    rd_log(RD_LOG_ERROR, "shown");
    capture_end(fp, &c);
    CHECK_EQ_INT(count_lines(c.buf), 1);
    CHECK(strstr(c.buf, "radraft error: shown\n") != NULL);
}

/* Each line starts with a UTC timestamp to the millisecond, then "radraft LEVEL: ". */
RD_TEST(log_line_has_timestamp_and_level)
{
    captured c;
    regex_t re;
    FILE *fp = capture_begin(RD_LOG_INFO);
    REQUIRE(fp != NULL);
    rd_log_info("net: listening on port %d", 104);
    capture_end(fp, &c);
    REQUIRE(regcomp(&re,
                    "^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\\.[0-9]{3}Z "
                    "radraft info: net: listening on port 104\n$",
                    REG_EXTENDED | REG_NOSUB) == 0);
    CHECK_MSG(regexec(&re, c.buf, 0, NULL, 0) == 0, "line: '%s'", c.buf);
    regfree(&re);
}

/* A value from the network cannot forge a log line: control characters become escapes. */
RD_TEST(log_escapes_control_characters)
{
    captured c;
    FILE *fp = capture_begin(RD_LOG_INFO);
    REQUIRE(fp != NULL);
    rd_log_info("association from %s",
                "EVIL\n2026-01-01T00:00:00.000Z radraft info: forged\x1b[2J");
    capture_end(fp, &c);
    CHECK(strchr(c.buf, '\n') == c.buf + c.len - 1); /* one line */
    CHECK(strstr(c.buf, "EVIL\\x0a2026-01-01") != NULL);
    CHECK(strstr(c.buf, "\\x1b[2J") != NULL);
    CHECK(strchr(c.buf, 0x1b) == NULL);
}

/* Every control character (tab, carriage return, DEL) is escaped; UTF-8 and printable ASCII
 * are kept as they are. */
RD_TEST(log_escapes_every_control_character_and_keeps_utf8)
{
    captured c;
    FILE *fp = capture_begin(RD_LOG_INFO);
    REQUIRE(fp != NULL);
    rd_log_info("a\tb\rc\x7f"
                "d \xe3\x82\x84\xe3\x81\xbe\xe3\x81\xa0 ~!");
    capture_end(fp, &c);
    const char *want = "a\\x09b\\x0dc\\x7fd \xe3\x82\x84\xe3\x81\xbe\xe3\x81\xa0 ~!\n";
    CHECK_MSG(strstr(c.buf, want) != NULL, "line: '%s'", c.buf);
    for (size_t i = 0; i + 1 < c.len; i++)
        CHECK_MSG((unsigned char)c.buf[i] >= 0x20 && c.buf[i] != 0x7f,
                  "control character 0x%02x at %zu", (unsigned char)c.buf[i], i);
}

/* A message longer than a line is cut where the line's 2047 bytes end, and stays one line
 * of whole escapes. */
RD_TEST(log_long_message_is_one_cut_line)
{
    static char msg[6000];
    captured c;
    FILE *fp;
    /* Newlines only: each becomes a 4-byte escape, so the escaped line is the longest. */
    memset(msg, '\n', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    fp = capture_begin(RD_LOG_INFO);
    REQUIRE(fp != NULL);
    rd_log_info("%s", msg);
    capture_end(fp, &c);
    CHECK_EQ_INT(count_lines(c.buf), 1);
    REQUIRE(c.len > 40);
    /* The message part is whole escapes: "\x0a" repeated, up to the newline. */
    const char *m = strstr(c.buf, "radraft info: ");
    REQUIRE(m != NULL);
    m += strlen("radraft info: ");
    size_t mlen = (size_t)(c.buf + c.len - 1 - m);
    CHECK_EQ_INT(mlen, 4 * (2047 - (size_t)(m - c.buf)));
    for (size_t i = 0; i + 4 <= mlen; i += 4)
        if (memcmp(m + i, "\\x0a", 4) != 0) {
            RD_FAIL_AT("not an escape at byte %zu: '%.4s'", i, m + i);
            break;
        }
}

RD_TEST(log_level_names_parse_and_print)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    rd_log_level lvl = RD_LOG_ERROR;
    rd_error err;
    for (int i = 0; i < 4; i++) {
        CHECK_OK(rd_log_level_parse(names[i], &lvl, &err), &err);
        CHECK_EQ_INT(lvl, i);
        CHECK_STR(rd_log_level_name((rd_log_level)i), names[i]);
    }
    CHECK_EQ_INT(rd_log_level_parse("WARN", &lvl, &err), RD_E_INVALID);
    CHECK_MSG(strstr(rd_error_message(&err), "unknown log level 'WARN'") != NULL, "message: %s",
              rd_error_message(&err));
    CHECK_EQ_INT(rd_log_level_parse(NULL, &lvl, &err), RD_E_INVALID);
    CHECK_EQ_INT(lvl, RD_LOG_DEBUG); /* untouched by the failures */
    CHECK_STR(rd_log_level_name((rd_log_level)7), "?");
}

RD_TEST_MAIN()
