#!/usr/bin/env bash
# Test-only services and tools: a PostgreSQL server as the metadata DB of the production-shaped
# cluster suite (tests/cluster; 15 on Debian bookworm), redis-server as its Celery broker, and
# Debian's chromium + chromium-driver for the real-browser UI test (tests/e2e/test_ui_browser.py:
# Selenium drives /usr/bin/chromium through /usr/bin/chromedriver, nothing is downloaded at test time).
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
have_chromium() { [ -x /usr/bin/chromium ]; }
have_chromedriver() { [ -x /usr/bin/chromedriver ]; }

missing=()
have_postgres || missing+=(postgresql)
have_redis || missing+=(redis-server)
have_chromium || missing+=(chromium)
have_chromedriver || missing+=(chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-test-services: postgresql, redis-server, chromium and chromium-driver already present"
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
