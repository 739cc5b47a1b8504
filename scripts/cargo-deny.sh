#!/usr/bin/env bash
# Licences, bans (duplicate versions, wildcards) and sources of what the
# crates ship, by cargo-deny with deny.toml. Installs the pinned cargo-deny
# from crates.io when it is missing (some 5 minutes on two cores).
#   scripts/cargo-deny.sh install   # only the install
#   scripts/cargo-deny.sh           # install if needed, then check
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.20.2
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $version" ]; then
  echo "installing cargo-deny $version"
  cargo install --locked "cargo-deny@$version"
fi
[ "${1:-}" = install ] && exit 0
# Advisories need the RustSec database from GitHub, which CI cannot reach:
# see deny.toml.
cargo deny --locked check licenses bans sources
