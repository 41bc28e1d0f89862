/* radraft command line: shared declarations of the subcommands. */
#ifndef RADRAFT_CLI_H
#define RADRAFT_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "radraft/config.h"
#include "radraft/dicom.h"
#include "radraft/encoder.h"
#include "radraft/error.h"
#include "radraft/image.h"

/* Exit codes of every subcommand. */
enum { RD_EXIT_OK = 0, RD_EXIT_FAIL = 1, RD_EXIT_USAGE = 2 };

/* Options every subcommand accepts: add RD_CLI_COMMON_LONGOPTS to its option table, and
 * rd_cli_getopt handles them. */
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
    int parsing; /* rd_cli_getopt has been called: optind belongs to this command line */
    rd_config cfg;
} rd_cli;

void rd_cli_init(rd_cli *cli, const char *prog);

/* Handles a common option; returns 1 if `opt` was one, 0 if not, -1 on a usage error. */
int rd_cli_common_option(rd_cli *cli, int opt, const char *arg);

/* The option loop of a subcommand:
 *
 *     while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, help, &rc)) > 0) {
 *         switch (opt) {
 *         case OPT_OUT:
 *             out = optarg;
 *             break;
 *         }
 *     }
 *     if (opt < 0 || (rc = rd_cli_finish(&cli, argc, argv, RD_CLI_NO_OPERANDS)) != RD_EXIT_OK)
 *         return rc;
 *
 * `shortopts` holds "h" (and "o:" where -o is an option). Returns the next option that is
 * the subcommand's own (> 0, its argument in optarg), or 0 once the options end (optind is
 * then the first operand). The first call on a `cli` starts at argv[1]. The common options
 * (RD_CLI_COMMON_LONGOPTS) are recorded in `cli` and never returned. Returns -1 with
 * *exit_code set when the command must stop: after -h/--help (`help` printed to stdout,
 * RD_EXIT_OK), an unknown option or a missing argument (getopt's message, then `help` to
 * stderr, RD_EXIT_USAGE), or a bad common option (RD_EXIT_USAGE). */
int rd_cli_getopt(rd_cli *cli, int argc, char **argv, const char *shortopts,
                  const struct option *opts, const char *help, int *exit_code);

/* Whether a subcommand takes operands after its options (rd_cli_finish). */
enum { RD_CLI_NO_OPERANDS = 0, RD_CLI_OPERANDS = 1 };

/* Ends the parsing of a command line: with RD_CLI_NO_OPERANDS an operand left at optind is
 * a usage error ("unexpected argument"); then builds the configuration (rd_cli_finish_config).
 * A command that takes operands checks them itself before calling this. Returns RD_EXIT_OK,
 * or the exit code to return, the error printed. */
int rd_cli_finish(rd_cli *cli, int argc, char **argv, int operands);

/* The operand check of rd_cli_finish on its own, for a command that checks more between it
 * and rd_cli_finish_config: RD_EXIT_OK when optind is argc, else prints "unexpected
 * argument" and returns RD_EXIT_USAGE. */
int rd_cli_no_operands(const rd_cli *cli, int argc, char **argv);

/* Builds cli->cfg (defaults, file, --set) and applies the log level. Prints the error and
 * returns non-zero on failure. */
int rd_cli_finish_config(rd_cli *cli);

struct rd_store;

/* Opens the store of `data_dir` with the configuration's store options (backend, DSN,
 * duplicate policy). */
rd_status rd_cli_store_open(const rd_cli *cli, const char *data_dir, struct rd_store **out,
                            rd_error *err);

/* A command-line option that stands for a configuration key: --data-dir D for
 * server.data_dir. `value` is NULL when the option was not given. */
typedef struct rd_cli_setting {
    const char *key;
    const char *value;
} rd_cli_setting;

/* Sets the `n` keys whose value is not NULL on cli->cfg, in order. Called after
 * rd_cli_finish, so that the command's options override the file and --set, as DCMTK's
 * tools do. Returns RD_EXIT_OK, or prints the first bad value's error and returns
 * RD_EXIT_USAGE. */
