/* radraft send / radraft echo: operator tools (C-STORE and C-ECHO SCU). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "radraft/fhir.h"
#include "radraft/log.h"
#include "radraft/net.h"
#include "radraft/store.h"

static const char send_help[] =
    "usage: radraft send FILE... --to AE@host:port [OPTIONS]\n"
    "       radraft send BUNDLE.json... --to http[s]://host[:port]/path [OPTIONS]\n"
    "Sends DICOM files with C-STORE over one association, each in its own transfer syntax\n"
    "(no transcoding). Exits 0 only when the peer confirmed every file.\n"
    "To a FHIR server (an http:// or https:// base URL), the files are FHIR Bundles\n"
    "(radraft's -fhir.json files), each POSTed in turn (fhir.* keys: timeout, CA file,\n"
    "bearer token); exits 0 only when the server accepted every one.\n"
    "With --queue the files are put in the outbox of the data directory instead, for\n"
    "`radraft serve` to deliver with retries (to --to, or to every outbox.destinations).\n"
    "A destination ending +tls uses DICOM TLS, one ending +plain plain TCP; others follow\n"
    "outbox.tls.\n\n"
    "  --to DESTINATION    AE@host:port or a FHIR base URL (repeatable with --queue)\n"
    "  --queue             queue in the outbox instead of sending now\n"
    "  --data-dir D        data directory of the outbox (server.data_dir)\n"
    "  --calling-ae T      calling AE title (default server.ae_title)\n" RD_CLI_COMMON_HELP;

static const char echo_help[] =
    "usage: radraft echo AE@host:port [OPTIONS]\n"
    "Sends a C-ECHO (verification) to a DICOM peer; exits 0 when it answers success.\n"
    "AE@host:port+tls uses DICOM TLS, +plain plain TCP; without a suffix outbox.tls decides.\n\n"
    "  --calling-ae T      calling AE title (default server.ae_title)\n" RD_CLI_COMMON_HELP;

/* Each Bundle POSTed to the FHIR server `url` in turn. */
static int post_bundles(rd_cli *cli, const char *url, char **files, int n)
{
    rd_fhir_client client = {.timeout_s = cli->cfg.fhir_timeout_seconds,
                             .ca_file = cli->cfg.fhir_ca_certificates,
                             .bearer_file = cli->cfg.fhir_bearer_token_file};
    int ok = 0;
    for (int i = 0; i < n; i++) {
        rd_error err;
        if (rd_fhir_post(url, files[i], &client, NULL, &err) == RD_OK)
            ok++;
        else
            rd_cli_error(cli, "%s: %s", files[i], rd_error_message(&err));
    }
    fprintf(stderr, "radraft send: %d of %d Bundle(s) accepted by %s\n", ok, n, url);
    return ok == n ? RD_EXIT_OK : RD_EXIT_FAIL;
}

