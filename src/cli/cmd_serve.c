/* radraft serve: options and signals; the node itself is rd_serve (src/pipeline/serve.c). */
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "radraft/fhir.h"
#include "radraft/log.h"
#include "radraft/net.h"
#include "radraft/serve.h"
#include "base/util.h"

static const char help[] =
    "usage: radraft serve [OPTIONS]\n"
    "Runs radraft as a DICOM node: a C-STORE/C-ECHO listener that stores what it receives\n"
    "durably (a success response only once the file and its index row are on disk), a job\n"
    "for every study that stops receiving for server.stable_seconds, and an outbox that\n"
    "delivers results to the configured destinations with retries. SIGINT or SIGTERM stop it\n"
    "cleanly: no new association, the stores in progress finish, then it exits.\n"
    "With an encoder model (encoder.model), every stable study is drafted by\n"
    "pipeline.workers workers: the draft SR goes to DATA/sr, a review item (state draft)\n"
    "to the database, and the SR to every destination through the outbox.\n\n"
    "  --port N            listener TCP port (server.port, default 11112)\n"
    "  --ae-title T        listener AE title (server.ae_title, default RADRAFT)\n"
    "  --data-dir D        data directory (server.data_dir, default ./radraft-data)\n"
    "  --stable-seconds N  seconds without a new instance before a study's job is queued\n"
    "  --send-to AE@host:port  a destination for results (repeatable; replaces\n"
    "                      outbox.destinations)\n" RD_CLI_COMMON_HELP;

/* Set by the signal handler, read by the main thread: a lock-free atomic, which a signal
 * handler may write. */
static atomic_int g_stop;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&g_stop, 1);
}

int rd_cmd_serve(int argc, char **argv)
{
    enum { OPT_PORT = RD_OPT_FIRST_PRIVATE, OPT_AE, OPT_DATA, OPT_STABLE, OPT_SEND_TO };
    static const struct option opts[] = {{"port", required_argument, NULL, OPT_PORT},
                                         {"ae-title", required_argument, NULL, OPT_AE},
                                         {"data-dir", required_argument, NULL, OPT_DATA},
                                         {"stable-seconds", required_argument, NULL, OPT_STABLE},
                                         {"send-to", required_argument, NULL, OPT_SEND_TO},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    const char *port = NULL, *ae = NULL, *data = NULL, *stable = NULL;
    const char *send_to[RD_CONFIG_LIST_MAX];
    int n_send_to = 0, opt, rc;
    rd_cli cli;
    rd_error err;
    rd_serve *srv = NULL;
    struct sigaction sa;

    rd_cli_init(&cli, "radraft serve");
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, help, &rc)) > 0) {
        switch (opt) {
        case OPT_PORT:
            port = optarg;
            break;
        case OPT_AE:
            ae = optarg;
            break;
        case OPT_DATA:
            data = optarg;
            break;
        case OPT_STABLE:
            stable = optarg;
            break;
        case OPT_SEND_TO:
            if (n_send_to >= RD_CONFIG_LIST_MAX) {
                rd_cli_error(&cli, "at most %d --send-to", RD_CONFIG_LIST_MAX);
                return RD_EXIT_USAGE;
            }
            send_to[n_send_to++] = optarg;
            break;
        }
    }
    if (opt < 0 || (rc = rd_cli_finish(&cli, argc, argv, RD_CLI_NO_OPERANDS)) != RD_EXIT_OK)
        return rc;
    const rd_cli_setting settings[] = {{"server.port", port},
                                       {"server.ae_title", ae},
                                       {"server.data_dir", data},
                                       {"server.stable_seconds", stable}};
    if (rd_cli_set_options(&cli, settings, RD_CLI_COUNT(settings)) != RD_EXIT_OK)
        return RD_EXIT_USAGE;
    if (n_send_to > 0) {
        cli.cfg.outbox_destinations.count = 0;
        for (int i = 0; i < n_send_to; i++)
            rd_strlcpy(cli.cfg.outbox_destinations.items[i], send_to[i],
                       sizeof cli.cfg.outbox_destinations.items[i]);
        cli.cfg.outbox_destinations.count = n_send_to;
    }
    for (int i = 0; i < cli.cfg.outbox_destinations.count; i++) {
        rd_net_peer peer;
        if (rd_net_peer_parse(cli.cfg.outbox_destinations.items[i], &peer, &err) != RD_OK) {
            rd_cli_error(&cli, "destination: %s", rd_error_message(&err));
            return RD_EXIT_USAGE;
        }
    }
    if (cli.cfg.fhir_endpoint[0] && rd_fhir_endpoint_check(cli.cfg.fhir_endpoint, &err) != RD_OK) {
        rd_cli_error(&cli, "fhir.endpoint: %s", rd_error_message(&err));
        return RD_EXIT_USAGE;
    }

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (rd_serve_start(&srv, &cli.cfg, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        return RD_EXIT_FAIL;
    }
    while (!atomic_load(&g_stop)) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    rd_log_info("serve: shutting down");
    rd_serve_stop(srv);
    return RD_EXIT_OK;
}
