#!/usr/bin/env bash
# Runs the chat page test in headless Chromium against the given wshub binary.
#   tests/browser/run.sh target/release/wshub
set -euo pipefail
bin=$(realpath "$1")
cd "$(dirname "$0")"
./setup.sh
WSHUB_BIN="$bin" node --test chat.test.mjs
