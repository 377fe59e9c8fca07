#!/usr/bin/env bash
# The speed issue's GPU checks in one device run: seconds per frame of the
# default recipe at 1080p and 4K on the CPU, on CUDA in f32 and on CUDA in
# bf16 mixed precision, the GPU's utilisation during each CUDA render
# (nvidia-smi sampled every 200 ms), and frame 0 of the CPU and CUDA 1080p
# renders for comparing here (mean absolute difference, target <= 1/255).
# Runs named with a "+bN" suffix dream small tiles (--parallelism 32) in
# batches of N (--tile-batch N): "+b1" against "+b8" is what batching
# alike tiles into one pass is worth on the GPU, and "cuda:0,cuda:0-f32+b1"
# (two embedded workers sharing the GPU) what running two tiles at once is.
#
# Here (builds, strips the binary, copies the weights; about 40 MB):
#     bench/gpu.sh prepare
# On the device machine (its own torch 2.11 provides libtorch and CUDA):
#     run(command="bench/gpu.sh run", carry=["bench/.gpu"], timeout_s=540)
# Back here, with the files it returned:
#     bench/gpu.sh compare FILES_AT
#
# GPU_BENCH_SIZES (default "1920x1080,3840x2160"), GPU_BENCH_FRAMES
# (default 3: the first is warm-up) and GPU_BENCH_DEVICES (default
# "cpu cuda-f32 cuda-bf16 cuda-f32+b1 cuda-f32+b8 cuda:0,cuda:0-f32+b1")
# change what runs;
# renders go to /tmp/gpu-bench, and the report and frames to compare to
# $OUT (the device's return folder; default /tmp/gpu-bench/out); `GPU_BENCH_DEVICES=cpu GPU_BENCH_SIZES=256x144 bench/gpu.sh run`
# checks the script on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
carry=bench/.gpu

prepare() {
    cargo build --release -p dreamfarm-coordinator
    mkdir -p "$carry/models"
    strip -o "$carry/dreamfarm" target/release/dreamfarm
    cp "${DREAMFARM_MODELS:-$HOME/.cache/dreamfarm/models}/inception-v3.safetensors" "$carry/models/"
    grep -qx "/$carry/" .git/info/exclude 2>/dev/null || echo "/$carry/" >>.git/info/exclude
    du -sh "$carry"
}

# Seconds per frame after the first, median, from a render's log.
median_seconds() {
    grep -o 'frame written frame=[0-9]* of=[0-9]* seconds="[0-9.]*"' "$1" |
        sed 's/.*seconds="\([0-9.]*\)"/\1/' | tail -n +2 | sort -n |
        awk '{v[NR]=$1} END {if (NR == 0) print "n/a"; else print (NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'
}

run() {
    local out=/tmp/gpu-bench bin=$PWD/$carry/dreamfarm
    local back=${OUT:-$out/out}
    mkdir -p "$out" "$back"
    if [ -x "$bin" ]; then
        # The device's own torch: the binary was built against the same
        # version, and its libraries are found through this path.
        local torch
        torch=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
        export LD_LIBRARY_PATH="$torch/lib:$(find "$(dirname "$torch")/nvidia" -maxdepth 3 -name lib -type d 2>/dev/null | tr '\n' ':')${LD_LIBRARY_PATH:-}"
        export DREAMFARM_MODELS=$PWD/$carry/models
        if ldd "$bin" | grep 'not found'; then
            echo "the binary misses the libraries above on this machine" >&2
            exit 1
        fi
    else
        bin=$PWD/target/release/dreamfarm
    fi
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
    local report=$back/report.txt
    echo "size device precision tiles s/frame gpu-util%" >"$report"
    for size in $(echo "${GPU_BENCH_SIZES:-1920x1080,3840x2160}" | tr ',' ' '); do
        for run in ${GPU_BENCH_DEVICES:-cpu cuda-f32 cuda-bf16 cuda-f32+b1 cuda-f32+b8 cuda:0,cuda:0-f32+b1}; do
            local spec=${run%+b*} tiles=default
            local -a batch=()
            if [ "$spec" != "$run" ]; then
                batch=(--parallelism 32 --tile-batch "${run##*+b}")
                tiles="parallelism-32-batch-${run##*+b}"
            fi
            local device=${spec%%-*} precision=f32
            [ "$spec" != "$device" ] && precision=${spec#*-}
            local name=$size-$run frames=${GPU_BENCH_FRAMES:-3}
            # One CPU frame past the warm-up at 4K: minutes, not seconds.
            [ "$device" = cpu ] && frames=2
            local util=$out/$name.util sampler=
            if [[ $device == cuda* ]]; then
                nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 >"$util" &
                sampler=$!
            fi
            rm -rf "${out:?}/$name" # a render resumes what it finds
            "$bin" render --input assets/astronaut.png --size "$size" --frames "$frames" \
                --device "$device" --precision "$precision" "${batch[@]}" --output "$out/$name" \
                >"$out/$name.log" 2>&1 || { tail -5 "$out/$name.log"; exit 1; }
            [ -n "$sampler" ] && kill "$sampler"
            local busy=n/a
            [ -s "$util" ] && busy=$(awk '{s+=$1} END {printf "%.0f", s/NR}' "$util")
            echo "$size $device $precision $tiles $(median_seconds "$out/$name.log") $busy" | tee -a "$report"
        done
    done
    # Frame 0 of the CPU and CUDA renders of the first size, for `compare`.
    local first=${GPU_BENCH_SIZES:-1920x1080}
    first=${first%%,*}
    for run in ${GPU_BENCH_DEVICES:-cpu cuda-f32 cuda-bf16}; do
        cp "$out/$first-$run/000000.png" "$back/frame0-$run.png" 2>/dev/null || true
    done
}

compare() {
    .venv/bin/python - "$1" <<'EOF'
import sys, pathlib
import numpy as np
from PIL import Image
d = pathlib.Path(sys.argv[1])
cat = (d / "report.txt")
print(cat.read_text() if cat.exists() else "no report.txt")
ref = d / "frame0-cpu.png"
a = np.asarray(Image.open(ref)).astype(float)
for other in sorted(d.glob("frame0-cuda-*.png")):
    b = np.asarray(Image.open(other)).astype(float)
    mad = np.abs(a - b).mean() / 255
    print(f"{other.name} vs CPU: mean absolute difference {mad:.5f} (target <= {1/255:.5f})")
EOF
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    compare) compare "${2:?the folder the device run returned}" ;;
    *) echo "usage: bench/gpu.sh prepare | run | compare FOLDER" >&2; exit 2 ;;
esac
