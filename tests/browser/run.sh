#!/usr/bin/env bash
# Runs the chat page tests in headless Chromium against the given wshub binary.
#   tests/browser/run.sh target/release/wshub
# The failover test also needs redis-server (Debian's package; .ci/run
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
