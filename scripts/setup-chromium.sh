#!/usr/bin/env bash
# Installs Debian's chromium for the report test (test/report), which opens report.html headless.
# Idempotent: does nothing when /usr/bin/chromium already exists. Needs root (CI runs as root on
# Debian); elsewhere it uses sudo when available.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "setup-chromium: /usr/bin/chromium already present ($(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown'))"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "setup-chromium: need root (or sudo) to apt-get install chromium" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium

if [ ! -x /usr/bin/chromium ]; then
  echo "setup-chromium: apt-get finished but /usr/bin/chromium is missing" >&2
  exit 1
fi
echo "setup-chromium: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
