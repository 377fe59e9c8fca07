#!/usr/bin/env bash
# The speed issue's GPU checks in one device run: seconds per frame of the
# default recipe at 1080p and 4K on the CPU, on CUDA in f32 and on CUDA in
# bf16 mixed precision, the GPU's utilisation during each CUDA render
# (nvidia-smi sampled every 200 ms), and frame 0 of the CPU and CUDA 1080p
# renders for comparing here (mean absolute difference, target <= 1/255).
# Runs named with a "+bN" suffix dream small tiles (--parallelism 32) in
# batches of N (--tile-batch N): "+b1" against "+b8" is what batching
# alike tiles into one pass is worth on the GPU, and "cuda:0,cuda:0-f32+b1"
# (two embedded workers sharing the GPU) what running two tiles at once is;
# "+tN" renders with N-pixel tiles (--tile-size N), "+mNAME" with the
# built-in model NAME (MobileNetV2's depthwise convolutions are where cuDNN
# has the fewest deterministic algorithms), "+rN" is the N-th
# render of the same (its frames against the first's: are CUDA frames the
# same bits from one run to the next, as a farm's resumes and retries
# need?), and "py-cuda", "py-cuda-tf32", "py-cuda-nocudnn", "py-cuda-det"
# and "py-cpu" runs are the same recipe in plain PyTorch
# (bench/dream_recipe.py).
#
# Here (builds, strips the binary, copies the weights; about 55 MB):
#     bench/gpu.sh prepare
# On the device machine (its own torch 2.11 provides libtorch and CUDA):
#     run(command="bench/gpu.sh run", carry=["bench/.gpu"], timeout_s=540)
# (on an H200 about 5 minutes; the machine's start about 30 s more)
# The seam test on CUDA, f32 and bf16 (about a minute):
#     run(command="bench/gpu.sh seams", carry=["bench/.gpu"], timeout_s=300)
# Back here, with the files it returned:
#     bench/gpu.sh compare FILES_AT
#
# GPU_BENCH_RUNS (SIZE/RUN words; the default runs what matters most
# first, so a run cut short still answers the main questions),
# GPU_BENCH_FRAMES (default 4: the first is warm-up; CPU renders 2) and
# GPU_BENCH_RUN_LIMIT (seconds per render, default 200) and GPU_BENCH_ARGS
# (render flags added to every dreamfarm run) change what runs.
# Renders go to /tmp/gpu-bench, and the report, frames 0 of the 1080p
# renders and the logs to $OUT (the device's return folder; default
# /tmp/gpu-bench/out). `GPU_BENCH_RUNS="256x144/cpu" bench/gpu.sh run`
# checks the script on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
carry=bench/.gpu

prepare() {
    cargo build --release -p dreamfarm-coordinator
    mkdir -p "$carry/models"
    strip -o "$carry/dreamfarm" target/release/dreamfarm
    local model
    for model in inception-v3 mobilenet-v2; do
        cp "${DREAMFARM_MODELS:-$HOME/.cache/dreamfarm/models}/$model.safetensors" "$carry/models/"
    done
    # The seam test (tests/render.rs), for `seams`: it runs the binary above.
    local tests
    tests=$(cargo test --release -p dreamfarm-tests --test render --no-run --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
    strip -o "$carry/render-tests" "$tests"
    pwd >"$carry/built-in"
    grep -qx "/$carry/" .git/info/exclude 2>/dev/null || echo "/$carry/" >>.git/info/exclude
    du -sh "$carry"
}

# Seconds per frame after the first, median, from a render's log.
median_seconds() {
    grep -o 'frame written frame=[0-9]* of=[0-9]* seconds="[0-9.]*"' "$1" |
        sed 's/.*seconds="\([0-9.]*\)"/\1/' | tail -n +2 | sort -n |
        awk '{v[NR]=$1} END {if (NR == 0) print "n/a"; else print (NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'
}

# GPU utilisation (mean %, over the samples from the first busy one to the
# last) and peak memory (MiB) from an nvidia-smi log: the model's loading
# before and the process's exit after are not the render's.
gpu_use() {
    if [ -s "$1" ]; then
        awk -F', ' '{u[NR]=$1; if ($2>m) m=$2; if ($1>0) {if (!f) f=NR; l=NR}}
            END {s=0; for (i=f; i<=l; i++) s+=u[i]; printf "%.0f %s", (l ? s/(l-f+1) : 0), m}' "$1"
    else
        echo "n/a n/a"
    fi
}

# Starts sampling the GPU into $1; prints the sampler's pid.
sample_gpu() {
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 200 >"$1" 2>/dev/null &
    echo $!
}

# One render: `size/run` as in GPU_BENCH_RUNS. Appends its line to the
# report; a render that fails is reported and the next one goes on.
render_one() {
    local size=${1%%/*} run=${1#*/}
    local spec=${run%%+*} tiles=default
    local -a extra=() more=()
    local word
    for word in $(echo "${run#"$spec"}" | tr '+' ' '); do
        case $word in
        b*) extra+=(--parallelism 32 --tile-batch "${word#b}") tiles="parallelism-32-batch-${word#b}" ;;
        t*) extra+=(--tile-size "${word#t}") tiles="tile-${word#t}" ;;
        m*) extra+=(--model "${word#m}") tiles="$tiles-model-${word#m}" ;;
        r*) tiles="$tiles-run-${word#r}" ;;
        esac
    done
    local device=${spec%%-*} precision=f32
    [ "$spec" != "$device" ] && precision=${spec#*-}
    local name=$size-$run frames=${GPU_BENCH_FRAMES:-4}
    # One CPU frame past the warm-up: at 4K, minutes rather than seconds.
    [ "$device" = cpu ] && [ "$frames" -gt 2 ] && frames=2
    # GPU_BENCH_ARGS: more render flags for every run (a shorter recipe).
    read -r -a more <<<"${GPU_BENCH_ARGS:-}"
    extra+=("${more[@]}")
    local util=$out/$name.util sampler=
    [[ $device == cuda* ]] && sampler=$(sample_gpu "$util")
    rm -rf "${out:?}/$name" # a render resumes what it finds
    local status=ok
    # The video needs ffmpeg, which the device machine may lack: the frames
    # (and their times) are what is measured, so only a render that wrote
    # fewer frames than asked has failed.
    timeout "${GPU_BENCH_RUN_LIMIT:-200}" "$bin" render --input assets/astronaut.png --size "$size" \
        --frames "$frames" --device "$device" --precision "$precision" "${extra[@]}" \
        --output "$out/$name" >"$out/$name.log" 2>&1 || true
    [ -n "$sampler" ] && { kill "$sampler" 2>/dev/null || true; }
    local written
    written=$(grep -c 'frame written' "$out/$name.log" || true)
    if [ "$written" -lt "$frames" ]; then
        status="failed($written/$frames)"
        tail -3 "$out/$name.log"
    fi
    echo "$size $device $precision $tiles $(median_seconds "$out/$name.log") $(gpu_use "$util") $status" | tee -a "$report"
    # Frames 0 of the default tiles, for `compare`.
    local first=${run%%+r*}
    if [ "$size" = 1920x1080 ] && [[ $first != *+b* && $first != *+t* ]]; then
        cp "$out/$name/000000.png" "$back/frame0-$run.png" 2>/dev/null || true
    fi
}

