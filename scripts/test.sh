#!/usr/bin/env bash
# The project's test command (README "Quick start"; CI's .ci/run calls it).
# On a fresh Debian machine it installs what the tests need, then checks formatting and
# lints and runs the whole test suite, including the tests against a real litecoind.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
litecoind -version | head -n 1

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
if [ -n "${DOGECOIND:-}" ] || command -v dogecoind >/dev/null 2>&1; then
    echo "==> dogecoind found: the merged-mining tests run against it"
else
    echo "==> dogecoind not found (\$DOGECOIND or PATH): the merged-mining tests SKIP" \
        "(Dogecoin Core is not a Debian package; tests/common/dogecoind.rs)"
fi
echo "==> cargo test"
cargo test --workspace
# A short run of every fuzz target (docs/FUZZING.md): 30 s each on the nightly toolchain
# cargo-fuzz needs. Without nightly it says so and goes on (the suite above has run).
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "==> fuzz targets, 30 s each"
    bash scripts/fuzz.sh 30
else
    echo "==> fuzz targets SKIPPED: no nightly toolchain here (rustup toolchain install nightly)"
fi
