#!/bin/bash
# The radraft of the integration suite's PostgreSQL run (RADRAFT_TEST_BACKEND=postgresql):
# the real binary ($RADRAFT_TEST_REAL) with every command that opens a store pointed at the
# run's PostgreSQL server ($RADRAFT_TEST_PG_DIR/dsn), in a schema of each data folder's own
# (store.postgresql_schema auto). Options after the operands are fine: radraft's commands
# take their options anywhere.
set -u
real=${RADRAFT_TEST_REAL:?RADRAFT_TEST_REAL is not set}
dsn=$(cat "${RADRAFT_TEST_PG_DIR:?RADRAFT_TEST_PG_DIR is not set}/dsn") || exit 1
case "${1:-}" in
serve | batch | queue | user | audit | web | archive | send | predict | store | report)
    exec "$real" "$@" --set store.backend=postgresql --set "store.postgresql_dsn=$dsn" \
        --set store.postgresql_schema=auto
    ;;
esac
exec "$real" "$@"
