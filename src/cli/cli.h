/* radraft command line: shared declarations of the subcommands. */
#ifndef RADRAFT_CLI_H
#define RADRAFT_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "radraft/config.h"
#include "radraft/error.h"

/* Exit codes of every subcommand. */
enum { RD_EXIT_OK = 0, RD_EXIT_FAIL = 1, RD_EXIT_USAGE = 2 };

/* Options every subcommand accepts (add RD_CLI_COMMON_LONGOPTS to its option table and
 * pass unknown option codes to rd_cli_common_option). */
enum {
    RD_OPT_CONFIG = 1000,
    RD_OPT_SET,
    RD_OPT_LOG_LEVEL,
    RD_OPT_HELP,
    RD_OPT_FIRST_PRIVATE /* subcommands number their own long options from here */
};

#define RD_CLI_COMMON_LONGOPTS                                                                     \
    {"config", required_argument, NULL, RD_OPT_CONFIG},                                            \
        {"set", required_argument, NULL, RD_OPT_SET},                                              \
        {"log-level", required_argument, NULL, RD_OPT_LOG_LEVEL},                                  \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }

#define RD_CLI_COMMON_HELP                                                                         \
    "  --config FILE       JSON configuration file (default: $RADRAFT_CONFIG if set)\n"            \
    "  --set KEY=VALUE     override one configuration key (repeatable)\n"                          \
    "  --log-level LEVEL   error, warn, info or debug\n"                                           \
    "  -h, --help          this help\n"

/* Command-line state shared by the subcommands: the configuration being built from the
 * defaults, then the file, then --set overrides (in that order, whatever the order given). */
typedef struct rd_cli {
    const char *prog; /* "radraft info" */
    const char *config_path;
    const char *sets[64];
    int n_sets;
    const char *log_level;
    rd_config cfg;
} rd_cli;

void rd_cli_init(rd_cli *cli, const char *prog);

/* Handles a common option; returns 1 if `opt` was one, 0 if not, -1 on a usage error. */
int rd_cli_common_option(rd_cli *cli, int opt, const char *arg);

/* Builds cli->cfg (defaults, file, --set) and applies the log level. Prints the error and
 * returns non-zero on failure. */
int rd_cli_finish_config(rd_cli *cli);

/* Prints "radraft CMD: message" to stderr. */
void rd_cli_error(const rd_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses an integer option value within [lo, hi]; prints an error and returns -1 if bad. */
int rd_cli_parse_int(const rd_cli *cli, const char *name, const char *text, long lo, long hi,
                     long *out);

/* The subcommands: argv[0] is the subcommand's name. */
int rd_cmd_config(int argc, char **argv);
int rd_cmd_samples(int argc, char **argv);
int rd_cmd_archive(int argc, char **argv);
int rd_cmd_serve(int argc, char **argv);
int rd_cmd_batch(int argc, char **argv);
int rd_cmd_send(int argc, char **argv);
int rd_cmd_echo(int argc, char **argv);
int rd_cmd_embed(int argc, char **argv);
int rd_cmd_predict(int argc, char **argv);
int rd_cmd_train(int argc, char **argv);
int rd_cmd_model(int argc, char **argv);
int rd_cmd_label(int argc, char **argv);
int rd_cmd_evaluate_labeler(int argc, char **argv);
int rd_cmd_evaluate(int argc, char **argv);
int rd_cmd_info(int argc, char **argv);
int rd_cmd_render(int argc, char **argv);
int rd_cmd_report(int argc, char **argv);
int rd_cmd_sign(int argc, char **argv);
int rd_cmd_user(int argc, char **argv);
int rd_cmd_audit(int argc, char **argv);
int rd_cmd_queue(int argc, char **argv);

#endif
