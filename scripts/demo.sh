#!/usr/bin/env bash
# The main job on embedded defaults: build, start a pageserver, create a tenant
# (its `main` branch bootstrapped by stock initdb), branch it in constant time,
# and run a stock PostgreSQL 15 endpoint on the branch.
#
# Until the WAL receiver lands, endpoints are read-only and frozen at an LSN
# (`endpoint start --lsn`); see the README.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p pageserver -p sediment
sediment=target/release/sediment
export SEDIMENT_WORKDIR="${SEDIMENT_WORKDIR:-$PWD/.sediment}"

# A previous run's pageserver and endpoints are stopped and its state removed.
if [ -d "$SEDIMENT_WORKDIR" ]; then
    for ep in $("$sediment" endpoint list --json 2>/dev/null | python3 -c 'import json,sys; [print(e["name"]) for e in json.load(sys.stdin)]' 2>/dev/null); do
        "$sediment" endpoint stop "$ep" --destroy || true
    done
    "$sediment" stop 2>/dev/null || true
    rm -rf "$SEDIMENT_WORKDIR"
fi

"$sediment" init
"$sediment" start
"$sediment" tenant create --set-default
"$sediment" timeline branch --branch-name demo --ancestor-branch-name main
"$sediment" timeline list
lsn=$("$sediment" timeline list --json | python3 -c 'import json,sys; print([t for t in json.load(sys.stdin) if t["branch"]=="demo"][0]["last_record_lsn"])')
"$sediment" endpoint start demo-ep --branch-name demo --lsn "$lsn"
"$sediment" endpoint list
echo
echo "Databases on branch 'demo' at $lsn, served by a stock postgres started from the pageserver:"
port=$("$sediment" endpoint list --json | python3 -c 'import json,sys; print([e for e in json.load(sys.stdin) if e["name"]=="demo-ep"][0]["port"])')
psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atc 'SELECT datname FROM pg_database ORDER BY 1'
echo
echo "Stop with: $sediment endpoint stop demo-ep --destroy && $sediment stop   (workdir $SEDIMENT_WORKDIR)"
