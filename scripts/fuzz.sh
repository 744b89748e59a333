#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ one after another, each for N seconds
# (default 60), one libFuzzer process at a time (-jobs=1). Installs the
# nightly toolchain and cargo-fuzz when missing. Fails on the first crash,
# printing the input that caused it (kept under fuzz/artifacts/<target>/).
# See docs/testing.md.
#
#   scripts/fuzz.sh [--seconds N] [target...]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

all_targets=(resp_parse peer_wire wal_recover snapshot_decode rdb_restore command_apply)
seconds=60
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
        --seconds=*) seconds=${1#--seconds=}; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

# cargo-fuzz needs a nightly compiler (sanitizer coverage flags); a fresh
# machine may have stable alone.
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "== installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# The code is safe Rust (the decoders fuzzed here have no unsafe): the
# address sanitizer would find nothing more and halve the speed. Debug
# assertions and overflow checks stay on (cargo-fuzz's default).
fuzz_flags=(--fuzz-dir "$root/fuzz" --sanitizer none)

# New inputs go to a working corpus under fuzz/target (not committed); the
# committed seeds in fuzz/corpus/<target> are read only. -jobs=1 runs the
# fuzzer in one child process whose output goes to fuzz-0.log in the
# working directory.
status=0
for target in "${targets[@]}"; do
    work="$root/fuzz/target/fuzz-work/$target"
    artifacts="$root/fuzz/artifacts/$target"
    mkdir -p "$work/corpus" "$artifacts"
    rm -f "$work/fuzz-0.log"
    echo "== fuzzing $target for ${seconds}s"
    cargo +nightly fuzz build "${fuzz_flags[@]}" "$target"
    if (cd "$work" && cargo +nightly fuzz run "${fuzz_flags[@]}" "$target" \
            "$work/corpus" "$root/fuzz/corpus/$target" -- \
            -max_total_time="$seconds" -jobs=1 -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix="$artifacts/" -print_final_stats=1 >/dev/null 2>&1); then
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
            "$work/fuzz-0.log" | sed "s/^/  $target /" || true
    else
        status=1
        echo "!! $target found a failure; the end of its log ($work/fuzz-0.log):"
        tail -n 40 "$work/fuzz-0.log" || true
        crash=$(grep -oE "Test unit written to [^ ]+" "$work/fuzz-0.log" | tail -n 1 | sed 's/Test unit written to //')
        echo "!! crash artifact: ${crash:-(none written, see the log)}"
        echo "!! reproduce: cargo +nightly fuzz run --sanitizer none $target ${crash:-<artifact>}"
        break
    fi
    # wal_recover's scratch directory (named after its process, left behind
    # since libFuzzer exits without running destructors).
    if [ "$target" = wal_recover ]; then
        rm -rf /dev/shm/concord-fuzz-wal-* "${TMPDIR:-/tmp}"/concord-fuzz-wal-*
    fi
done
if [ "$status" -ne 0 ]; then
    exit "$status"
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without a finding"
