#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time, one after another.
#
#   fuzz/run.sh [SECONDS]     # per target; default 20 (what scripts/test.sh runs)
#
# Installs the pinned cargo-fuzz from crates.io when it is missing (about
# 2 minutes on 2 cores), builds the targets once (with AddressSanitizer, on
# the stable toolchain through RUSTC_BOOTSTRAP=1), then fuzzes each target
# for SECONDS from the seeds in fuzz/seeds/<target>/ where there are some,
# with the handshake dictionary for the handshake targets. An input that
# panics, breaks a target's assertion, allocates past 2 GiB
# (-rss_limit_mb) or runs over 10 s (-timeout) is a finding: the step fails
# and prints the path of the reproducer in fuzz/artifacts/<target>/.
# Prints each target's execution count (libFuzzer's final stats).
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
cargo_fuzz_version=0.13.2
export RUSTC_BOOTSTRAP=1

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  echo "installing cargo-fuzz $cargo_fuzz_version"
  cargo install --locked "cargo-fuzz@$cargo_fuzz_version" || exit 1
fi

targets=$(cargo fuzz list) || exit 1
cargo fuzz build || exit 1

status=0
for target in $targets; do
  corpus=fuzz/corpus/$target
  mkdir -p "$corpus"
  inputs=("$corpus")
  [ -d "fuzz/seeds/$target" ] && inputs+=("fuzz/seeds/$target")
  options=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
  case $target in
    handshake_*) options+=(-dict=fuzz/dicts/handshake.dict) ;;
  esac
  log=$(mktemp)
  echo "--- $target: ${seconds} s"
  if cargo fuzz run "$target" "${inputs[@]}" -- "${options[@]}" >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    echo "$target: ${runs:-?} runs, no finding"
  else
    status=1
    tail -n 60 "$log"
    echo "$target: FAILED (a finding, or the build error above)"
    # libFuzzer names the reproducer: "Test unit written to fuzz/artifacts/...".
    grep -o 'Test unit written to .*' "$log" | sed 's/^Test unit written to /  reproducer: /'
    echo "  replay: RUSTC_BOOTSTRAP=1 cargo fuzz run $target fuzz/artifacts/$target/<file>"
  fi
  rm -f "$log"
done
exit "$status"
