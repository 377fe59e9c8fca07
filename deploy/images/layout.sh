# The one description of dreamfarm's two images: base packages, user,
# folders, environment and entry point. deploy/images/build.sh builds the
# images from it with mmdebstrap and buildah (no Docker Hub);
# `build.sh --dockerfiles` writes deploy/Dockerfile.* from it for users
# with Docker Hub, and tests/manifests.rs checks they are up to date.
# Sourced by sh; `sh layout.sh assemble IMAGE` runs inside the image's root.

DEBIAN_SUITE=bookworm
# The manifests' runAsUser / fsGroup.
DREAMFARM_UID=10001
# Where the worker image's virtualenv with PyPI torch lives.
TORCH_VENV=/opt/torch
TORCH_LIB=$TORCH_VENV/lib/python3.11/site-packages/torch/lib

coordinator_packages="ca-certificates ffmpeg"
coordinator_binary=dreamfarm
coordinator_env="DREAMFARM_DATA=/var/lib/dreamfarm"
coordinator_entrypoint='["dreamfarm"]'
coordinator_cmd='["coordinator"]'
coordinator_ports="7070 9090"

worker_packages="ca-certificates python3 python3-venv"
worker_binary=dreamfarm-worker
# The weights are baked in: pods start without npm, pip or network access
# to any registry, need no shared model volume, and the image pins them.
worker_env="DREAMFARM_MODELS=/models LD_LIBRARY_PATH=$TORCH_LIB"
worker_entrypoint='["dreamfarm-worker"]'
worker_cmd='[]'
worker_ports="8080"

# Runs as root inside the image being built: the user and its folders.
assemble() {
    set -eu
    groupadd --system --gid "$DREAMFARM_UID" dreamfarm
    useradd --system --uid "$DREAMFARM_UID" --gid "$DREAMFARM_UID" --no-create-home \
        --home-dir /tmp --shell /usr/sbin/nologin dreamfarm
    case "$1" in
    coordinator)
        install -d -o "$DREAMFARM_UID" -g "$DREAMFARM_UID" /var/lib/dreamfarm
        ;;
    worker)
        install -d -m 0755 /models
        ;;
    *)
        echo "assemble: unknown image $1 (coordinator or worker)" >&2
        return 1
        ;;
    esac
    # Package caches and logs are not part of an image.
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/*.log
}

# Runs as root inside the worker image: PyPI torch (the CUDA build, which
# also runs on CPU), whose libtorch the worker binary links; from the
# wheels in folder $2 when given (no network inside the build), else from
# PyPI.
install_torch() {
    set -eu
    python3 -m venv "$TORCH_VENV"
    set -- "torch==$1" ${2:+--no-index --find-links "$2"}
    "$TORCH_VENV/bin/pip" install --quiet --disable-pip-version-check --no-compile "$@"
}

case "${1:-}" in
assemble) assemble "$2" ;;
torch) install_torch "$2" "${3:-}" ;;
esac
