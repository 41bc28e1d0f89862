/* radraft — the command line entry point: dispatches to a subcommand. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "radraft/pacs.h"
#include "radraft/version.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"serve", rd_cmd_serve, "DICOM listener (C-STORE/C-ECHO), job scheduler and outbox"},
    {"batch", rd_cmd_batch, "draft every study in folders of DICOM files (resumable, parallel)"},
    {"send", rd_cmd_send, "send DICOM files with C-STORE (or queue them in the outbox)"},
    {"echo", rd_cmd_echo, "C-ECHO a DICOM peer (AE@host:port)"},
    {"report", rd_cmd_report, "draft the report of one study as a DICOM SR"},
    {"sign", rd_cmd_sign, "write the verified (signed) version of a draft SR"},
    {"user", rd_cmd_user, "users of the review queue: add, passwd, disable, enable, list"},
    {"audit", rd_cmd_audit, "the review queue's audit trail: list, verify the hash chain"},
    {"queue", rd_cmd_queue, "the review queue: list, show, claim, edit, sign, amend, reject"},
    {"web", rd_cmd_web, "the review web page and its JSON API on a data directory"},
    {"info", rd_cmd_info, "metadata of DICOM or PNG files as JSON lines"},
    {"render", rd_cmd_render, "decode a DICOM or PNG image and write it as a PNG"},
    {"embed", rd_cmd_embed, "embedding + finding scores of images as JSON lines"},
    {"predict", rd_cmd_predict, "finding scores of images (files or folders) as CSV"},
    {"train", rd_cmd_train, "train the encoder on labelled images (NIH CSV format)"},
    {"model", rd_cmd_model, "write (init), validate (check) or time (bench) an encoder model"},
    {"label", rd_cmd_label, "report text (JSON Lines) -> finding states"},
    {"evaluate", rd_cmd_evaluate, "per-finding AUROC of predictions (CSV) against labels"},
    {"evaluate-labeler", rd_cmd_evaluate_labeler, "measure the labeler against expert labels"},
    {"localize-eval", rd_cmd_localize_eval,
     "measure the class activation maps on expert bounding boxes (pointing game, side)"},
    {"archive", rd_cmd_archive, "similar-case archive: import, list, stats, export-seed, query"},
    {"samples", rd_cmd_samples, "write the synthetic sample studies as DICOM files"},
    {"config", rd_cmd_config, "print the effective configuration or the list of keys"},
    {"store", rd_cmd_store, "the index: migrate an SQLite data directory to PostgreSQL"},
};

static void usage(FILE *fp)
{
    fprintf(fp, "usage: radraft COMMAND [OPTIONS] [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(fp, "  %-17s %s\n", commands[i].name, commands[i].summary);
    fprintf(fp, "\n'radraft COMMAND --help' describes one command; 'radraft --version' prints "
                "the version.\n");
}

int main(int argc, char **argv)
{
    /* What radraft writes holds patient data (images, report texts, UIDs in the database and
     * its journal): readable by its own user only, whatever the caller's umask. */
    umask(077);
    if (argc < 2) {
        usage(stderr);
        return RD_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return RD_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("radraft %s (DCMTK %s)\n", RD_VERSION, rd_pacs_dcmtk_version());
        return RD_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "radraft: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return RD_EXIT_USAGE;
}
