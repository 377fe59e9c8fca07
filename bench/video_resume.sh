#!/usr/bin/env bash
# What resuming and lengthening a long render cost in video encoding: a
# `--dry-run` render (camera path only, frames as fast as the host makes
# them) of FRAMES frames at SIZE is killed with -9 after KILL_AT frames, run
# again to its end, then run with MORE frames more (as `extend` does a
# cluster job); prints each run's wall and CPU time (ffmpeg's included) and
# its video's frame count. Give binaries to compare, alternating:
#
#     bench/video_resume.sh OLD_DREAMFARM NEW_DREAMFARM
#
# Environment: FRAMES (1200), KILL_AT (1100), MORE (100), SIZE (1280x720),
# ROUNDS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
frames=${FRAMES:-1200} kill_at=${KILL_AT:-1100} size=${SIZE:-1280x720}
export LD_LIBRARY_PATH="$PWD/.venv/libtorch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" RUST_BACKTRACE=0
work=$(mktemp -d)
# Frames in the video of the run just timed.
count() {
  ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames \
    -of csv=p=0 "$out-preview/r$i-preview.mp4"
}
trap 'rm -rf "$work"' EXIT
for round in $(seq "${ROUNDS:-2}"); do
  i=0
  for bin in "$@"; do
    i=$((i + 1))
    out="$work/r$i"
    rm -rf "$out-preview"
    render=("$bin" render --input assets/astronaut.png --dry-run --size "$size" --frames "$frames" --output "$out")
    "${render[@]}" >/dev/null 2>&1 &
    pid=$!
    while [ "$(find "$out-preview" -name '[0-9]*.png' 2>/dev/null | wc -l)" -lt "$kill_at" ]; do sleep 0.05; done
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true
    done_frames=$(find "$out-preview" -name '[0-9]*.png' | wc -l)
    /usr/bin/time -f "$bin round $round: killed at $done_frames frames; resumed run %e s wall, %U+%S CPU-s" \
      "${render[@]}" 2>&1 >/dev/null | grep round
    count
    longer=$((frames + ${MORE:-100}))
    render[8]=$longer
    /usr/bin/time -f "$bin round $round: $frames frames made $longer: %e s wall, %U+%S CPU-s" \
      "${render[@]}" 2>&1 >/dev/null | grep round
    count
  done
done
