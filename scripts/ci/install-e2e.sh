#!/usr/bin/env bash
# Installs what the end-to-end tests in crates/kiln/tests/{browser,api_client}_e2e.rs need, and
# prints the `export` lines that tell those tests where it all is (stdout carries nothing else;
# the log goes to stderr). Idempotent: each step checks first and is skipped when already done,
# so a second run takes a second or two.
#
#   eval "$(scripts/ci/install-e2e.sh)"
#
# - Debian's Chromium (/usr/bin/chromium), only when missing; no browser download of its own.
# - tests/e2e/node_modules from tests/e2e/package-lock.json (playwright-core, @saintno/comfyui-sdk),
#   by `npm ci`, redone only when the lock file changed.
# - A Python venv at target/e2e-venv with the official ComfyUI frontend package, pinned.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"

# The frontend release the server is tested against (kiln-server's FRONTEND_VERSION).
FRONTEND_VERSION="1.58.1"
VENV="$root/target/e2e-venv"
E2E="$root/tests/e2e"
CHROMIUM="${KILN_E2E_CHROMIUM:-/usr/bin/chromium}"

log() { echo "e2e-install: $*" >&2; }
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
timed() {
    local start=$SECONDS
    "$@" >&2
    log "  ($((SECONDS - start)) s)"
}

# 1. Chromium.
if [ -x "$CHROMIUM" ]; then
    log "chromium: present at $CHROMIUM"
else
    log "chromium: missing, installing Debian's chromium"
    timed as_root apt-get update -qq
    timed as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    [ -x "$CHROMIUM" ] || { log "chromium: still not at $CHROMIUM"; exit 1; }
fi

# 2. Node.js and the test scripts' packages.
if ! command -v npm >/dev/null 2>&1; then
    log "node/npm: missing, installing Debian's nodejs and npm"
    timed as_root apt-get update -qq
    timed as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
lock_sum="$(sha256sum "$E2E/package-lock.json" | cut -d' ' -f1)"
stamp="$E2E/node_modules/.kiln-installed-lock"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sum" ]; then
    log "npm: tests/e2e/node_modules matches package-lock.json"
else
    log "npm: npm ci --prefix tests/e2e (node $(node --version))"
    timed npm ci --prefix "$E2E" --no-audit --no-fund --loglevel=error
    echo "$lock_sum" > "$stamp"
fi

# 3. The official frontend, in its own venv.
installed=""
if [ -x "$VENV/bin/python" ]; then
    installed="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("comfyui-frontend-package"))' 2>/dev/null || true)"
fi
if [ "$installed" = "$FRONTEND_VERSION" ]; then
    log "venv: comfyui-frontend-package $FRONTEND_VERSION present in target/e2e-venv"
else
    log "venv: installing comfyui-frontend-package==$FRONTEND_VERSION into target/e2e-venv (had: ${installed:-nothing})"
    [ -x "$VENV/bin/python" ] || timed python3 -m venv "$VENV"
    timed "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
        "comfyui-frontend-package==$FRONTEND_VERSION"
fi
frontend_root="$("$VENV/bin/python" -c "import comfyui_frontend_package, os; print(os.path.join(os.path.dirname(comfyui_frontend_package.__file__), 'static'))")"
[ -f "$frontend_root/index.html" ] || { log "venv: no index.html in $frontend_root"; exit 1; }
log "frontend root: $frontend_root"

printf 'export KILN_FRONTEND_ROOT=%q\n' "$frontend_root"
printf 'export KILN_E2E_NODE_MODULES=%q\n' "$E2E/node_modules"
printf 'export KILN_E2E_PYTHON=%q\n' "$VENV/bin/python"
printf 'export KILN_E2E_CHROMIUM=%q\n' "$CHROMIUM"
