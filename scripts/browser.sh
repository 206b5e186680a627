#!/usr/bin/env bash
# What the dashboard's browser tests need: Debian's `chromium` package (headless Chromium at
# /usr/bin/chromium) and `npm ci` in tests/browser (playwright-core, pinned by its
# package-lock.json; it drives the system Chromium and downloads no browser of its own).
# Self-contained: installs with apt-get (as root) when something is missing.
#
# Usage: browser.sh install|status
#   install  install chromium and the node packages if missing; exit 0 when all are there
#   status   exit 0 when everything is installed, 3 when something is missing (says what)
set -u
cd "$(dirname "$0")/.."

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
die() { echo "browser.sh: error: $*" >&2; exit 1; }

apt_install() {
  [ "$(id -u)" = 0 ] || die "$* not installed and we are not root: apt-get install $*"
  echo "browser.sh: installing $* with apt-get ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 \
         && apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; } \
    || die "apt-get install $* failed"
}

missing() {
  command -v node >/dev/null 2>&1 || { echo "node"; return; }
  command -v npm >/dev/null 2>&1 || { echo "npm"; return; }
  [ -x "$CHROMIUM" ] || { echo "chromium"; return; }
  [ -f tests/browser/node_modules/playwright-core/package.json ] || { echo "playwright-core"; return; }
}

install() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  [ -x "$CHROMIUM" ] || apt_install chromium
  [ -x "$CHROMIUM" ] || die "$CHROMIUM still missing after install"
  if [ ! -f tests/browser/node_modules/playwright-core/package.json ]; then
    echo "browser.sh: npm ci in tests/browser ..." >&2
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
      || die "npm ci in tests/browser failed"
  fi
  echo "browser.sh: $("$CHROMIUM" --version 2>/dev/null | head -n1), node $(node --version), playwright-core $(node -p "require('./tests/browser/node_modules/playwright-core/package.json').version")" >&2
}

case "${1:-}" in
  install) install ;;
  status)
    m=$(missing)
    if [ -z "$m" ]; then echo "browser: ready"; exit 0; fi
    echo "browser: missing $m"; exit 3 ;;
  *) echo "usage: $0 install|status" >&2; exit 2 ;;
esac
