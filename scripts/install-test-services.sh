#!/usr/bin/env bash
# Test-only services for the production-shaped cluster suite (tests/cluster): a PostgreSQL
# server as the metadata DB (15 on Debian bookworm) and redis-server as the Celery broker.
# Idempotent: installs only what is missing, with apt (needs root, as on CI). Nothing is started
# or enabled here; the tests start private instances on 127.0.0.1 themselves.
set -euo pipefail

have_postgres() {
    # Any Debian/Ubuntu server version (bookworm ships 15); the tests pick the newest one found.
    for bin in /usr/lib/postgresql/*/bin; do
        [ -x "$bin/postgres" ] && [ -x "$bin/initdb" ] && id postgres >/dev/null 2>&1 && return 0
    done
    return 1
}
have_redis() { command -v redis-server >/dev/null 2>&1; }

missing=()
have_postgres || missing+=(postgresql)
have_redis || missing+=(redis-server)
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-test-services: postgresql and redis-server already present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install-test-services: need root (or sudo) to apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi
echo "install-test-services: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d 101: the packages' post-install scripts must not start system-wide services
# (they would bind ports 5432/6379 that other users of the machine may need).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    created_policy=1
fi
status=0
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
if [ "$created_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi
exit $status
