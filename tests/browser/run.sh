#!/usr/bin/env bash
# Runs the chat page and client library tests (headless Chromium, Node)
# against the given wshub binary.
#   tests/browser/run.sh target/release/wshub
# The failover and library tests also need redis-server (Debian's package; .ci/run
# installs it).
set -euo pipefail
bin=$(realpath "$1")
cd "$(dirname "$0")"
./setup.sh
WSHUB_BIN="$bin" node --test chat.test.mjs
echo "--- again with wshub serve --compression" >&2
WSHUB_BIN="$bin" TEST_WSHUB_COMPRESSION=1 node --test chat.test.mjs
echo "--- the page over https (wshub serve --tls-*), with a token in its URL" >&2
WSHUB_BIN="$bin" node --test chat_tls.test.mjs
echo "--- failover: two nodes on Redis behind a balancer, the page's node killed" >&2
command -v redis-server >/dev/null || { echo "run.sh: redis-server is not on PATH (apt-get install redis-server)" >&2; exit 1; }
WSHUB_BIN="$bin" node --test failover.test.mjs
echo "--- the client library (/wshub.js) in Node, against wshub serve in memory and on Redis" >&2
WSHUB_BIN="$bin" node --test library.test.mjs
echo "--- the client library in Chromium: the hub restarted, a stalled connection" >&2
WSHUB_BIN="$bin" node --test library_browser.test.mjs
