#!/usr/bin/env bash
# Installs the Debian packages jobgate needs to build, run and test and, given
# "test", the npm packages its end-to-end tests use. Does nothing already done.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    build-essential pkg-config
    libh2o-dev libuv1-dev libssl-dev libhiredis-dev libjwt-dev libjansson-dev
    libsodium-dev libcmocka-dev libpcre2-dev
    redis-server redis-tools openssl curl jq nghttp2-client
    nodejs npm
    ruby ruby-rbnacl ruby-redis
    python3 python3-h2
)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        # Node.js may come from outside Debian's archive; any working node and npm will do.
        case "$package" in
        nodejs) command -v node >/dev/null && continue ;;
        npm) command -v npm >/dev/null && continue ;;
        esac
        missing+=("$package")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The end-to-end tests drive a real node-resque worker through the JavaScript kit.
if [ "${1:-}" = test ]; then
    for dir in workers/node-resque tests/e2e; do
        # npm writes node_modules/.package-lock.json last: without it the install is not whole.
        installed="$dir/node_modules/.package-lock.json"
        if [ ! -f "$installed" ] || [ "$dir/package-lock.json" -nt "$installed" ]; then
            (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
        fi
    done
fi
