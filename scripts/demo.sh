#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and renders the demo: the NASA
# astronaut photo (public domain, assets/astronaut.png) dreamed with the
# default model into dream/demo/demo.mp4 on this machine. Its settings are
# scheduled: the zoom eases in, the camera sways, mixed3 cross-fades into
# mixed5 halfway, and LAB colour coherence keeps frame 0's colours. A strip
# of six of its frames goes to dream/demo/strip.png.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
target/release/dreamfarm render --input assets/astronaut.png --name demo \
  --frames 72 --fps 24 --octaves 2 --iterations 4 \
  --zoom-factor "0:(1.0), 24:(1.04)" --rotate "0:(0.6*sin(2*pi*t/72))" \
  --layers mixed3,mixed5 \
  --layer-weight "mixed3=0:(1), 30:(1), 42:(0)" \
  --layer-weight "mixed5=0:(0), 30:(0), 42:(1)" \
  --color-coherence lab --sharpen 0.3 "$@"
ffmpeg -loglevel error -y -i dream/demo/%06d.png \
  -vf "select='not(mod(n\,14))',scale=192:-1,tile=6x1:padding=4" \
  -frames:v 1 dream/demo/strip.png
echo dream/demo/strip.png
