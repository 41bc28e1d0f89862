/* radraft store: the data directory's index — migrate copies an SQLite index into a
 * PostgreSQL database, for a site that grows from one node to several. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "radraft/store.h"

static const char help[] =
    "usage: radraft store migrate --to postgresql DSN [OPTIONS]\n"
    "Copies the index of an SQLite data directory (DATA/radraft.db: instances, studies, jobs,\n"
    "deliveries, review items and signatures, the archive, users and the audit trail) into\n"
    "the schema store.postgresql_schema of the PostgreSQL database DSN, which must not hold\n"
    "radraft's rows yet. All of it arrives in one transaction, counted again there, or\n"
    "nothing does. The files stay in the data directory: the nodes then run with\n"
    "store.backend postgresql, that DSN, and the data directory as their shared folder.\n"
    "Stop radraft on the data directory first; radraft.db is left as it was.\n\n"
    "  --to postgresql DSN  the destination: a libpq connection string or postgresql:// URI\n"
    "  --schema NAME        its schema (store.postgresql_schema, default radraft)\n"
    "  --data-dir D         the SQLite data directory (server.data_dir, default\n"
    "                       ./radraft-data)\n" RD_CLI_COMMON_HELP;

enum { OPT_TO = RD_OPT_FIRST_PRIVATE, OPT_SCHEMA, OPT_DATA_DIR };

static int migrate(rd_cli *cli, const char *data_dir, const char *dsn, const char *schema)
{
    rd_store_options from_opts, to_opts;
    rd_store_copied copied[RD_STORE_COPY_TABLES];
    rd_store *from = NULL, *to = NULL;
    char db[4200];
    rd_error err;
    long total = 0;
    int rc = RD_EXIT_FAIL;
    FILE *fp;

    /* The source must exist: opening a missing one would create an empty store. */
    snprintf(db, sizeof db, "%s/radraft.db", data_dir);
    if (!(fp = fopen(db, "rb"))) {
        rd_cli_error(cli, "%s: no SQLite index to migrate", db);
        return RD_EXIT_FAIL;
    }
    fclose(fp);
    rd_store_options_default(&from_opts);
    rd_store_options_default(&to_opts);
    to_opts.backend = RD_STORE_POSTGRESQL;
    if (strlen(dsn) >= sizeof to_opts.postgresql_dsn ||
        strlen(schema) >= sizeof to_opts.postgresql_schema) {
        rd_cli_error(cli, "--to or --schema is too long");
        return RD_EXIT_USAGE;
    }
    snprintf(to_opts.postgresql_dsn, sizeof to_opts.postgresql_dsn, "%s", dsn);
    snprintf(to_opts.postgresql_schema, sizeof to_opts.postgresql_schema, "%s", schema);
    if (rd_store_open(&from, data_dir, &from_opts, &err) != RD_OK ||
        rd_store_open(&to, data_dir, &to_opts, &err) != RD_OK ||
        rd_store_copy(from, to, copied, &err) != RD_OK) {
        rd_cli_error(cli, "%s", rd_error_message(&err));
        goto out;
    }
    for (int t = 0; t < RD_STORE_COPY_TABLES; t++) {
        printf("  %-16s %ld\n", copied[t].table, copied[t].rows);
        total += copied[t].rows;
    }
    printf("store: %ld rows copied from %s into schema %s\n", total, db, schema);
    rc = RD_EXIT_OK;
out:
    rd_store_close(from);
    rd_store_close(to);
    return rc;
}

int rd_cmd_store(int argc, char **argv)
{
    static const struct option opts[] = {{"to", required_argument, NULL, OPT_TO},
                                         {"schema", required_argument, NULL, OPT_SCHEMA},
                                         {"data-dir", required_argument, NULL, OPT_DATA_DIR},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    rd_cli cli;
    const char *sub, *backend = NULL, *schema = NULL, *data_dir = NULL;
    int opt, rc;

    rd_cli_init(&cli, "radraft store");
    if (!(sub = rd_cli_action(argc, argv, help, &rc)))
        return rc;
    argc--;
    argv++;
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, help, &rc)) > 0) {
        switch (opt) {
        case OPT_TO:
            backend = optarg;
            break;
        case OPT_SCHEMA:
            schema = optarg;
            break;
        case OPT_DATA_DIR:
            data_dir = optarg;
            break;
        }
    }
    if (opt < 0)
        return rc;
    if (strcmp(sub, "migrate") != 0)
        return rd_cli_usage_error(&cli, help, "unknown store command '%s' (migrate)", sub);
    /* --to postgresql DSN: the DSN is the one operand. */
    if (!backend || strcmp(backend, "postgresql") != 0 || optind != argc - 1)
        return rd_cli_usage_error(&cli, help, "migrate expects --to postgresql DSN");
    if (rd_cli_finish_config(&cli) != 0)
        return RD_EXIT_FAIL;
    return migrate(&cli, data_dir ? data_dir : cli.cfg.server_data_dir, argv[optind],
                   schema ? schema : cli.cfg.store_postgresql_schema);
}
