#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and renders the demo: the NASA
# astronaut photo (public domain, assets/astronaut.png) dreamed with the
# default model into dream/demo/demo.mp4 on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
target/release/dreamfarm render --input assets/astronaut.png --name demo \
  --frames 72 --fps 24 --octaves 2 --iterations 4 --zoom-factor 1.03 --rotate 0.3 "$@"
