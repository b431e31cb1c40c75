#!/usr/bin/env bash
# build.sh - build oomstream's image from the repository's Containerfile with podman, on a machine
# without a Docker engine or registry access.
#
#   deploy/image/build.sh [TAG]      default tag: localhost/oomstream:<version>; prints it last
#   exit status: 3 podman or mmdebstrap missing, 4 mmdebstrap could not make the base
#
# The base is made from Debian's packages with mmdebstrap (python3, python3-venv, ca-certificates)
# and given to the Containerfile as BASE. Storage, the base tarball and podman's configuration live
# under $TOOLS_DIR (default: .tools/ in the repository, git-ignored) and are reused: only the
# first run pays for the base (about a minute). IMAGE_SUITE and IMAGE_MIRROR choose the Debian
# release and mirror (no OOMSTREAM_ prefix: the service rejects unknown variables of its prefix).
# Podman settings this machine needs: the chroot build isolation, runc (crun refuses hybrid
# cgroups), explicit ulimits; the host's CA bundle is mounted into the build so pip trusts the
# HTTPS proxy.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOOLS=${TOOLS_DIR:-$ROOT/.tools}
SUITE=${IMAGE_SUITE:-bookworm}
MIRROR=${IMAGE_MIRROR:-http://deb.debian.org/debian}
BASE_PACKAGES=python3,python3-venv,ca-certificates
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -n1)
TAG=${1:-localhost/oomstream:$VERSION}

# shellcheck source=deploy/image/podman-env.sh
source "$ROOT/deploy/image/podman-env.sh"

for tool in podman mmdebstrap; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool is not installed (make tools installs it)" >&2; exit 3; }
done

key=$(printf '%s %s %s' "$SUITE" "$BASE_PACKAGES" "$MIRROR" | sha1sum | cut -c1-12)
base_tar=$TOOLS/image/base-$SUITE-$key.tar
base_ref=localhost/oomstream-base:$SUITE-$key
mkdir -p "$TOOLS/image"
if ! podman image exists "$base_ref"; then
    if [ ! -f "$base_tar" ] || [ ! -s "$base_tar" ]; then
        echo "build.sh: making the base ($SUITE: $BASE_PACKAGES) with mmdebstrap" >&2
        rm -rf "$base_tar" "$base_tar.part"
        # --format=tar: mmdebstrap picks the format from the name, and *.part would be a directory.
        # Exit 4 when only mmdebstrap failed (no mirror reachable, ...): the machine cannot make a
        # base, which the image test reports as a skip; any later failure is a real one.
        mmdebstrap --quiet --format=tar --variant=apt --include="$BASE_PACKAGES" "$SUITE" \
            "$base_tar.part" "$MIRROR" >&2 \
            || { rm -rf "$base_tar.part"; echo "build.sh: mmdebstrap failed" >&2; exit 4; }
        mv "$base_tar.part" "$base_tar"
    fi
    podman import --quiet "$base_tar" "$base_ref" >/dev/null
fi

ca_mount=()
if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
    ca_mount=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi
revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
echo "build.sh: building $TAG from $ROOT/Containerfile (BASE=$base_ref)" >&2
podman build --quiet --isolation chroot "${ca_mount[@]}" \
    --build-arg BASE="$base_ref" --build-arg VERSION="$VERSION" --build-arg REVISION="$revision" \
    -f "$ROOT/Containerfile" -t "$TAG" "$ROOT" >&2
# Images a rebuild left untagged, once they are a day old (recent ones serve as build cache).
podman image prune -f --filter until=24h >/dev/null 2>&1 || true
echo "$TAG"
