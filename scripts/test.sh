#!/usr/bin/env bash
# The project's test command (README "Quick start"; CI's .ci/run calls it).
# On a fresh Debian machine it installs what the tests need, then checks formatting and
# lints and runs the whole test suite, including the tests against a real litecoind.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v litecoind >/dev/null 2>&1; then
    echo "==> installing litecoind from the Debian packages"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq litecoind >/dev/null
fi
litecoind -version | head -n 1

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test"
cargo test --workspace
