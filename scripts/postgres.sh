# Starts and stops a throwaway PostgreSQL cluster on 127.0.0.1 for tests. Sourced by scripts/test.sh.
# After start_postgres: POSTGRES_TEST_URL points at a superuser on the cluster's `postgres` database.

start_postgres() {
    ensure_packages postgresql
    local bindir
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$bindir" ] || { echo "PostgreSQL binaries not found under /usr/lib/postgresql" >&2; exit 1; }
    PG_DIR=$(mktemp -d /tmp/integrator-pg.XXXXXX)
    PG_PORT=$(free_port)
    local password="integrator-test-password"
    printf '%s\n' "$password" > "$PG_DIR/pwfile"
    local run=()
    # initdb refuses to run as root; the Debian package creates the postgres user for this.
    if [ "$(id -u)" -eq 0 ]; then
        chown -R postgres:postgres "$PG_DIR"
        run=(runuser -u postgres --)
    fi
    "${run[@]}" "$bindir/initdb" -D "$PG_DIR/data" -U integrator --pwfile="$PG_DIR/pwfile" -A scram-sha-256 \
        --no-sync >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
    "${run[@]}" "$bindir/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
        start >/dev/null || { cat "$PG_DIR/server.log" >&2; exit 1; }
    PG_CTL=("${run[@]}" "$bindir/pg_ctl" -D "$PG_DIR/data")
    export POSTGRES_TEST_URL="postgres://integrator:$password@127.0.0.1:$PG_PORT/postgres"
    echo "PostgreSQL test cluster on 127.0.0.1:$PG_PORT ($PG_DIR)" >&2
}

stop_postgres() {
    if [ -n "${PG_DIR:-}" ]; then
        "${PG_CTL[@]}" stop -m fast >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
        PG_DIR=""
    fi
}
