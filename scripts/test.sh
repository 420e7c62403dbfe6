#!/usr/bin/env bash
# Test command: set up, then run the whole test suite (unit, property, end-to-end on a tiny demo).
# With no arguments (CI: .ci/run) it then checks the package as a user installs it
# (scripts/check_package.sh: pip install .[all] into an empty venv, gazelib --help); with
# arguments they go to pytest and only pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DVC_NO_ANALYTICS=1 PATH="$PWD/.venv/bin:$PATH"
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest
bash scripts/check_package.sh
