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
    int keys = 0, opt, rc;

    rd_cli_init(&cli, "radraft config");
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, help, &rc)) > 0) {
        switch (opt) {
        case OPT_PRINT:
            keys = 0;
            break;
        case OPT_KEYS:
            keys = 1;
            break;
        }
    }
    if (opt < 0 || (rc = rd_cli_finish(&cli, argc, argv, RD_CLI_NO_OPERANDS)) != RD_EXIT_OK)
        return rc;
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
