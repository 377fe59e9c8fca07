#!/usr/bin/env bash
# What computing on the CPUs a process is given is worth, side by side:
# `dreamfarm render` seconds per frame with libtorch's own thread count
# (one thread per core of the machine, what every process ran with before
# `--threads`) against the default now, in two settings:
#
#   limit   one render in a cgroup with a CPU quota of BENCH_CPUS CPUs
#           (default 1), as in a container with `--cpus` or a Kubernetes
#           CPU limit: the default now computes on BENCH_CPUS threads;
#   shared  BENCH_PROCESSES renders at once (default: the machine's
#           cores), no limit, as pods that request a share of a node and
#           set no limit: each with --threads cores/processes, as the
#           manifests' DREAMFARM_THREADS gives a worker its requested CPUs.
#
# Needs root (a cgroup of its own, v1 or v2) for `limit`. Renders the
# astronaut at BENCH_SIZE (default 384x384), BENCH_FRAMES frames (default
# 4; frame 0 is left out of the figures), BENCH_ROUNDS alternating rounds
# (default 2); libtorch's OpenMP threads spin while they wait, as the
# binaries and images leave them.
#     bench/cpu_threads.sh [limit|shared|both]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DREAMFARM_BIN:-target/release/dreamfarm}
size=${BENCH_SIZE:-384x384}
frames=${BENCH_FRAMES:-4}
rounds=${BENCH_ROUNDS:-2}
cpus=${BENCH_CPUS:-1}
cores=$(.venv/bin/python -c 'import torch; print(torch.get_num_threads())')
processes=${BENCH_PROCESSES:-$cores}
work=$(mktemp -d /tmp/cpu-threads-bench.XXXXXX)
unset OMP_WAIT_POLICY OMP_NUM_THREADS DREAMFARM_THREADS
[ -x "$bin" ] || { echo "no $bin: build it first (cargo build --release)" >&2; exit 1; }

# Seconds per frame of a finished render's log, frames 1 on, one per line.
frame_seconds() {
  sed -n 's/.*frame written frame=\([0-9]*\) .*seconds="\([0-9.]*\)".*/\1 \2/p' "$1" |
    awk '$1 > 0 { print $2 }'
}

median() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# render NAME [FLAGS...]: one render into $work/NAME, its log beside it.
render() {
  local name=$1
  shift
  "$bin" render --input assets/astronaut.png --size "$size" --frames "$frames" \
    --output "$work/$name" --name "$name" "$@" >"$work/$name.log" 2>&1
}

cgroup=""
make_cgroup() {
  local root=/sys/fs/cgroup quota=$((cpus * 100000))
  if [ -e $root/cgroup.controllers ]; then
    echo +cpu >$root/cgroup.subtree_control 2>/dev/null || true
    cgroup=$root/dreamfarm-bench-$$
    mkdir "$cgroup"
    echo "$quota 100000" >"$cgroup/cpu.max"
  else
    cgroup=$root/cpu/dreamfarm-bench-$$
    mkdir "$cgroup"
    echo 100000 >"$cgroup/cpu.cfs_period_us"
    echo "$quota" >"$cgroup/cpu.cfs_quota_us"
  fi
}
cleanup() {
  [ -n "$cgroup" ] && rmdir "$cgroup" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

limit() {
  make_cgroup
  echo "limit: one render in a ${cpus}-CPU quota on a ${cores}-core machine, $size, frames 1-$((frames - 1))"
  for r in $(seq "$rounds"); do
    for how in library default; do
      local flags=()
      [ $how = library ] && flags=(--threads "$cores")
      (echo $BASHPID >"$cgroup/cgroup.procs" && render "limit-$how-$r" "${flags[@]}")
      echo "  round $r, $how: $(frame_seconds "$work/limit-$how-$r.log" | tr '\n' ' ')s/frame"
    done
  done
  report limit
}

shared() {
  local each=$((cores / processes))
  [ "$each" -ge 1 ] || each=1
  echo "shared: $processes renders at once on $cores cores, $size, frames 1-$((frames - 1)); each with $cores threads (libtorch's own) or --threads $each"
  for r in $(seq "$rounds"); do
    for how in library default; do
      local threads=$cores
      [ $how = default ] && threads=$each
      for p in $(seq "$processes"); do
        render "shared-$how-$r-$p" --threads "$threads" &
      done
      wait
      echo "  round $r, $how: $(cat "$work"/shared-$how-$r-*.log | frame_seconds /dev/stdin | tr '\n' ' ')s/frame"
    done
  done
  report shared
}

# report SETTING: the medians of the two ways and their ratio.
report() {
  local lib def
  lib=$(cat "$work"/$1-library-*.log | frame_seconds /dev/stdin | median)
  def=$(cat "$work"/$1-default-*.log | frame_seconds /dev/stdin | median)
  echo "  $1 median s/frame: libtorch's threads $lib, the CPUs given $def, ratio $(awk -v a="$def" -v b="$lib" 'BEGIN { printf "%.3f", a / b }')"
}

case "${1:-both}" in
  limit) limit ;;
  shared) shared ;;
  both) limit && shared ;;
  *) echo "usage: $0 [limit|shared|both]" >&2; exit 2 ;;
esac
