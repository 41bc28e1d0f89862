#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/log.h"
#include "radraft/store.h"

void rd_cli_init(rd_cli *cli, const char *prog)
{
    memset(cli, 0, sizeof *cli);
    cli->prog = prog;
    rd_config_defaults(&cli->cfg);
}

static void cli_verror(const rd_cli *cli, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void cli_verror(const rd_cli *cli, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", cli->prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void rd_cli_error(const rd_cli *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cli_verror(cli, fmt, ap);
    va_end(ap);
}

int rd_cli_usage_error(const rd_cli *cli, const char *help, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cli_verror(cli, fmt, ap);
    va_end(ap);
    fputs(help, stderr);
    return RD_EXIT_USAGE;
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

int rd_cli_getopt(rd_cli *cli, int argc, char **argv, const char *shortopts,
                  const struct option *opts, const char *help, int *exit_code)
{
    /* getopt keeps its place in a global; a command line starts at argv[1] whatever the
     * one parsed before it (main's, or another command's in the tests) left there. */
    if (!cli->parsing) {
        optind = 1;
        cli->parsing = 1;
    }
    for (;;) {
        int opt = getopt_long(argc, argv, shortopts, opts, NULL);
        int r;
        if (opt == -1)
            return 0;
        if (opt == 0)
            continue; /* a long option with a flag pointer: getopt has stored it */
        r = rd_cli_common_option(cli, opt, optarg);
        if (r < 0) {
            *exit_code = RD_EXIT_USAGE;
            return -1;
        }
        if (r > 0)
            continue;
        if (opt == 'h') {
            fputs(help, stdout);
            *exit_code = RD_EXIT_OK;
            return -1;
        }
        if (opt == '?' || opt == ':') {
            fputs(help, stderr);
            *exit_code = RD_EXIT_USAGE;
            return -1;
        }
        return opt;
    }
}

int rd_cli_no_operands(const rd_cli *cli, int argc, char **argv)
{
    if (optind < argc) {
        rd_cli_error(cli, "unexpected argument '%s'", argv[optind]);
        return RD_EXIT_USAGE;
    }
    return RD_EXIT_OK;
}

int rd_cli_finish(rd_cli *cli, int argc, char **argv, int operands)
{
    if (operands == RD_CLI_NO_OPERANDS && rd_cli_no_operands(cli, argc, argv) != RD_EXIT_OK)
        return RD_EXIT_USAGE;
    return rd_cli_finish_config(cli) == 0 ? RD_EXIT_OK : RD_EXIT_FAIL;
}

int rd_cli_set_options(rd_cli *cli, const rd_cli_setting *settings, size_t n)
{
    rd_error err;
    for (size_t i = 0; i < n; i++) {
        if (settings[i].value &&
            rd_config_set(&cli->cfg, settings[i].key, settings[i].value, &err) != RD_OK) {
            rd_cli_error(cli, "%s", rd_error_message(&err));
            return RD_EXIT_USAGE;
        }
    }
    return RD_EXIT_OK;
}

const char *rd_cli_action(int argc, char **argv, const char *help, int *exit_code)
{
    int want_help;
    if (argc >= 2 && argv[1][0] != '-')
        return argv[1];
    want_help = argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0);
    fputs(help, want_help ? stdout : stderr);
    *exit_code = want_help ? RD_EXIT_OK : RD_EXIT_USAGE;
    return NULL;
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

rd_status rd_cli_store_open(const rd_cli *cli, const char *data_dir, rd_store **out, rd_error *err)
{
    rd_store_options so;
    rd_status st = rd_store_options_from_config(&so, &cli->cfg, err);
    return st == RD_OK ? rd_store_open(out, data_dir, &so, err) : st;
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

rd_status rd_cli_read_image(const char *path, const rd_dicom_options *dopts, rd_image **out,
                            rd_dicom_meta *meta, rd_error *err)
{
    if (rd_png_probe(path)) {
        if (meta)
            memset(meta, 0, sizeof *meta);
        return rd_png_read(path, out, NULL, err);
    }
    return rd_dicom_read_image(path, dopts, out, meta, err);
}

void rd_cli_print_json_string(FILE *fp, const char *s)
{
    fputc('"', fp);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(fp, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(fp, "\\u%04x", *p);
        else
            fputc(*p, fp);
    }
    fputc('"', fp);
}

int rd_cli_embedder_open(rd_cli_embedder *e, const rd_cli *cli, const char *model, long threads,
                         long batch, int n_images)
{
    rd_error err;
    memset(e, 0, sizeof *e);
    if (threads < 0)
        threads = cli->cfg.encoder_threads;
    if (batch < 0)
        batch = cli->cfg.encoder_batch;
    if (batch > n_images)
        batch = n_images > 0 ? n_images : 1;
    if (rd_encoder_create(&e->enc, model, (int)threads, (int)batch, &err) != RD_OK) {
        rd_cli_error(cli, "%s", rd_error_message(&err));
        return -1;
    }
    e->info = rd_encoder_info(e->enc);
    e->batch = (int)batch;
    e->imgs = calloc((size_t)batch, sizeof *e->imgs);
    e->names = calloc((size_t)batch, sizeof *e->names);
    e->emb = malloc((size_t)batch * e->info->embedding_dim * sizeof *e->emb);
    /* One more score than needed: a model without labels still gets a buffer. */
    e->scores = malloc(((size_t)batch * e->info->n_labels + 1) * sizeof *e->scores);
    if (!e->imgs || !e->names || !e->emb || !e->scores) {
        rd_cli_error(cli, "out of memory");
        return -1;
    }
    return 0;
}

rd_status rd_cli_embedder_embed(rd_cli_embedder *e, int n, rd_error *err)
{
    return rd_encoder_embed_batch(e->enc, (const rd_image *const *)e->imgs, n, e->emb, e->scores,
                                  err);
}

void rd_cli_embedder_clear(rd_cli_embedder *e, int n)
{
    for (int j = 0; j < n; j++) {
        rd_image_free(e->imgs[j]);
        e->imgs[j] = NULL;
    }
}

void rd_cli_embedder_close(rd_cli_embedder *e)
{
    free(e->imgs);
    free(e->names);
    free(e->emb);
    free(e->scores);
    rd_encoder_free(e->enc);
    memset(e, 0, sizeof *e);
}
