#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs every test: unit tests,
# the reference-model tests against Keras/torchvision golden values, and the
# end-to-end tests that start real dreamfarm processes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The end-to-end tests run a coordinator, workers and renders at once, each
# with libtorch's OpenMP threads, on a few cores: threads that spin while
# waiting for work (libgomp's default, right for one process on its own
# cores) then take the cores from the processes with work, and the cluster
# tests took 4x as long. The frames do not depend on it.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
# The code's own rules first (README, "Tests"): formatted, clippy-clean
# with libtorch and without it, and documented without broken links.
# Release profile, to reuse the setup's build scripts.
cargo fmt --all --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo clippy --release -p dreamfarm-coordinator --no-default-features --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --release --no-deps --workspace
# Release profile: the setup already built it, and tests dream on real models.
cargo test --release --workspace
