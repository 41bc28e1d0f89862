#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/log.h"

void rd_cli_init(rd_cli *cli, const char *prog)
{
    memset(cli, 0, sizeof *cli);
    cli->prog = prog;
    rd_config_defaults(&cli->cfg);
}

void rd_cli_error(const rd_cli *cli, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", cli->prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int rd_cli_common_option(rd_cli *cli, int opt, const char *arg)
{
    switch (opt) {
    case RD_OPT_CONFIG:
        cli->config_path = arg;
        return 1;
    case RD_OPT_SET:
        if (cli->n_sets >= (int)(sizeof cli->sets / sizeof cli->sets[0])) {
            rd_cli_error(cli, "too many --set options");
            return -1;
        }
        cli->sets[cli->n_sets++] = arg;
        return 1;
    case RD_OPT_LOG_LEVEL:
        cli->log_level = arg;
        return 1;
    default:
        return 0;
    }
}

int rd_cli_finish_config(rd_cli *cli)
{
    rd_error err;
    rd_log_level level;
    const char *path = cli->config_path;

    rd_config_defaults(&cli->cfg);
    if (!path) {
        const char *env = getenv("RADRAFT_CONFIG");
        if (env && env[0])
            path = env;
    }
    if (path && rd_config_load_file(&cli->cfg, path, &err) != RD_OK) {
        rd_cli_error(cli, "%s", rd_error_message(&err));
        return -1;
    }
    for (int i = 0; i < cli->n_sets; i++) {
        char key[256];
        const char *eq = strchr(cli->sets[i], '=');
        size_t n = eq ? (size_t)(eq - cli->sets[i]) : 0;
        if (!eq || n == 0 || n >= sizeof key) {
            rd_cli_error(cli, "--set expects KEY=VALUE, got '%s'", cli->sets[i]);
            return -1;
        }
        memcpy(key, cli->sets[i], n);
        key[n] = '\0';
        if (rd_config_set(&cli->cfg, key, eq + 1, &err) != RD_OK) {
            rd_cli_error(cli, "%s", rd_error_message(&err));
            return -1;
        }
    }
    if (cli->log_level && rd_config_set(&cli->cfg, "log.level", cli->log_level, &err) != RD_OK) {
        rd_cli_error(cli, "%s", rd_error_message(&err));
        return -1;
    }
    if (rd_log_level_parse(cli->cfg.log_level, &level, &err) != RD_OK) {
        rd_cli_error(cli, "%s", rd_error_message(&err));
        return -1;
    }
    rd_log_set_level(level);
    return 0;
}

int rd_cli_parse_int(const rd_cli *cli, const char *name, const char *text, long lo, long hi,
                     long *out)
{
    char *end = NULL;
    long v;
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < lo || v > hi) {
        rd_cli_error(cli, "%s expects an integer in [%ld, %ld], got '%s'", name, lo, hi, text);
        return -1;
    }
    *out = v;
    return 0;
}