int rd_cli_set_options(rd_cli *cli, const rd_cli_setting *settings, size_t n);

/* The number of elements of an array (not a pointer): rd_cli_set_options(&cli, settings,
 * RD_CLI_COUNT(settings)). */
#define RD_CLI_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* For a command with actions ("radraft model check MODEL"): returns the action, argv[1];
 * the caller then drops argv[0] (argc--, argv++) so that the action stands as argv[0] for
 * rd_cli_getopt. Without an action (no argument, or an option first) returns NULL with
 * `help` printed and *exit_code set: to stdout and RD_EXIT_OK for -h or --help, else to
 * stderr and RD_EXIT_USAGE. */
const char *rd_cli_action(int argc, char **argv, const char *help, int *exit_code);

/* Prints "radraft CMD: message" to stderr. */
void rd_cli_error(const rd_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A usage error that shows the help: prints the message as rd_cli_error does, then `help`
 * to stderr, and returns RD_EXIT_USAGE. */
int rd_cli_usage_error(const rd_cli *cli, const char *help, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parses an integer option value within [lo, hi]; prints an error and returns -1 if bad. */
int rd_cli_parse_int(const rd_cli *cli, const char *name, const char *text, long lo, long hi,
                     long *out);

/* Reads an image the way the subcommands accept one: a PNG when the file starts with the
 * PNG signature, else a DICOM file decoded with `dopts`. On success the caller owns *out.
 * `meta` (may be NULL) receives the DICOM attributes; for a PNG it is zeroed. */
rd_status rd_cli_read_image(const char *path, const rd_dicom_options *dopts, rd_image **out,
                            rd_dicom_meta *meta, rd_error *err);

/* The encoder of a command that embeds images in batches (radraft embed, radraft predict),
 * with the buffers of one batch: the caller reads up to `batch` images into imgs[] (their
 * names into names[]), embeds them with rd_cli_embedder_embed, uses emb and scores, then
 * frees them with rd_cli_embedder_clear. */
typedef struct rd_cli_embedder {
    rd_encoder *enc;
    const rd_nn_info *info;
    int batch; /* images per forward pass */
    rd_image **imgs;
    const char **names;
    float *emb;    /* batch x info->embedding_dim */
    float *scores; /* batch x info->n_labels */
} rd_cli_embedder;

/* Loads the encoder `model` for `n_images` images. `threads` and `batch` are the values of
 * --threads and --batch, or -1 for encoder.threads and encoder.batch; a batch is never
 * larger than n_images. Prints the error and returns -1 on failure (then, as after
 * success, rd_cli_embedder_close releases what was made). */
int rd_cli_embedder_open(rd_cli_embedder *e, const rd_cli *cli, const char *model, long threads,
                         long batch, int n_images);

/* Embeds imgs[0..n) into emb and scores. */
rd_status rd_cli_embedder_embed(rd_cli_embedder *e, int n, rd_error *err);

/* Frees imgs[0..n), ready for the next batch. */
void rd_cli_embedder_clear(rd_cli_embedder *e, int n);

/* Frees the buffers and the encoder; accepts an embedder whose open failed. */
void rd_cli_embedder_close(rd_cli_embedder *e);

/* Writes `s` as a JSON string: quoted, with '"' and '\\' escaped and control characters as
 * \u00XX (bytes from 0x80 pass through: the text is UTF-8). */
void rd_cli_print_json_string(FILE *fp, const char *s);

/* The subcommands: argv[0] is the subcommand's name. */
int rd_cmd_config(int argc, char **argv);
int rd_cmd_store(int argc, char **argv);
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
int rd_cmd_localize_eval(int argc, char **argv);
int rd_cmd_info(int argc, char **argv);
int rd_cmd_render(int argc, char **argv);
int rd_cmd_report(int argc, char **argv);
int rd_cmd_sign(int argc, char **argv);
int rd_cmd_user(int argc, char **argv);
int rd_cmd_audit(int argc, char **argv);
int rd_cmd_queue(int argc, char **argv);
int rd_cmd_web(int argc, char **argv);

#endif
