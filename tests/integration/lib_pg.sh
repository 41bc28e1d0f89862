# A PostgreSQL server of a test's own (sourced, not run), in a folder of its own and on a
# loopback port, with trust authentication for the role radraft and a database radraft:
#
#   . "$(dirname "$0")/lib_pg.sh"
#   rd_pg_start "$work/pg" || exit 1     # sets RD_PG_DSN, RD_PG_PORT
#   ...
#   rd_pg_stop "$work/pg"
#
# As root (CI) the server runs as the postgres user, which Debian's package creates: initdb
# refuses root. Its files live under /tmp (a folder that user can reach), named in
# "$1/where".

RD_PG_BIN=${RD_PG_BIN:-/usr/lib/postgresql/15/bin}

# rd_pg_as CMD...: runs CMD as the server's owner.
rd_pg_as() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# rd_pg_start DIR: initialises and starts a server; sets RD_PG_DSN (a libpq connection
# string) and RD_PG_PORT. Returns 1, with the server's log, when it does not start.
rd_pg_start() {
    local dir=$1 data port
    mkdir -p "$dir"
    if [ ! -x "$RD_PG_BIN/initdb" ]; then
        echo "lib_pg: $RD_PG_BIN/initdb not found (Debian package postgresql-15)" >&2
        return 1
    fi
    data=$(mktemp -d /tmp/radraft-pg.XXXXXX)
    echo "$data" >"$dir/where"
    [ "$(id -u)" = 0 ] && chown postgres: "$data"
    if ! rd_pg_as "$RD_PG_BIN/initdb" -D "$data/db" -U radraft -A trust -E UTF8 --no-sync \
        >"$dir/initdb.log" 2>&1; then
        echo "lib_pg: initdb failed:" >&2
        tail -20 "$dir/initdb.log" >&2
        return 1
    fi
    for try in 1 2 3; do
        port=$(rd_free_port)
        if rd_pg_as "$RD_PG_BIN/pg_ctl" -D "$data/db" -l "$data/server.log" -w -t 60 \
            -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c max_connections=200" \
            start >"$dir/pg_ctl.log" 2>&1; then
            RD_PG_PORT=$port
            RD_PG_DSN="host=127.0.0.1 port=$port user=radraft dbname=radraft"
            if ! "$RD_PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U radraft radraft; then
                echo "lib_pg: createdb failed" >&2
                return 1
            fi
            export RD_PG_DSN RD_PG_PORT
            return 0
        fi
        grep -q "already in use" "$data/server.log" 2>/dev/null || break
    done
    echo "lib_pg: the server did not start:" >&2
    tail -20 "$data/server.log" >&2
    return 1
}

# rd_pg_restart DIR: restarts the server of DIR on its port (fast: every connection is cut,
# as a database failover or restart would).
rd_pg_restart() {
    local dir=$1 data
    data=$(cat "$dir/where")
    rd_pg_as "$RD_PG_BIN/pg_ctl" -D "$data/db" -l "$data/server.log" -w -t 60 -m fast restart \
        >"$dir/pg_ctl.log" 2>&1
}

# rd_pg_stop DIR: stops the server of DIR (immediately: its data is thrown away) and
# removes its files.
rd_pg_stop() {
    local dir=$1 data
    [ -f "$dir/where" ] || return 0
    data=$(cat "$dir/where")
    rd_pg_as "$RD_PG_BIN/pg_ctl" -D "$data/db" -m immediate -w stop >/dev/null 2>&1 || true
    cp "$data/server.log" "$dir/server.log" 2>/dev/null || true
    rm -rf "$data" "$dir/where"
}
