# podman-env.sh - sourced by build.sh and the image test: podman with private storage and the
# settings this machine needs (runc, ulimits), all under $TOOLS (git-ignored). Idempotent.
: "${TOOLS:?TOOLS must be set}"
mkdir -p "$TOOLS/containers/storage" "$TOOLS/containers/run"
cat > "$TOOLS/containers/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$TOOLS/containers/storage"
runroot = "$TOOLS/containers/run"
CONF
cat > "$TOOLS/containers/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:20000", "nproc=1024:1024"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_STORAGE_CONF=$TOOLS/containers/storage.conf
export CONTAINERS_CONF=$TOOLS/containers/containers.conf
