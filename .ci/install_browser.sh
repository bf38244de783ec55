#!/usr/bin/env bash
# Installs the browser of the dashboard's end-to-end test
# (packages/opifex-deploy/tests/test_deploy_dashboard_browser.py): Debian's chromium, driven by
# Playwright's Python API through executable_path=/usr/bin/chromium (Playwright's own browser
# download is never used), and a font for the page's text. Idempotent: does nothing when
# /usr/bin/chromium exists. Needs root or sudo, and apt's package sources.
# Checked on Debian 12 (bookworm): chromium 156.0.8078.129-1~deb12u1. On Ubuntu the chromium
# package installs a snap instead; use a Debian image (or a Debian container) there.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "install_browser: /usr/bin/chromium is there: $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
else
    sudo=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version
