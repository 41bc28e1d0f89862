# The index of a data directory, read by the integration scripts (sourced, not run):
#
#   . "$(dirname "$0")/lib_store.sh"
#   n=$(rd_db rd "SELECT COUNT(*) FROM instances")
#
# With RADRAFT_TEST_BACKEND=postgresql (the suite's PostgreSQL run, see tests/CMakeLists.txt)
# the radraft the script drives is tests/integration/radraft_pg.sh, which puts every store
# in the PostgreSQL server of that run, in the schema of its data folder
# (store.postgresql_schema auto: "radraft_" and the start of DATA/store-id); rd_db then asks
# psql there. Otherwise it asks sqlite3 in DATA/radraft.db. Output as sqlite3's: one row a
# line, columns separated by |, NULL empty.

# 1 when this run's stores are on PostgreSQL.
rd_db_is_pg() {
    [ "${RADRAFT_TEST_BACKEND:-sqlite}" = postgresql ]
}

# rd_db DATA_DIR SQL [SEPARATOR [ROW_END]]: runs SQL on the index of DATA_DIR; columns are
# separated by SEPARATOR (default |), rows end with ROW_END (default a newline).
rd_db() {
    local dir=$1 sql=$2 sep=${3:-|} row=${4:-$'\n'} id
    if ! rd_db_is_pg; then
        sqlite3 -cmd ".timeout 10000" -separator "$sep" -newline "$row" "$dir/radraft.db" "$sql"
        return
    fi
    id=$(head -c 16 "$dir/store-id" 2>/dev/null) || {
        echo "rd_db: $dir/store-id not found (no store opened there yet)" >&2
        return 1
    }
    # `user` is a reserved word of PostgreSQL: the audit table's column is quoted there.
    sql=$(printf '%s' "$sql" | sed -E "s/(^|[^a-z_\"'])user([^a-z_\"']|$)/\\1\"user\"\\2/g")
    psql "$(cat "$RADRAFT_TEST_PG_DIR/dsn")" -v ON_ERROR_STOP=1 -Atq -F "$sep" -R "$row" \
        -c "SET search_path TO radraft_$id" -c "$sql"
}

# rd_db_around_triggers DATA_DIR SQL: runs SQL on the audit table with its append-only
# triggers out of the way, as someone editing the database behind radraft's back would.
rd_db_around_triggers() {
    if rd_db_is_pg; then
        rd_db "$1" "ALTER TABLE audit DISABLE TRIGGER audit_no_change; $2"
    else
        rd_db "$1" "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; $2"
    fi
}

# The exit status of rd_db when the database refuses a statement: sqlite3 gives SQLite's
# error code (19, a constraint: the triggers' RAISE(ABORT)), psql 1.
rd_db_refused_status() {
    if rd_db_is_pg; then echo 1; else echo 19; fi
}
