#!/usr/bin/env bash
# The README's first command: a local devnet (regtest litecoind pair, a p2pool node and CPU
# miners on 127.0.0.1) that prints shares, blocks and who each block paid, until Ctrl-C.
# Extra arguments go to `p2pool devnet` (e.g. --miners 4 --blocks 10).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
exec cargo run --release -- devnet "$@"
