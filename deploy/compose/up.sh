#!/usr/bin/env bash
# Brings the 3-node compose cluster up:
#
#     deploy/compose/up.sh [docker-compose up options]
#
# Builds the image (deploy/build-image.sh) when ${CONCORD_IMAGE:-concord:local}
# is missing, makes the secrets when missing, then runs `docker-compose up -d`.
# The secrets live in $CONCORD_SECRETS_DIR (default deploy/compose/secrets,
# ignored by git):
#   peer-secret   32 random bytes (hex) the nodes prove to each other
#   auth.toml     `requirepass = "..."`, read by the nodes as --config
#   password      the same password, for clients (mode 0400)
# The directory is mode 0700; peer-secret and auth.toml are world-readable
# inside it, so that the containers' user (uid 10001) can read their
# bind-mounted copies while nobody else on the host can reach them.
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
SECRETS=${CONCORD_SECRETS_DIR:-$HERE/secrets}
export CONCORD_SECRETS_DIR=$SECRETS
mkdir -p "$SECRETS"
chmod 0700 "$SECRETS"
cd "$SECRETS"
if [[ ! -s peer-secret ]]; then
    random >peer-secret
    echo "made $SECRETS/peer-secret"
fi
if [[ ! -s auth.toml ]]; then
    password=$(random)
    printf '%s\n' "$password" >password
    printf '# read by the nodes as --config (CONCORD_CONFIG)\nrequirepass = "%s"\n' "$password" >auth.toml
    echo "made $SECRETS/auth.toml and $SECRETS/password"
fi
chmod 0444 peer-secret auth.toml
if [[ -f password ]]; then chmod 0400 password; fi
cd "$HERE"

"${COMPOSE[@]}" up -d "$@"
