/* radraft — the command line entry point: dispatches to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "radraft/pacs.h"
#include "radraft/version.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"config", rd_cmd_config, "print the effective configuration or the list of keys"},
};

static void usage(FILE *fp)
{
    fprintf(fp, "usage: radraft COMMAND [OPTIONS] [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(fp, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(fp, "\n'radraft COMMAND --help' describes one command; 'radraft --version' prints "
                "the version.\n");
}

int main(int argc, char **argv)
{
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
