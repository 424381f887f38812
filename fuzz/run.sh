#!/usr/bin/env bash
# Builds every fuzz target (release, with debug assertions) and runs each in turn for a number
# of executions, starting from the committed seeds (fuzz/seeds/<target>) and growing a corpus
# (fuzz/corpus/<target>, not committed); then prints a Markdown table: target, executions,
# time, execs/s, crashes. Exits non-zero if a target crashed (the input is in
# fuzz/artifacts/<target>/, the log in fuzz/logs/<target>.log).
#
#   fuzz/run.sh                     every target, 10,000,000 executions each
#   fuzz/run.sh -runs=100000        every target, 100,000 executions each
#   fuzz/run.sh --smoke             every target for a few seconds (SMOKE_SECONDS, default 5)
#   fuzz/run.sh rpc_frame config    only these targets
#
# Needs a nightly toolchain (FUZZ_TOOLCHAIN, default nightly) and cargo-fuzz
# (`cargo install cargo-fuzz --locked --version 0.13.2`). SANITIZER=address builds with
# AddressSanitizer (2-3 times slower; the default, none, relies on Rust's own checks: every
# crate of the workspace forbids unsafe code).
set -euo pipefail
cd "$(dirname "$0")"

all=(gossip_packet gossip_message handshake_server handshake_client handshake_server_key
    handshake_client_key rpc_frame config)
runs=10000000
smoke=0
targets=()
for arg in "$@"; do
    case "$arg" in
        --smoke) smoke=1 ;;
        -runs=*) runs="${arg#-runs=}" ;;
        -h | --help)
            sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        -*)
            echo "run.sh: unknown option $arg (see --help)" >&2
            exit 2
            ;;
        *)
            if [[ " ${all[*]} " != *" $arg "* ]]; then
                echo "run.sh: unknown target $arg (targets: ${all[*]})" >&2
                exit 2
            fi
            targets+=("$arg")
            ;;
    esac
done
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=("${all[@]}")
fi

# The longest input of each target: a datagram, a handshake and what follows, frames.
max_len() {
    case "$1" in
        gossip_packet) echo 8192 ;;
        gossip_message) echo 8192 ;;
        handshake_server | handshake_client | handshake_server_key | handshake_client_key) echo 4096 ;;
        rpc_frame) echo 8192 ;;
        config) echo 2048 ;;
    esac
}

toolchain="${FUZZ_TOOLCHAIN:-nightly}"
# Every target is built, whichever run: the smoke run keeps them all building.
cargo "+$toolchain" fuzz build -O -a -s "${SANITIZER:-none}"
host="$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')"
bin_dir="target/$host/release"

mkdir -p logs
rows=()
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(find "artifacts/$t" -type f | wc -l)
    if [[ $smoke -eq 1 ]]; then
        limit=(-max_total_time="${SMOKE_SECONDS:-5}")
    else
        limit=(-runs="$runs")
    fi
    echo "fuzzing $t (${limit[*]}) ..." >&2
    start=$(date +%s.%N)
    set +e
    "$bin_dir/$t" "corpus/$t" "seeds/$t" "${limit[@]}" -max_len="$(max_len "$t")" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1
    status=$?
    set -e
    end=$(date +%s.%N)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)
    execs=${execs:-0}
    crashes=$(($(find "artifacts/$t" -type f | wc -l) - before))
    if [[ $status -ne 0 && $crashes -eq 0 ]]; then
        crashes="failed (exit $status, see fuzz/logs/$t.log)"
    fi
    if [[ $status -ne 0 ]]; then
        failed=1
    fi
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
    rate=$(awk -v n="$execs" -v a="$start" -v b="$end" 'BEGIN { d = b - a; printf "%.0f", (d > 0 ? n / d : 0) }')
    rows+=("| $t | $execs | ${secs} s | $rate | $crashes |")
done

echo
echo "| target | executions | time | execs/s | crashes |"
echo "| --- | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
exit $failed
