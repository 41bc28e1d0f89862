/* radraft web: a reviewing-only node, the review page and its API on a data directory
 * (no DICOM listener, no drafting); the server itself is rd_web (src/web/web.c). */
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "radraft/log.h"
#include "radraft/web.h"

static const char help[] =
    "usage: radraft web [OPTIONS]\n"
    "Serves the review web page and its JSON API (docs/web-api.md) on a data directory,\n"
    "without the DICOM listener or drafting: radiologists log in, read the queue, claim,\n"
    "edit, sign and reject, exactly as with `radraft queue`. `radraft serve` serves the same\n"
    "page when web.port is not 0. SIGINT or SIGTERM stop it once the requests in progress\n"
    "are answered.\n\n"
    "  --port N            TCP port (web.port; required here unless set in the configuration)\n"
    "  --bind ADDR         address to listen on (web.bind, default 127.0.0.1)\n"
    "  --data-dir D        data directory (server.data_dir, default "
    "./radraft-data)\n" RD_CLI_COMMON_HELP;

/* Set by the signal handler, read by the main thread. */
static atomic_int g_stop;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&g_stop, 1);
}

int rd_cmd_web(int argc, char **argv)
{
    enum { OPT_PORT = RD_OPT_FIRST_PRIVATE, OPT_BIND, OPT_DATA };
    static const struct option opts[] = {{"port", required_argument, NULL, OPT_PORT},
                                         {"bind", required_argument, NULL, OPT_BIND},
                                         {"data-dir", required_argument, NULL, OPT_DATA},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    const char *port = NULL, *bind = NULL, *data = NULL;
    int opt, rc;
    rd_cli cli;
    rd_error err;
    rd_web *web = NULL;
    struct sigaction sa;

    rd_cli_init(&cli, "radraft web");
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, help, &rc)) > 0) {
        switch (opt) {
        case OPT_PORT:
            port = optarg;
            break;
        case OPT_BIND:
            bind = optarg;
            break;
        case OPT_DATA:
            data = optarg;
            break;
        }
    }
    if (opt < 0 || (rc = rd_cli_finish(&cli, argc, argv, RD_CLI_NO_OPERANDS)) != RD_EXIT_OK)
        return rc;
    const rd_cli_setting settings[] = {
        {"web.port", port}, {"web.bind", bind}, {"server.data_dir", data}};
    if (rd_cli_set_options(&cli, settings, RD_CLI_COUNT(settings)) != RD_EXIT_OK)
        return RD_EXIT_USAGE;
    if (cli.cfg.web_port == 0)
        return rd_cli_usage_error(&cli, help, "no port: give --port N or set web.port");

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A client that goes away mid-response must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    if (rd_web_start(&web, &cli.cfg, NULL, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        return RD_EXIT_FAIL;
    }
    while (!atomic_load(&g_stop)) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    rd_log_info("web: shutting down");
    rd_web_stop(web);
    return RD_EXIT_OK;
}
