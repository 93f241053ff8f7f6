#!/usr/bin/env bash
# The main job on embedded defaults: build, start a pageserver, create a tenant
# (its `main` branch bootstrapped by stock initdb), branch it in constant time,
# and run stock PostgreSQL 15 endpoints from the pageserver:
#   1. a read-only endpoint on a branch, frozen at an LSN;
#   2. a writable endpoint on `main` whose WAL streams into the pageserver
#      (synchronous standby), a small pgbench on it, a branch at an LSN
#      recorded before pgbench, and an endpoint on that branch showing the
#      data as it was then, next to main's current data.
# Arguments go to `sediment init` (e.g. `--http-port 19898 --pg-port 64001`
# when the default ports are taken). PG_BIN, SEDIMENT_WORKDIR and
# CARGO_TARGET_DIR are honoured.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p pageserver -p sediment
sediment="${CARGO_TARGET_DIR:-target}/release/sediment"
pg_bin="${PG_BIN:-/usr/lib/postgresql/15/bin}"
export SEDIMENT_WORKDIR="${SEDIMENT_WORKDIR:-$PWD/.sediment}"

# A previous run's pageserver and endpoints are stopped and its state removed.
if [ -d "$SEDIMENT_WORKDIR" ]; then
    for ep in $("$sediment" endpoint list --json 2>/dev/null | python3 -c 'import json,sys; [print(e["name"]) for e in json.load(sys.stdin)]' 2>/dev/null); do
        "$sediment" endpoint stop "$ep" --destroy || true
    done
    "$sediment" stop 2>/dev/null || true
    rm -rf "$SEDIMENT_WORKDIR"
fi

# Port of an endpoint, from `endpoint list`.
port_of() {
    "$sediment" endpoint list --json | python3 -c 'import json,sys; print([e for e in json.load(sys.stdin) if e["name"]==sys.argv[1]][0]["port"])' "$1"
}
sql() { # PORT SQL
    "$pg_bin/psql" -X -q -h 127.0.0.1 -p "$1" -U postgres -d postgres -Atc "$2"
}
# Waits until the pageserver has ingested branch $1 up to LSN $2.
wait_ingested() {
    for _ in $(seq 1 600); do
        if "$sediment" timeline list --json | python3 -c '
import json, sys
def value(lsn):
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)
row = [t for t in json.load(sys.stdin) if t["branch"] == sys.argv[1]][0]
sys.exit(0 if value(row["last_record_lsn"]) >= value(sys.argv[2]) else 1)' "$1" "$2"; then
            return 0
        fi
        sleep 0.2
    done
    echo "the pageserver did not reach $2 on branch $1" >&2
    return 1
}

"$sediment" init "$@"
"$sediment" start
"$sediment" tenant create --set-default
"$sediment" timeline branch --branch-name demo --ancestor-branch-name main
"$sediment" timeline list
lsn=$("$sediment" timeline list --json | python3 -c 'import json,sys; print([t for t in json.load(sys.stdin) if t["branch"]=="demo"][0]["last_record_lsn"])')
"$sediment" endpoint start demo-ep --branch-name demo --lsn "$lsn"
echo
echo "Databases on branch 'demo' at $lsn, served by a stock postgres started from the pageserver:"
sql "$(port_of demo-ep)" 'SELECT datname FROM pg_database ORDER BY 1'

echo
echo "== A writable endpoint on main: its WAL streams into the pageserver"
"$sediment" endpoint start main-ep
main_port=$(port_of main-ep)
"$pg_bin/pgbench" -h 127.0.0.1 -p "$main_port" -U postgres -i -q -s 2 postgres 2>&1 | tail -1
sql "$main_port" "CREATE TABLE demo_log (note text); INSERT INTO demo_log VALUES ('written before the branch point')"
before=$(sql "$main_port" 'SELECT pg_current_wal_insert_lsn()')
echo "recorded LSN $before; now 10 s of pgbench -c 4 and one more note"
"$pg_bin/pgbench" -h 127.0.0.1 -p "$main_port" -U postgres -c 4 -j 2 -T 10 postgres | grep -E '^(number of transactions actually processed|tps)'
sql "$main_port" "INSERT INTO demo_log VALUES ('written after the branch point')"
wait_ingested main "$before"
"$sediment" timeline branch --branch-name before-pgbench --ancestor-branch-name main --ancestor-start-lsn "$before"
"$sediment" endpoint start old-ep --branch-name before-pgbench
old_port=$(port_of old-ep)
show() { # LABEL PORT
    echo "$1: pgbench_history rows $(sql "$2" 'SELECT count(*) FROM pgbench_history'), notes: $(sql "$2" "SELECT string_agg(note, ' | ' ORDER BY note) FROM demo_log")"
}
echo
show "main (now)               " "$main_port"
show "before-pgbench (at $before)" "$old_port"
echo
"$sediment" timeline list
"$sediment" endpoint list
echo
echo "Stop with: for ep in demo-ep main-ep old-ep; do $sediment endpoint stop \$ep --destroy; done; $sediment stop   (workdir $SEDIMENT_WORKDIR)"
