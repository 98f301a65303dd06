#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo-fuzz on the nightly toolchain) for SECONDS each
# (default 30) on a temporary copy of its committed seed corpus, so nothing is written into
# the repository; fails on the first crash, printing the input. docs/FUZZING.md says what
# each target checks and how to run them for longer.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# FUZZ_TARGET_DIR (default target/fuzz) holds the fuzz build.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-30}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(share_decode p2p_codec stratum_line rpc_request aux_block)
fi
target_dir="${FUZZ_TARGET_DIR:-$root/target/fuzz}"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: cargo-fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked
fi

fuzz() {
    # No sanitizer: the code under test is safe Rust (panics and overflows are what is
    # looked for, with debug assertions on), and ASan would halve the executions.
    cargo +nightly fuzz "$1" --fuzz-dir "$root/fuzz" --target-dir "$target_dir" \
        --sanitizer none "${@:2}"
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fuzz build
for t in "${targets[@]}"; do
    mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
    cp -r "$root/fuzz/corpus/$t/." "$work/$t/corpus/"
    echo "fuzz.sh: $t for ${seconds}s"
    if ! fuzz run "$t" "$work/$t/corpus" -- -max_total_time="$seconds" \
        -artifact_prefix="$work/$t/artifacts/" -print_final_stats=1 2>"$work/$t/log"; then
        tail -40 "$work/$t/log" >&2
        for a in "$work/$t/artifacts/"*; do
            [ -e "$a" ] || continue
            echo "fuzz.sh: $t crashed on $(basename "$a") (base64):" >&2
            base64 "$a" >&2
        done
        exit 1
    fi
    grep -E '^#[0-9]+ +DONE|stat::number_of_executed_units' "$work/$t/log" || tail -3 "$work/$t/log"
done
echo "fuzz.sh: ${#targets[@]} targets, ${seconds}s each, no crash"
