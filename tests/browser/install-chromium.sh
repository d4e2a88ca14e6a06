#!/usr/bin/env bash
# Debian's chromium for tests/test_ui.py (headless: --dump-dom, --screenshot), installed with apt-get when
# missing, as tests/slurm/start.sh installs SLURM. Prints the browser's path on stdout.
# Exit codes: 0 ready; 2 not root and no chromium; 3 no apt-get, or the packages would not install.
set -euo pipefail
log() { echo "chromium-test: $*" >&2; }
find_browser() { command -v chromium || command -v chromium-browser || command -v google-chrome; }

if ! find_browser >/dev/null; then
    [[ $(id -u) -eq 0 ]] || { log "chromium is not installed and installing it needs root"; exit 2; }
    command -v apt-get >/dev/null || { log "chromium is not installed and apt-get is not available"; exit 3; }
    LOG=$(mktemp -t chromium-apt.XXXXXX.log)
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends chromium fonts-dejavu-core >"$LOG" 2>&1; then
        log "apt-get install failed; running apt-get update first"
        apt-get update >>"$LOG" 2>&1 || { log "apt-get update failed (see $LOG)"; exit 3; }
        apt-get install -y --no-install-recommends chromium fonts-dejavu-core >>"$LOG" 2>&1 \
            || { log "apt-get install chromium failed (see $LOG)"; exit 3; }
    fi
fi
find_browser