int rd_cmd_send(int argc, char **argv)
{
    enum { OPT_TO = RD_OPT_FIRST_PRIVATE, OPT_QUEUE, OPT_DATA, OPT_CALLING };
    static const struct option opts[] = {{"to", required_argument, NULL, OPT_TO},
                                         {"queue", no_argument, NULL, OPT_QUEUE},
                                         {"data-dir", required_argument, NULL, OPT_DATA},
                                         {"calling-ae", required_argument, NULL, OPT_CALLING},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    const char *to[RD_CONFIG_LIST_MAX];
    const char *data = NULL, *calling = NULL;
    int n_to = 0, queue = 0, opt, rc;
    rd_cli cli;
    rd_error err;

    rd_cli_init(&cli, "radraft send");
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, send_help, &rc)) > 0) {
        switch (opt) {
        case OPT_TO:
            if (n_to >= RD_CONFIG_LIST_MAX) {
                rd_cli_error(&cli, "too many --to");
                return RD_EXIT_USAGE;
            }
            to[n_to++] = optarg;
            break;
        case OPT_QUEUE:
            queue = 1;
            break;
        case OPT_DATA:
            data = optarg;
            break;
        case OPT_CALLING:
            calling = optarg;
            break;
        }
    }
    if (opt < 0)
        return rc;
    if (optind >= argc) {
        rd_cli_error(&cli, "no file to send");
        return RD_EXIT_USAGE;
    }
    if ((rc = rd_cli_finish(&cli, argc, argv, RD_CLI_OPERANDS)) != RD_EXIT_OK)
        return rc;
    const rd_cli_setting settings[] = {{"server.data_dir", data}, {"server.ae_title", calling}};
    if (rd_cli_set_options(&cli, settings, RD_CLI_COUNT(settings)) != RD_EXIT_OK)
        return RD_EXIT_USAGE;
    if (queue && n_to == 0)
        for (int i = 0; i < cli.cfg.outbox_destinations.count; i++)
            to[n_to++] = cli.cfg.outbox_destinations.items[i];
    if (n_to == 0 || (!queue && n_to > 1)) {
        rd_cli_error(&cli, queue ? "no destination (--to or outbox.destinations)"
                                 : "exactly one --to AE@host:port (or FHIR URL) is needed");
        return RD_EXIT_USAGE;
    }
    for (int i = 0; i < n_to; i++) {
        rd_net_peer peer;
        if (rd_fhir_is_endpoint(to[i]) ? rd_fhir_endpoint_check(to[i], &err) != RD_OK
                                       : rd_net_peer_parse(to[i], &peer, &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            return RD_EXIT_USAGE;
        }
    }

    if (queue) {
        rd_store *s = NULL;
        double now = rd_store_now();
        if (rd_cli_store_open(&cli, cli.cfg.server_data_dir, &s, &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            return RD_EXIT_FAIL;
        }
        for (int f = optind; f < argc; f++) {
            char abs[PATH_MAX];
            if (!realpath(argv[f], abs)) {
                rd_cli_error(&cli, "%s: no such file", argv[f]);
                rc = RD_EXIT_FAIL;
                continue;
            }
            for (int i = 0; i < n_to; i++)
                if (rd_store_outbox_add(s, abs, to[i], now, NULL, &err) != RD_OK) {
                    rd_cli_error(&cli, "%s", rd_error_message(&err));
                    rc = RD_EXIT_FAIL;
                }
        }
        rd_store_close(s);
        return rc;
    }

    if (rd_fhir_is_endpoint(to[0]))
        return post_bundles(&cli, to[0], argv + optind, argc - optind);
    {
        rd_net_peer peer;
        rd_net_scu_options scu;
        int n = argc - optind;
        rd_status *results = calloc((size_t)n, sizeof *results);
        if (!results) {
            rd_cli_error(&cli, "out of memory");
            return RD_EXIT_FAIL;
        }
        rd_net_peer_parse(to[0], &peer, NULL);
        rd_net_scu_options_from_config(&scu, &cli.cfg);
        if (rd_net_send_files(&peer, &scu, (const char *const *)(argv + optind), n, results,
                              &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            rc = RD_EXIT_FAIL;
        }
        int ok = 0;
        for (int i = 0; i < n; i++)
            ok += results[i] == RD_OK;
        fprintf(stderr, "radraft send: %d of %d file(s) confirmed by %s\n", ok, n, to[0]);
        free(results);
    }
    return rc;
}

int rd_cmd_echo(int argc, char **argv)
{
    enum { OPT_CALLING = RD_OPT_FIRST_PRIVATE };
    static const struct option opts[] = {{"calling-ae", required_argument, NULL, OPT_CALLING},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    const char *calling = NULL;
    int opt, rc;
    rd_cli cli;
    rd_error err;
    rd_net_peer peer;
    rd_net_scu_options scu;

    rd_cli_init(&cli, "radraft echo");
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, echo_help, &rc)) > 0) {
        if (opt == OPT_CALLING)
            calling = optarg;
    }
    if (opt < 0)
        return rc;
    if (optind != argc - 1) {
        rd_cli_error(&cli, "expects one AE@host:port");
        return RD_EXIT_USAGE;
    }
    if ((rc = rd_cli_finish(&cli, argc, argv, RD_CLI_OPERANDS)) != RD_EXIT_OK)
        return rc;
    const rd_cli_setting settings[] = {{"server.ae_title", calling}};
    if (rd_cli_set_options(&cli, settings, RD_CLI_COUNT(settings)) != RD_EXIT_OK)
        return RD_EXIT_USAGE;
    if (rd_net_peer_parse(argv[optind], &peer, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        return RD_EXIT_USAGE;
    }
    rd_net_scu_options_from_config(&scu, &cli.cfg);
    if (rd_net_echo(&peer, &scu, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        return RD_EXIT_FAIL;
    }
    printf("%s: C-ECHO succeeded\n", argv[optind]);
    return RD_EXIT_OK;
}
