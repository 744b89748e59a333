#!/usr/bin/env bash
# The test command of the README: unit, golden, property and integration
# tests (the integration tests start real concord processes on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --bin concord
cargo test --no-fail-fast "$@"
