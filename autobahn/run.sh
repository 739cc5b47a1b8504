#!/usr/bin/env bash
# Run the Autobahn conformance suite (kosoku) against wshub in both directions,
# over ws:// and then over wss:// (run.py --tls, through tls_relay.py).
#   autobahn/run.sh WSHUB_BIN AUTOBAHN_CLIENT_BIN [extra run.py options, e.g. --update-expected]
# Exits non-zero if either mode fails. Reports: autobahn/reports/{server,client}/.
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 WSHUB_BIN AUTOBAHN_CLIENT_BIN [run.py options...]" >&2
    exit 2
fi
wshub=$1
client=$2
shift 2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv="$here/.venv"
python=${PYTHON:-python3}

# Create the venv, or recreate it if it is broken (e.g. its Python went away).
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "[autobahn] creating $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
timeout --foreground 600 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$here/requirements.txt"

rc=0
echo "[autobahn] === server mode: wshub serve /echo ===" >&2
timeout --foreground -k 30 1800 "$venv/bin/python" "$here/run.py" server --wshub "$wshub" "$@" || rc=1
echo "[autobahn] === client mode: $client ===" >&2
timeout --foreground -k 30 1800 "$venv/bin/python" "$here/run.py" client --client "$client" "$@" || rc=1
# The same cases over TLS (wss://), through autobahn/tls_relay.py; held to the
# same expected verdicts, so not when they are being rewritten.
for arg in "$@"; do
    if [ "$arg" = --update-expected ]; then
        exit "$rc"
    fi
done
# The server cases once more through an axum route (wshub's axum extractor,
# examples/axum_echo.rs, built beside the client by the release step).
axum_echo="$(dirname "$client")/axum_echo"
echo "[autobahn] === server mode through axum: $axum_echo /echo ===" >&2
timeout --foreground -k 30 1800 "$venv/bin/python" "$here/run.py" server --wshub "$wshub" --axum-echo "$axum_echo" "$@" || rc=1
echo "[autobahn] === server mode over TLS: wshub serve --tls-cert/--tls-key /echo ===" >&2
timeout --foreground -k 30 1800 "$venv/bin/python" "$here/run.py" server --tls --wshub "$wshub" "$@" || rc=1
echo "[autobahn] === client mode over TLS: $client wss:// ===" >&2
timeout --foreground -k 30 1800 "$venv/bin/python" "$here/run.py" client --tls --client "$client" "$@" || rc=1
exit "$rc"
