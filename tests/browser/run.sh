#!/usr/bin/env bash
# Runs the chat page test in headless Chromium against the given wshub binary.
#   tests/browser/run.sh target/release/wshub
set -euo pipefail
bin=$(realpath "$1")
cd "$(dirname "$0")"
./setup.sh
WSHUB_BIN="$bin" node --test chat.test.mjs
echo "--- again with wshub serve --compression" >&2
WSHUB_BIN="$bin" TEST_WSHUB_COMPRESSION=1 node --test chat.test.mjs
echo "--- the page over https (wshub serve --tls-*), with a token in its URL" >&2
WSHUB_BIN="$bin" node --test chat_tls.test.mjs
