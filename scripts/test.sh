#!/usr/bin/env bash
# The whole wshub test suite: the one command in README.md, and what CI runs.
#
#   ./scripts/test.sh
#
# Steps: formatting and lints, unit/property/integration/doc tests, the sans-IO
# check, the MSRV against the lockfile, the API docs, crate packaging,
# cargo-deny (licences, duplicates, sources), builds
# without default features, fuzz targets build and run, Autobahn TestSuite in both roles (via kosoku),
# interop with Node `ws` and Python `websockets`, and the chat page in a real
# Chromium. Needs cargo, python3, node/npm, redis-server (the Redis engine's
# tests start their own), and chromium (tests/browser/setup.sh installs it with
# apt when missing).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# Build artifacts sized for a CI disk: no incremental caches (about 5 GB of
# target/ that a one-shot run never reuses) and line tables only in debug
# builds (backtraces keep file and line; the ~60 test binaries shrink to a
# fraction). A full run needed 6.2 GB under target/ and fuzz/target/ on
# 2026-12-06 (about 20 GB before).
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_DEV_DEBUG=line-tables-only

passed=0
failed=0
failures=()
step() {
  local name=$1
  shift
  echo
  echo "=== $name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "--- ok: $name ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "--- FAILED: $name ($((SECONDS - start)) s)"
  fi
}

no_tokio_in_proto() {
  local tree
  tree=$(cargo tree -p wshub-proto -e normal --prefix none) || return 1
  if grep -qE '^(tokio|mio|futures)' <<<"$tree"; then
    echo "wshub-proto must stay sans-IO, but depends on:"
    grep -E '^(tokio|mio|futures)' <<<"$tree"
    return 1
  fi
  echo "wshub-proto depends on no async runtime"
}

# rustls with the ring provider only (wss://, rediss://): aws-lc-rs needs cmake
# and clang to build, and nothing links OpenSSL.
tls_on_ring_only() {
  local crate found=0
  for crate in aws-lc-rs aws-lc-sys openssl-sys; do
    if cargo tree --workspace -i "$crate" >/dev/null 2>&1; then
      echo "$crate is in the dependency tree:"
      cargo tree --workspace -e features -i "$crate"
      found=1
    fi
  done
  [ "$found" = 0 ] && echo "no aws-lc-rs, aws-lc-sys or openssl-sys in the tree"
}

step "cargo fmt" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
step "cargo test" cargo test --workspace
step "sans-IO protocol crate" no_tokio_in_proto
# The declared rust-version is the truth: nothing locked needs a newer Rust.
step "MSRV (lockfile)" python3 scripts/check-msrv.py
# The API docs build without a warning (broken or private links), as on a
# stable toolchain and as docs.rs builds them (nightly features, --cfg docsrs).
step "docs" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features
step "docs (docs.rs)" env RUSTC_BOOTSTRAP=1 RUSTDOCFLAGS="--cfg docsrs -D warnings" \
  cargo doc --workspace --no-deps --all-features
# Every crate packages and its package builds on its own.
step "cargo package" scripts/package.sh
# Licences, duplicate versions and sources of what ships (deny.toml);
# installs the pinned cargo-deny when missing.
step "cargo deny" scripts/cargo-deny.sh
step "TLS on ring only" tls_on_ring_only
# The feature-off paths (no permessage-deflate, no TLS) are compiled too.
step "no default features: wshub-proto" cargo check -p wshub-proto --no-default-features --all-targets
step "no default features: workspace" cargo check --workspace --no-default-features
# wshub alone without `rustls`: the hub turns it on for the whole workspace.
step "no default features: wshub" cargo clippy -p wshub --no-default-features --all-targets -- -D warnings
# The TLS flavours without the default roots: Mozilla's roots compiled in,
# and TLS with no roots at all (wss:// needs a ClientConfig).
step "wshub with webpki roots" cargo test -p wshub --no-default-features --features rustls-webpki-roots --lib
step "wshub with rustls alone" cargo test -p wshub --no-default-features --features rustls --lib
step "release build" cargo build --release -p wshub-cli -p wshub-examples --bins --examples
step "fuzz targets build" cargo build --manifest-path fuzz/Cargo.toml --bins
# Every target fuzzed for 20 s (about 4 minutes with the build): a crash fails the step.
step "fuzz" fuzz/run.sh 20
step "autobahn" autobahn/run.sh "$root/target/release/wshub" "$root/target/release/examples/autobahn_client"
step "interop" tests/interop/run.sh "$root/target/release/wshub"
step "browser" tests/browser/run.sh "$root/target/release/wshub"

echo
if [ "$failed" -gt 0 ]; then
  echo "failed steps: ${failures[*]}"
fi
echo "test steps: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
