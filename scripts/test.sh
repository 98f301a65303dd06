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
echo "==> cargo test"
cargo test --workspace
