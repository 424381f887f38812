#!/usr/bin/env bash
# Reproduces every figure of BENCHMARKS.md: builds the benchmark program in release mode, then
# runs each part, printing the machine and each command before its output. Run it on an
# otherwise idle machine; `--quick` passes fewer trials / shorter rounds to every part.
#
#   bench/run.sh [--quick] [PART...]     PART: cluster churn codec rpc layers instr scrape net scale
#                                        scale-memory page instr-layer
#                                        (default: all)
#
# Needs taskset (util-linux) for `rpc`'s same-core placement, valgrind for `instr`, and root
# with iproute2 for `net` (network namespaces), chromium for `page`. `net` runs about 4 minutes per loss rate plus
# its quiet window (`--minutes`, 0.5 by default, 0.1 with --quick); `scale` needs many cores
# for its larger N (see bench/src/scale.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
parts=()
for a in "$@"; do
    case "$a" in
        --quick) quick=(--quick) ;;
        cluster | churn | codec | rpc | layers | instr | scrape | net | scale | scale-memory | page | instr-layer) parts+=("$a") ;;
        *) echo "usage: bench/run.sh [--quick] [cluster|churn|codec|rpc|layers|instr|scrape|net|scale|scale-memory|page|instr-layer]..." >&2; exit 2 ;;
    esac
done
[ ${#parts[@]} -gt 0 ] || parts=(cluster churn codec rpc layers instr instr-layer scrape net scale scale-memory page)

echo "# machine"
echo
echo '```'
uname -srm
echo "cores: $(nproc)"
grep -m1 'model name' /proc/cpuinfo || true
free -h | sed -n 2p
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
rustc --version
command -v valgrind >/dev/null && valgrind --version
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo '```'
echo

cargo build --release --locked -p easy-rpc-bench
bench=target/release/bench

for part in "${parts[@]}"; do
    args=("$part")
    case "$part" in
        scale-memory)
            args=(scale --procs 0 --nodes 100,250,500,1000 --transport memory --secs 5 --interval-per-node 4)
            [ ${#quick[@]} -gt 0 ] && args=(scale --procs 0 --nodes 50,100 --transport memory --interval-per-node 4)
            ;;
        page) [ ${#quick[@]} -gt 0 ] && args+=(--trials 3) || args+=(--trials 10) ;;
        instr-layer)
            args=(instr --layer concurrency)
            [ ${#quick[@]} -gt 0 ] && args+=(--calls 500)
            ;;
        # 30 rounds: single rounds spread from about 0.5x to 1.3x on a 2-core VM, and the
        # median of 10 still moves by up to 0.1 between runs.
        rpc) [ ${#quick[@]} -gt 0 ] && args+=("${quick[@]}") || args+=(--rounds 30) ;;
        cluster | churn | layers) args+=("${quick[@]}") ;;
        instr) [ ${#quick[@]} -gt 0 ] && args+=(--calls 500) ;;
        net) [ ${#quick[@]} -gt 0 ] && args+=(--trials 2 --minutes 0.1) ;;
        scale) [ ${#quick[@]} -gt 0 ] && args+=(--procs 10,25 --nodes 25,50 --trials 1) ;;
    esac
    echo
    echo "## \`bench ${args[*]}\` ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
    echo
    "$bench" "${args[@]}"
done
