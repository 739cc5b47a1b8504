#!/usr/bin/env python3
"""Checks that the workspace's declared rust-version (its MSRV) is the truth.

This machine has one Rust toolchain, so the MSRV cannot be built here; what
can be checked is that nothing in Cargo.lock asks for a newer Rust:

- every workspace crate declares `rust-version` (from the workspace's);
- every package Cargo.lock resolves (dependencies of every kind, as
  `cargo metadata --locked` lists them) declares a rust-version no newer
  than the workspace's, or none.

Exits 1 listing each package that needs a newer Rust, 2 on a usage problem.

    python3 scripts/check-msrv.py
"""

import json
import subprocess
import sys


def version(text: str) -> tuple[int, ...]:
    """`1.88` and `1.88.0` alike: (1, 88, 0)."""
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main() -> int:
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    members = set(metadata["workspace_members"])
    packages = metadata["packages"]
    declared = {p["rust_version"] for p in packages if p["id"] in members}
    if None in declared or len(declared) != 1:
        print(f"workspace crates must all declare the workspace's rust-version; found {sorted(map(str, declared))}")
        return 1
    msrv = declared.pop()
    newer = sorted(
        (p for p in packages if p["id"] not in members and p.get("rust_version")
         and version(p["rust_version"]) > version(msrv)),
        key=lambda p: (version(p["rust_version"]), p["name"]),
    )
    if newer:
        print(f"rust-version {msrv} is not the truth: these locked packages need a newer Rust")
        for p in newer:
            print(f"  {p['name']} {p['version']}: rust-version {p['rust_version']}")
        print("raise rust-version in Cargo.toml, or pin the package to an older version (cargo update -p NAME --precise V)")
        return 1
    oldest_needed = max(
        (version(p["rust_version"]) for p in packages if p.get("rust_version") and p["id"] not in members),
        default=(0,),
    )
    print(f"rust-version {msrv}: no locked package needs a newer Rust "
          f"(the newest any asks for is {'.'.join(map(str, oldest_needed))}; {len(packages)} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
