#!/usr/bin/env bash
# Interop tests of wshub against peers we did not write:
#   node_ws.test.mjs  - `wshub serve` vs the npm `ws` client (node:test),
#                       over ws:// and again over wss:// (--tls-cert/--tls-key)
#   node_cli.test.mjs - `wshub connect` vs an npm `ws` server, `wshub listen`
#                       vs an npm `ws` client
#   connect_test.py   - `wshub connect` vs a Python `websockets` server (ws://
#                       and wss://, wscat/websocat flags, redirects, through
#                       proxy.py (HTTP CONNECT) and pproxy (SOCKS5) started
#                       by the tests), `wshub listen` vs a `websockets`
#                       client, and a `websockets` client with an `ssl`
#                       context vs `wshub serve --tls-cert --tls-key`
# A throwaway CA and a server certificate for 127.0.0.1 are made with the
# openssl command line (Debian: the `openssl` package).
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

# ca.pem, and cert.pem + key.pem (127.0.0.1 and localhost) signed by it.
WSHUB_TLS_DIR=$(mktemp -d)
export WSHUB_TLS_DIR
trap 'rm -rf "$WSHUB_TLS_DIR"' EXIT
make_certificates() {
    local d=$WSHUB_TLS_DIR
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=wshub interop CA" -keyout "$d/ca-key.pem" -out "$d/ca.pem" &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=localhost" -keyout "$d/key.pem" -out "$d/server.csr" &&
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$d/ext.cnf" &&
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" \
        -CAcreateserial -days 2 -extfile "$d/ext.cnf" -out "$d/cert.pem"
}
if ! make_certificates >/dev/null 2>&1; then
    echo "[interop] openssl could not make the test certificates (is openssl installed?)" >&2
    exit 2
fi

echo "[interop] npm ws client against wshub serve" >&2
if timeout --foreground 300 npm ci --silent --no-audit --no-fund; then
    timeout --foreground -k 10 300 node --test --test-reporter=spec node_ws.test.mjs || rc=1
    echo "[interop] the same with wshub serve --compression (ws offers permessage-deflate)" >&2
    TEST_WSHUB_COMPRESSION=1 timeout --foreground -k 10 300 node --test --test-reporter=spec node_ws.test.mjs || rc=1
    echo "[interop] the same over TLS: wshub serve --tls-cert/--tls-key, ws with wss:// and ca" >&2
    WSHUB_TLS=1 timeout --foreground -k 10 300 node --test --test-reporter=spec node_ws.test.mjs || rc=1
    echo "[interop] wshub connect against a ws server, wshub listen against a ws client" >&2
    timeout --foreground -k 10 300 node --test --test-reporter=spec node_cli.test.mjs || rc=1
else
    echo "[interop] npm ci failed" >&2
    rc=1
fi

echo "[interop] wshub connect and listen against Python websockets, through proxy.py and pproxy" >&2
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
