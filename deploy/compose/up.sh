#!/usr/bin/env bash
# Brings the 3-node compose cluster up:
#
#     deploy/compose/up.sh [docker-compose up options]
#
# Builds the image (deploy/build-image.sh) when ${CONCORD_IMAGE:-concord:local}
# is missing, makes secrets/peer-secret and secrets/auth.toml (the password)
# when missing, then runs `docker-compose up -d`. secrets/ is mode 0700; the
# files in it are world-readable so that the containers' user (uid 10001) can
# read the bind-mounted copies, and nobody else on the host can reach them.
# The password is also in secrets/password, for clients.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
IMAGE=${CONCORD_IMAGE:-concord:local}
cd "$HERE"

if command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose)
else
    COMPOSE=(docker compose)
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    CONCORD_IMAGE=$IMAGE "$HERE/../build-image.sh"
fi

random() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
mkdir -p secrets
chmod 0700 secrets
if [[ ! -s secrets/peer-secret ]]; then
    random >secrets/peer-secret
    echo "made secrets/peer-secret"
fi
if [[ ! -s secrets/auth.toml ]]; then
    password=$(random)
    printf '%s\n' "$password" >secrets/password
    printf '# read by the nodes as --config (CONCORD_CONFIG)\nrequirepass = "%s"\n' "$password" >secrets/auth.toml
    echo "made secrets/auth.toml and secrets/password"
fi
chmod 0444 secrets/peer-secret secrets/auth.toml
[[ -f secrets/password ]] && chmod 0400 secrets/password

"${COMPOSE[@]}" up -d "$@"