# The same recipe in plain PyTorch (bench/dream_recipe.py): `size/py-cuda`
# on the GPU in IEEE f32 as dreamfarm's f32, `size/py-cuda-tf32` with
# PyTorch's default TF32 convolutions, `size/py-cuda-nocudnn` with
# PyTorch's own CUDA convolutions instead of cuDNN's, `size/py-cuda-det`
# with cuDNN's deterministic algorithms only, as dreamfarm runs them (what
# repeatable frames cost), `size/py-cpu` on the CPU. The
# --octaves and --iterations of GPU_BENCH_ARGS apply (the same flags), so
# plain PyTorch's CPU and CUDA frames can be compared as dreamfarm's are.
python_one() {
    local size=${1%%/*} run=${1#*/}
    local device=${run#py-}
    local -a flags=()
    local precision=f32
    if [[ $device == *-tf32 ]]; then
        device=${device%-tf32} precision=tf32 flags=(--tf32)
    elif [[ $device == *-nocudnn ]]; then
        device=${device%-nocudnn} precision=f32-no-cudnn flags=(--no-cudnn)
    elif [[ $device == *-det ]]; then
        device=${device%-det} precision=f32-deterministic flags=(--deterministic)
    fi
    read -r -a more <<<"${GPU_BENCH_ARGS:-}"
    flags+=("${more[@]}")
    local name=$size-$run util=$out/$size-$run.util sampler=
    [ "$device" = cuda ] && sampler=$(sample_gpu "$util")
    timeout "${GPU_BENCH_RUN_LIMIT:-200}" python3 bench/dream_recipe.py --weights "$DREAMFARM_MODELS/inception-v3.safetensors" \
        --input assets/astronaut.png --size "$size" --frames "${GPU_BENCH_FRAMES:-4}" --device "$device" "${flags[@]}" \
        --out "$out/$name" >"$out/$name.json" 2>"$out/$name.log" || tail -3 "$out/$name.log"
    [ -n "$sampler" ] && { kill "$sampler" 2>/dev/null || true; }
    local seconds
    seconds=$(python3 -c 'import json, statistics, sys; print("%.2f" % statistics.median(json.load(open(sys.argv[1]))["frame_s"][1:]))' \
        "$out/$name.json" 2>/dev/null || echo n/a)
    echo "$size plain-pytorch-$device $precision default $seconds $(gpu_use "$util") ok" | tee -a "$report"
    if [ "$size" = 1920x1080 ]; then
        cp "$out/$name/frame_00000.png" "$back/frame0-$run.png" 2>/dev/null || true
    fi
}

# The device's own torch for the carried binary: it was built against the
# same version, and its libraries are found through this path.
libraries() {
    local torch
    torch=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
    export LD_LIBRARY_PATH="$torch/lib:$(find "$(dirname "$torch")/nvidia" -maxdepth 3 -name lib -type d 2>/dev/null | tr '\n' ':')${LD_LIBRARY_PATH:-}"
    export DREAMFARM_MODELS=$PWD/$carry/models
    if ldd "$carry/dreamfarm" | grep 'not found'; then
        echo "the binary misses the libraries above on this machine" >&2
        exit 1
    fi
}

run() {
    out=/tmp/gpu-bench bin=$PWD/$carry/dreamfarm back=${OUT:-/tmp/gpu-bench/out}
    mkdir -p "$out" "$back"
    if [ -x "$bin" ]; then
        libraries
    else
        bin=$PWD/target/release/dreamfarm
    fi
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
    # A CUDA render of one small frame first: if the binary cannot reach
    # the GPU, say why at once rather than after minutes of CPU renders.
    if [[ ${GPU_BENCH_RUNS:-cuda} == *cuda* ]] &&
        ! "$bin" render --input assets/astronaut.png --size 128x128 --frames 1 --device cuda:0 \
            --output "$out/probe" >"$back/probe.log" 2>&1 &&
        [ ! -s "$out/probe/000000.png" ]; then
        cat "$back/probe.log"
        python3 -c 'import torch; print("python torch", torch.__version__, torch.cuda.is_available())'
        exit 3
    fi
    report=$back/report.txt
    echo "size device precision tiles s/frame gpu-util% gpu-MiB status" >"$report"
    export DREAMFARM_MODELS=${DREAMFARM_MODELS:-$HOME/.cache/dreamfarm/models}
    for one in ${GPU_BENCH_RUNS:-1920x1080/cuda-f32 1920x1080/cuda-bf16 1920x1080/cpu \
        1920x1080/py-cuda 1920x1080/py-cuda-det 1920x1080/cuda-f32+r2 \
        1920x1080/cuda-f32+mmobilenet-v2 1920x1080/cuda-f32+mmobilenet-v2+r2 \
        3840x2160/cuda-f32 3840x2160/py-cuda 3840x2160/cuda-bf16 \
        1920x1080/cuda-f32+t2048 3840x2160/cuda-f32+t2048 1920x1080/cuda-f32+b1 1920x1080/cuda-f32+b8 \
        1920x1080/cuda:0,cuda:0-f32+b1 3840x2160/cuda-f32+b1 3840x2160/cuda-f32+b8 3840x2160/cpu}; do
        case $one in
        */py-*) python_one "$one" ;;
        *) render_one "$one" ;;
        esac
    done
    tar -C "$out" -czf "$back/logs.tar.gz" --exclude='*.png' --exclude='*.mp4' . 2>/dev/null || true
}

