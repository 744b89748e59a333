#!/usr/bin/env bash
# Builds the concord container image from the release binary, with no base
# image and no registry (see deploy/Dockerfile for why):
#
#     deploy/build-image.sh              # -> concord:local
#     CONCORD_IMAGE=concord:0.1.0 deploy/build-image.sh
#
# It builds target/release/concord when it is missing (CONCORD_BIN names
# another binary), assembles the build context in target/docker-context (the
# binary, every shared library `ldd` lists at its own path, passwd/group for
# the `concord` user, uid 10001) and runs `docker build -f deploy/Dockerfile`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${CONCORD_IMAGE:-concord:local}
BIN=${CONCORD_BIN:-$ROOT/target/release/concord}
CTX=$ROOT/target/docker-context

command -v docker >/dev/null || { echo "$0: docker is not installed" >&2; exit 1; }

if [[ ! -x $BIN ]]; then
    echo "== building $BIN"
    (cd "$ROOT" && cargo build --release --bin concord)
fi

echo "== assembling the build context in $CTX"
rm -rf "$CTX"
mkdir -p "$CTX/rootfs/usr/local/bin" "$CTX/rootfs/etc" "$CTX/rootfs/tmp" "$CTX/data"
chmod 1777 "$CTX/rootfs/tmp"
chmod 0755 "$CTX/data"

# The binary, without its debug info (symbols stay, for backtraces).
if command -v objcopy >/dev/null; then
    objcopy --strip-debug "$BIN" "$CTX/rootfs/usr/local/bin/concord"
else
    cp "$BIN" "$CTX/rootfs/usr/local/bin/concord"
fi
chmod 0755 "$CTX/rootfs/usr/local/bin/concord"

# Every library the loader will look for, copied (symlinks resolved) to the
# path ldd found it at, the loader itself included. A static binary has none.
if ldd "$BIN" >/dev/null 2>&1; then
    ldd "$BIN" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
        mkdir -p "$CTX/rootfs$(dirname "$lib")"
        cp -L "$lib" "$CTX/rootfs$lib"
        echo "   $lib"
    done
else
    echo "   (static binary: no libraries)"
fi

cat >"$CTX/rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
concord:x:10001:10001:concord:/data:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
cat >"$CTX/rootfs/etc/group" <<'EOF'
root:x:0:
concord:x:10001:
nogroup:x:65534:
EOF
# glibc resolves peer names (node-2, concord-1.concord-peer...) with these;
# Docker and Kubernetes mount /etc/hosts and /etc/resolv.conf.
echo 'hosts: files dns' >"$CTX/rootfs/etc/nsswitch.conf"
chmod 0644 "$CTX/rootfs/etc/passwd" "$CTX/rootfs/etc/group" "$CTX/rootfs/etc/nsswitch.conf"

cp "$ROOT/deploy/Dockerfile" "$CTX/Dockerfile"
VERSION=$("$BIN" --version | awk '{print $2}')

echo "== docker build -> $IMAGE (concord $VERSION)"
docker build --build-arg VERSION="$VERSION" -t "$IMAGE" "$CTX"
docker image inspect --format '   {{.Id}} {{.Size}} bytes, user {{.Config.User}}' "$IMAGE"
