#!/usr/bin/env bash
# The instruction-count regression guard on a release build: builds the benchmark program in
# release mode and runs `bench guard`, which fails (exit status 1) when easy-rpc's client
# instructions per call (or server instructions per request) exceed the figures recorded in
# bench/guard-release.toml by more than its margins. Needs valgrind. Extra arguments go to
# `bench guard` (e.g. `--update`). CI runs the same guard on the debug build, against
# bench/guard-debug.toml, in its tests (bench/tests/guard.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "bench/guard.sh needs valgrind" >&2; exit 2; }
cargo build --release --locked -p easy-rpc-bench
target/release/bench guard "$@"
