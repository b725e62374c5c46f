#!/usr/bin/env bash
# Install sonolatent on Debian (run as root): system packages and a virtual
# environment in .venv with the package installed in editable mode.
#   bash scripts/setup.sh          # to play
#   bash scripts/setup.sh --test   # also the test dependencies
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

export DEBIAN_FRONTEND=noninteractive
if command -v apt-get >/dev/null; then
  pkgs="python3 python3-venv fluidsynth fluid-soundfont-gm libportaudio2 jackd2 liblo-tools"
  # the browser-surface tests drive Debian's chromium through Playwright (no 'playwright install')
  if [ -n "$extras" ]; then pkgs="$pkgs chromium"; fi
  missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >/dev/null
  fi
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: sonolatent needs Python 3.11 or newer; python3 is $(python3 -V 2>&1)" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first: the CPU build where one is at hand (pip's local index), any build otherwise
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q torch==2.13.0 \
  || .venv/bin/python -m pip install -q torch
.venv/bin/python -m pip install -q -e ".${extras}"
echo "sonolatent installed: $(.venv/bin/sonolatent --version)"
