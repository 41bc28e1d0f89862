/* The store a unit test opens: SQLite in its data directory, or, when the environment names a
 * PostgreSQL server (RD_TEST_POSTGRESQL_DSN, set by tests/integration/test_postgresql.sh),
 * a schema of its own in that database, so that the store's cases run on both backends. */
#ifndef RADRAFT_RDTEST_STORE_H
#define RADRAFT_RDTEST_STORE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "radraft/config.h"
#include "radraft/store.h"

/* The options for the store of `dir`: NULL (the defaults, SQLite) without the variable;
 * else PostgreSQL with a schema named after `dir` (every handle of one directory shares
 * it, as they share one radraft.db). Valid until the next call on the same thread. */
static inline const rd_store_options *rdt_store_opts(const char *dir)
{
    static _Thread_local rd_store_options opts;
    const char *dsn = getenv("RD_TEST_POSTGRESQL_DSN");
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    if (!dsn || !dsn[0])
        return NULL;
    for (const char *p = dir; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    rd_store_options_default(&opts);
    opts.backend = RD_STORE_POSTGRESQL;
    snprintf(opts.postgresql_dsn, sizeof opts.postgresql_dsn, "%s", dsn);
    snprintf(opts.postgresql_schema, sizeof opts.postgresql_schema, "t_%016llx",
             (unsigned long long)h);
    return &opts;
}

/* Fills *opts as rdt_store_opts would choose (the defaults when it returns NULL), for a case
 * that changes an option. */
static inline void rdt_store_opts_init(rd_store_options *opts, const char *dir)
{
    const rd_store_options *o = rdt_store_opts(dir);
    if (o)
        *opts = *o;
    else
        rd_store_options_default(opts);
}

/* Points a configuration's store keys where rdt_store_opts(dir) points, for a case whose
 * pipeline opens the store of `dir` itself. */
static inline void rdt_config_store(rd_config *cfg, const char *dir)
{
    const rd_store_options *o = rdt_store_opts(dir);
    if (!o)
        return;
    snprintf(cfg->store_backend, sizeof cfg->store_backend, "postgresql");
    snprintf(cfg->store_postgresql_dsn, sizeof cfg->store_postgresql_dsn, "%s", o->postgresql_dsn);
    snprintf(cfg->store_postgresql_schema, sizeof cfg->store_postgresql_schema, "%s",
             o->postgresql_schema);
}

#endif