# The seam test on the GPU in f32 and bf16 (edge energy along tile
# borders against inside tiles, limits as on the CPU); its lines to
# $OUT/seams.txt. GPU_BENCH_SEAMS (default "cuda/f32 cuda/bf16") names
# the device/precision pairs; `GPU_BENCH_SEAMS=cpu/f32` checks it here.
seams() {
    local back=${OUT:-/tmp/gpu-bench/out}
    mkdir -p "$back"
    libraries
    # The test finds the repository where it was built.
    local built
    built=$(cat "$carry/built-in")
    if [ ! -e "$built" ]; then
        mkdir -p "$(dirname "$built")"
        ln -s "$PWD" "$built"
    fi
    local pair
    for pair in ${GPU_BENCH_SEAMS:-cuda/f32 cuda/bf16}; do
        DREAMFARM_BIN=$PWD/$carry/dreamfarm DREAMFARM_TEST_DEVICE=${pair%/*} DREAMFARM_TEST_PRECISION=${pair#*/} \
            "$carry/render-tests" --exact tiled_dreams_show_no_seam_and_no_double_exposure --nocapture 2>&1 |
            tee -a "$back/seams.txt" | grep -E 'blended|test result|panicked' || true
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
def load(name):
    return np.asarray(Image.open(d / name)).astype(float)
pairs = [(f"frame0-{run}.png", "frame0-cpu.png") for run in ("cuda-f32", "cuda-bf16")]
pairs.append(("frame0-cuda-bf16.png", "frame0-cuda-f32.png"))
pairs += [(f"frame0-{run}.png", "frame0-py-cpu.png") for run in ("py-cuda", "py-cuda-tf32", "py-cuda-nocudnn", "py-cuda-det")]
# Second runs of the same render against the first.
pairs += [(p.name, p.name.split("+r")[0] + ".png") for p in sorted(d.glob("frame0-*+r*.png"))]
for a, b in pairs:
    if (d / a).exists() and (d / b).exists():
        x, y = load(a), load(b)
        mad = np.abs(x - y).mean() / 255
        same = "identical" if np.array_equal(x, y) else f"{(x != y).mean():.2%} of samples differ"
        print(f"{a} vs {b}: mean absolute difference {mad:.5f} (1/255 = {1/255:.5f}), {same}")
EOF
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    seams) seams ;;
    compare) compare "${2:?the folder the device run returned}" ;;
    *) echo "usage: bench/gpu.sh prepare | run | seams | compare FOLDER" >&2; exit 2 ;;
esac
