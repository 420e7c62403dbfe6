#!/usr/bin/env bash
# Regenerate requirements.lock (every package, pinned, with sha256 hashes) from pyproject.toml's
# `test` extra (runtime + all optional parts + test tools) and scripts/lock.in, with uv.
# Pins already in requirements.lock are kept; `bash scripts/lock.sh --upgrade` (or
# `--upgrade-package NAME`) moves them. Needs uv (`pip install uv`, or set UV=/path/to/uv).
# uv does not read pip's configuration: this machine's package sources (pip config: find-links,
# extra indexes) are passed on, and pip's best-match across indexes is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
command -v "$UV" >/dev/null || { echo "lock: uv not found (pip install uv, or UV=/path/to/uv)" >&2; exit 1; }
src=()
for f in $(python3 -m pip config get global.find-links 2>/dev/null || true); do src+=(--find-links "$f"); done
for u in $(python3 -m pip config get global.extra-index-url 2>/dev/null || true); do src+=(--extra-index-url "$u"); done
"$UV" pip compile pyproject.toml scripts/lock.in --extra test --generate-hashes \
  --index-strategy unsafe-best-match --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
  --excludes scripts/lock-excludes.txt --custom-compile-command "bash scripts/lock.sh" \
  "${src[@]}" -o requirements.lock "$@"
