#!/usr/bin/env bash
# Does the video encoder make the same file from the same frames every
# time, on a loaded machine? A resumed render's video is only the
# uninterrupted one's, byte for byte, if it does. Encodes one clip of
# moving SIZE frames (default 96x64, the size of the resume test in
# tests/render.rs, where x264 cuts one slice a frame; 256x192 gives three)
# ROUNDS times on each of 8 parallel lanes, with x264's frame threads (its
# default) and with the slice threads the coordinator uses (video.rs,
# `output_args`), and counts the distinct files each gave: 1 is
# deterministic. Frame threads with three threads (x264's own count on
# 2 cores), slice threads with video.rs's ENCODER_THREADS (8).
#
#     bench/encoder_determinism.sh [ROUNDS] [SIZE]   # default 25: 200 encodes each
#
# Measured on the 2-core VM (2026-12-03, ffmpeg 5.1), ROUNDS 50: frame
# threads 3 distinct files in 400 encodes (393, 5 and 2 of each); slice
# threads 1 distinct file in 400. At 256x192 with ROUNDS 25 (slice
# threads with 8 threads, three slices a frame; frame threads with 3):
# 1 distinct file in 200 for each.
set -euo pipefail
rounds=${1:-25}
size=${2:-96x64}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The frames of the resume test's second segment (500 to 799): the camera
# path alone, turning 3 degrees a frame (synthetic clips such as ffmpeg's
# testsrc2 did not show the difference).
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH="$PWD/.venv/libtorch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
target/release/dreamfarm render --input assets/astronaut.png --size "$size" --frames 800 \
  --zoom-factor 1 --rotate 3 --dry-run \
  --output "$work/turn" >/dev/null 2>&1
ffmpeg -v error -start_number 500 -i "$work/turn-preview/%06d.png" -frames:v 300 \
  -f rawvideo -pix_fmt rgb24 "$work/clip.rgb"

encode_all() {
  local name=$1 threads=$2; shift 2
  mkdir -p "$work/$name"
  for lane in $(seq 1 8); do
    (
      for round in $(seq 1 "$rounds"); do
        ffmpeg -y -loglevel error -f rawvideo -pix_fmt rgb24 -s "$size" -framerate 24 \
          -i "$work/clip.rgb" -c:v libx264 -pix_fmt yuv420p -crf 18 -threads "$threads" "$@" \
          -movflags +faststart "$work/$name/$lane-$round.mp4"
      done
    ) &
  done
  wait
  local distinct
  distinct=$(for f in "$work/$name"/*.mp4; do md5sum <"$f"; done | sort | uniq -c | sort -rn)
  printf '%s: %s distinct files in %s encodes\n%s\n' "$name" \
    "$(wc -l <<<"$distinct")" "$((8 * rounds))" "$distinct"
}

encode_all "frame threads" 3
encode_all "slice threads" 8 -x264-params sliced-threads=1
