#!/bin/bash
# The PostgreSQL server of the integration suite's PostgreSQL run (a CTest fixture):
#   pg_server.sh start DIR   starts it (lib_pg.sh) and writes its DSN to DIR/dsn
#   pg_server.sh stop DIR    stops it and removes its files
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib_ports.sh"
. "$HERE/lib_pg.sh"
case "${1:-}" in
start)
    rd_pg_stop "$2"
    rm -rf "$2" && mkdir -p "$2" || exit 1
    rd_pg_start "$2" || exit 1
    echo "$RD_PG_DSN" >"$2/dsn"
    echo "PostgreSQL on port $RD_PG_PORT for the suite"
    ;;
stop)
    rd_pg_stop "$2"
    ;;
*)
    echo "usage: pg_server.sh start|stop DIR" >&2
    exit 2
    ;;
esac
