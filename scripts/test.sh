#!/usr/bin/env bash
# Test command: set up, lint (ruff) and type check (mypy gazelib), then run the tests.
# Tiers (GAZELIB_TEST_TIER): unset or `fast` runs pytest -m "not slow" (unit, property and
# module-level tests: the everyday loop); `all` (CI: .ci/run) runs every test, end-to-end pipelines,
# Ray, torchrun and chromium included, then checks the package as a user installs it
# (scripts/check_package.sh: pip install .[all] into an empty venv, gazelib --help).
# With arguments they go to pytest and only pytest runs (no lint, no tier filter).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DVC_NO_ANALYTICS=1 PATH="$PWD/.venv/bin:$PATH"
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
tier=${GAZELIB_TEST_TIER:-fast}
case "$tier" in
  fast|all) ;;
  *) echo "test: GAZELIB_TEST_TIER must be fast or all, got '$tier'" >&2; exit 2 ;;
esac
# lint and type check first: seconds, and they fail before minutes of tests
.venv/bin/ruff check gazelib stages tests bench scripts
.venv/bin/mypy gazelib
if [ "$tier" = all ]; then
  .venv/bin/python -m pytest
  bash scripts/check_package.sh
else
  .venv/bin/python -m pytest -m "not slow"
fi
