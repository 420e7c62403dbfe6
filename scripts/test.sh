#!/usr/bin/env bash
# Test command: set up, then run the whole test suite (unit, property, end-to-end on a tiny demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DVC_NO_ANALYTICS=1 PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest "$@"
