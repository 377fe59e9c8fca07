#!/usr/bin/env bash
# Installs everything dreamfarm needs on a fresh Debian machine, idempotently:
# Debian packages (ffmpeg, npm, chromium for the web tests), a project-local
# Python virtualenv with PyPI torch==2.11.0 (libtorch for tch) and
# kubernetes-validate, the release build, and the pinned model weights. Safe to re-run: each step is skipped
# when already done. The manifest tests also need kubectl (for `kubectl
# kustomize`, offline); this machine image has it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*" >&2; }

# --images: also what deploy/images/build.sh needs (mmdebstrap, buildah).
images=no
case "${1:-}" in
  --images) images=yes ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--images]" >&2; exit 2 ;;
esac

# A fresh checkout takes about 5 GB for the virtualenv (torch) and 5 GB for
# the release build with every test binary: a disk that fills up mid-build
# fails with a linker's I/O error that names no cause, so say it first.
free_kb=$(df -Pk . | awk 'NR == 2 {print $4}')
want_gb=1
[ -d .venv/libtorch ] || want_gb=$((want_gb + 5))
[ -d target/release ] || want_gb=$((want_gb + 5))
want_kb=$((want_gb * 1048576))
if [ "${free_kb:-0}" -lt "$want_kb" ]; then
  echo "warning: $((free_kb / 1024)) MiB free on $(df -P . | awk 'NR == 2 {print $6}'); setting up and testing dreamfarm takes about $((want_kb / 1024)) MiB more here: the build may fail with 'No space left on device'" >&2
fi

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
if [ "$images" = yes ]; then
  command -v mmdebstrap >/dev/null 2>&1 || need_apt+=(mmdebstrap)
  command -v buildah >/dev/null 2>&1 || need_apt+=(buildah uidmap)
fi
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# tests/web.rs drives the web interface in headless Chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "Debian packages: ${need_apt[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! .venv/bin/python - <<'PY' 2>/dev/null
import importlib.metadata as m, pathlib, sys
want = {}
for line in pathlib.Path("scripts/requirements.txt").read_text().splitlines():
    line = line.split("#")[0].strip()
    if line:
        name, version = line.split("==")
        want[name] = version
sys.exit(0 if all(m.version(n) == v for n, v in want.items()) else 1)
PY
then
  step "Python virtualenv .venv (torch 2.11.0 is about 4.6 GB: a few minutes)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
fi

# tch finds libtorch through this link (see .cargo/config.toml).
torch_dir=$(.venv/bin/python -c 'import pathlib, torch; print(pathlib.Path(torch.__file__).parent)')
ln -sfn "$torch_dir" .venv/libtorch

step "cargo build --release (the first build compiles libtorch bindings: several minutes)"
cargo build --release --workspace --bins

step "model weights (pinned by version and sha256; offline once fetched)"
target/release/dreamfarm models fetch

command -v kubectl >/dev/null 2>&1 ||
  echo "warning: kubectl is missing: tests/manifests.rs renders deploy/k8s with \`kubectl kustomize\` (install kubectl 1.30 or newer)" >&2
