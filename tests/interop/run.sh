#!/usr/bin/env bash
# Interop tests of wshub against peers we did not write:
#   node_ws.test.mjs  - `wshub serve` vs the npm `ws` client (node:test)
#   connect_test.py   - `wshub connect` vs a Python `websockets` server
# usage: tests/interop/run.sh WSHUB_BIN
set -uo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: $0 WSHUB_BIN" >&2
    exit 2
fi
if [ ! -x "$1" ]; then
    echo "$0: $1 is not an executable file" >&2
    exit 2
fi
WSHUB_BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
export WSHUB_BIN

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here" || exit 2
rc=0

echo "[interop] npm ws client against wshub serve" >&2
if timeout --foreground 300 npm ci --silent --no-audit --no-fund; then
    timeout --foreground -k 10 300 node --test --test-reporter=spec node_ws.test.mjs || rc=1
    echo "[interop] the same with wshub serve --compression (ws offers permessage-deflate)" >&2
    WSHUB_COMPRESSION=1 timeout --foreground -k 10 300 node --test --test-reporter=spec node_ws.test.mjs || rc=1
else
    echo "[interop] npm ci failed" >&2
    rc=1
fi

echo "[interop] wshub connect against a Python websockets server" >&2
venv="$here/.venv"
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv" || exit 2
fi
if timeout --foreground 300 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt; then
    timeout --foreground -k 10 300 "$venv/bin/python" connect_test.py || rc=1
else
    echo "[interop] pip install failed" >&2
    rc=1
fi

exit "$rc"
