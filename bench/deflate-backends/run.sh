#!/usr/bin/env bash
# Builds and runs the deflate backend bench once per backend, pinned to one core.
#   bench/deflate-backends/run.sh                 # all backends
#   BACKENDS="zlib-rs zlib" BENCH_SECS=0.2 ./run.sh   # a subset, shorter rows
set -uo pipefail
cd "$(dirname "$0")"
CORE=${CORE:-1}
BACKENDS=${BACKENDS:-"zlib-rs zlib-rs-std zlib zlib-ng miniz"}

echo "machine: $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//');" \
    "$(rustc -V); $(date -u '+%Y-%m-%d %H:%M UTC'); pinned: taskset -c $CORE"

for backend in $BACKENDS; do
    echo
    echo "=== $backend ===  (load average: $(cut -d" " -f1-3 /proc/loadavg))"
    features=(--no-default-features --features "$backend")
    # Build unpinned (zlib-ng's cmake build is slow on one core), then run pinned.
    if ! cargo build --release "${features[@]}" 2>"target-build-$backend.log"; then
        echo "BUILD FAILED for $backend:"
        grep -E '^(error|warning: .*failed)|CMake Error|not found' "target-build-$backend.log" | head -20
        continue
    fi
    rm -f "target-build-$backend.log"
    echo "crates: $(cargo tree "${features[@]}" -e normal --prefix none | sort -u | tr '\n' ' ')"
    if [ "$backend" = zlib ]; then
        echo "linked: $(ldd target/release/deflate-backends | grep -o 'libz\.so[^ ]* => [^ ]*')," \
            "zlib1g $(dpkg-query -W -f='${Version}' zlib1g 2>/dev/null)"
    fi
    taskset -c "$CORE" cargo run -q --release "${features[@]}"
done
