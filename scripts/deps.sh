#!/usr/bin/env bash
# Installs the Debian packages the node and its tests need, if they are missing:
# litecoind (the coin daemon the tests and the devnet run), libleveldb-dev (the C++
# LevelDB the share store links against; see docs/STORE.md) and chromium (the headless
# browser tests/dashboard_chromium.rs drives the dashboard in).
set -euo pipefail
missing=()
command -v litecoind >/dev/null 2>&1 || missing+=(litecoind)
dpkg -s libleveldb-dev >/dev/null 2>&1 || missing+=(libleveldb-dev)
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]} from the Debian packages"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
