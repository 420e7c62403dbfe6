#!/usr/bin/env bash
# Main job: set up, then run the whole pipeline on the built-in demo corpus and print the comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DVC_NO_ANALYTICS=1 PATH="$PWD/.venv/bin:$PATH"
start=$(date +%s)
dvc repro "$@"
echo
echo "== comparison (reports/compare.md) =="
cat reports/compare.md
echo "pipeline wall time: $(( $(date +%s) - start )) s"
