#!/usr/bin/env bash
# Packages every crate of the workspace and builds each package on its own
# (cargo package --workspace), as crates.io would receive them.
#
# cargo unpacks the packages of the workspace's own crates from a registry
# of its own under target/package, into $CARGO_HOME/registry/src, and does
# not unpack a name and version found there again: after a change, a second
# run on the same machine would verify against the first run's sources (the
# version stays 0.1.0). Those unpacked copies, and their cached archives,
# are removed first; crates.io's are not touched (no crate of this name is
# a dependency).
set -euo pipefail
cd "$(dirname "$0")/.."
registry="${CARGO_HOME:-$HOME/.cargo}/registry"
for crate in wshub wshub-proto wshub-hub wshub-bench wshub-cli wshub-testkit wshub-examples; do
  rm -rf "$registry"/src/*/"$crate"-[0-9]* "$registry"/cache/*/"$crate"-[0-9]*.crate
done
cargo package --workspace --allow-dirty
