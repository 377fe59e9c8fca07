#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs every test: unit tests,
# the reference-model tests against Keras/torchvision golden values, and the
# end-to-end tests that start real dreamfarm processes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Release profile: the setup already built it, and tests dream on real models.
cargo test --release --workspace
