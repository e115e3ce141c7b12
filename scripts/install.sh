#!/usr/bin/env bash
# Install sslkit and every plugin under plugins/ into ./.venv (created if missing).
#   bash scripts/install.sh          # the toolkit
#   bash scripts/install.sh --test   # plus pytest, the test-only fixture plugins and every optional
#                                    # extra (trackers, exports, Hugging Face datasets), so CI tests them
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
core="."
if [ "${1:-}" = "--test" ]; then core=".[all]"; fi
packages=(-e "$core")
for plugin in plugins/*/; do
    if [ -f "${plugin}pyproject.toml" ]; then packages+=(-e "${plugin%/}"); fi
done
if [ "${1:-}" = "--test" ]; then
    packages+=(-e tests/fixtures/sslkit_testplugins -e examples/sslkit-vicreg -e examples/sslkit-timeseries pytest)
fi
echo "Installing: ${packages[*]} (torch pinned by constraints.txt; the first install downloads ~5 GB)"
.venv/bin/python -m pip install --quiet -c constraints.txt "${packages[@]}"
echo "Done. Try: .venv/bin/ssl list"
