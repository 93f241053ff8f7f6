#!/usr/bin/env bash
# Property-based conformance check of the management API against its served
# spec (/v1/openapi.yml): schemathesis (pinned) with every check, a bounded
# number of examples per operation and a time bound, against a pageserver
# started by `sediment init --auth` on free ports, with a pageserverapi token.
#
#   bash scripts/schemathesis.sh [ST RUN OPTIONS]   # exit 0 only with 0 failures
#
# Environment: ST_MAX_EXAMPLES (default 25), ST_TIME_LIMIT seconds (default
# 300; the run takes ~1-2 min on 2 cores), SCHEMATHESIS_VENV (default target/schemathesis-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV=${SCHEMATHESIS_VENV:-target/schemathesis-venv}
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-25}
TIME_LIMIT=${ST_TIME_LIMIT:-300}

# The pinned version: the one on PATH if it is that version, else a venv.
if st --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
    ST=st
else
    if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
    fi
    ST="$VENV/bin/st"
fi

cargo build -q -p pageserver --bin pageserver
cargo build -q -p sediment --bin sediment
SEDIMENT=target/debug/sediment

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
WORK=$(mktemp -d)
chmod 755 "$WORK"
HTTP_PORT=$(free_port)
PG_PORT=$(free_port)
cleanup() {
    "$SEDIMENT" --workdir "$WORK/w" stop >/dev/null 2>&1 || true
    # Kept for a failed run's investigation.
    find "$WORK/w" -name '*.log' -path '*pageserver*' -exec cp {} target/schemathesis-pageserver.log \; 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"$SEDIMENT" --workdir "$WORK/w" init --auth --http-port "$HTTP_PORT" --pg-port "$PG_PORT" >/dev/null
"$SEDIMENT" --workdir "$WORK/w" start >/dev/null
# One real tenant and timeline, so generated requests also reach live ids.
"$SEDIMENT" --workdir "$WORK/w" tenant create --set-default >/dev/null
TOKEN=$("$SEDIMENT" --workdir "$WORK/w" token --scope pageserverapi | tail -n 1)
BASE="http://127.0.0.1:$HTTP_PORT"
# The tenant's first timeline, for operations that need live ids
# (scripts/schemathesis.toml reads these two variables).
get_json() { # PATH PYTHON-EXPRESSION-ON-j
    python3 -c 'import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
j = json.load(urllib.request.urlopen(req))
print(eval(sys.argv[3]))' "$BASE$1" "$TOKEN" "$2"
}
ST_TENANT_ID=$(get_json /v1/tenant/ 'j[0]["id"]')
ST_TIMELINE_ID=$(get_json "/v1/tenant/$ST_TENANT_ID/timeline" 'j[0]["timeline_id"]')
export ST_TENANT_ID ST_TIMELINE_ID

echo "schemathesis $SCHEMATHESIS_VERSION against $BASE (max $MAX_EXAMPLES examples per operation, ${TIME_LIMIT}s)"
timeout "$TIME_LIMIT" "$ST" --config-file scripts/schemathesis.toml run "$BASE/v1/openapi.yml" \
    --url "$BASE" \
    --header "Authorization: Bearer $TOKEN" \
    --checks all \
    --max-examples "$MAX_EXAMPLES" \
    --request-timeout 60 \
    --workers 1 \
    --seed 1 \
    "$@"
