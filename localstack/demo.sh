#!/usr/bin/env bash
# Quick start: start the local emulator, build tap, deploy the stack into it, show its status.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
localstack/emulator.sh start
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
cargo build --quiet
./target/debug/tap --local deploy
./target/debug/tap --local status
