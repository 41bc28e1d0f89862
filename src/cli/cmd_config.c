#include "cli.h"

#include <string.h>

static const char help[] =
    "usage: radraft config (--print | --keys) [OPTIONS]\n"
    "Prints the effective configuration (defaults, then --config FILE, then --set) as JSON,\n"
    "or the table of keys with their type, range, default and meaning.\n\n"
    "  --print             print the effective configuration (the default)\n"
    "  --keys              list every configuration key\n" RD_CLI_COMMON_HELP;

int rd_cmd_config(int argc, char **argv)
{
    enum { OPT_PRINT = RD_OPT_FIRST_PRIVATE, OPT_KEYS };
    static const struct option opts[] = {{"print", no_argument, NULL, OPT_PRINT},
                                         {"keys", no_argument, NULL, OPT_KEYS},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    rd_cli cli;
    rd_error err;
    int keys = 0, opt;

    rd_cli_init(&cli, "radraft config");
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int r = rd_cli_common_option(&cli, opt, optarg);
        if (r < 0)
            return RD_EXIT_USAGE;
        if (r > 0)
            continue;
        switch (opt) {
        case OPT_PRINT:
            keys = 0;
            break;
        case OPT_KEYS:
            keys = 1;
            break;
        case 'h':
            fputs(help, stdout);
            return RD_EXIT_OK;
        default:
            fputs(help, stderr);
            return RD_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        rd_cli_error(&cli, "unexpected argument '%s'", argv[optind]);
        return RD_EXIT_USAGE;
    }
    if (rd_cli_finish_config(&cli) != 0)
        return RD_EXIT_FAIL;
    if (keys) {
        rd_config_describe(stdout);
        return RD_EXIT_OK;
    }
    if (rd_config_print(&cli.cfg, stdout, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        return RD_EXIT_FAIL;
    }
    return RD_EXIT_OK;
}
