#!/usr/bin/env bash
# Create .venv (Python 3.11) and install exactly requirements.lock (every package pinned, with
# sha256 hashes: pip refuses a file that does not match), then gazelib itself (editable).
# Idempotent: reinstalls only when requirements.lock, pyproject.toml or this script changed.
# Any failed install stops setup with pip's own error. The lock is regenerated with
# scripts/lock.sh (uv) from pyproject.toml; docs/install.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"gazelib needs Python 3.11, found {sys.version}"'
VENV=${GAZELIB_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
stamp=$VENV/.gazelib-installed
want=$({ cat requirements.lock pyproject.toml scripts/setup.sh; cat scripts/installer.lock 2>/dev/null || true; } \
  | sha256sum | cut -d' ' -f1)
[ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && exit 0

pip_install() {
  # pip's output is shown only on failure (then all of it) and for real warnings: the notes about
  # this machine's unreachable local indexes ("... is ignored") are noise
  local out rc=0
  out=$(mktemp)
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" >"$out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    cat "$out" >&2
    echo "setup: 'pip install $*' failed (exit $rc); nothing else was installed" >&2
    rm -f "$out"
    exit "$rc"
  fi
  grep -v "is ignored" "$out" >&2 || true
  rm -f "$out"
}

uv_install() {
  # uv (pinned and hashed in scripts/installer.lock) installs the lock's wheels side by side and compiles
  # their bytecode as pip does (docs/install.md: 36 s for this lock here; the set-up with pip took 135 s).
  # It checks the same hashes; it reads pip's find-links (the local torch CPU wheel) from pip's config
  [ -f scripts/installer.lock ] || return 1
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes --no-deps \
    -r scripts/installer.lock >/dev/null 2>&1 || return 1
  local src=() f
  for f in $("$VENV/bin/python" -m pip config get global.find-links 2>/dev/null || true); do src+=(--find-links "$f"); done
  "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --require-hashes --no-deps --compile-bytecode \
    --index-strategy unsafe-best-match "${src[@]}" -r requirements.lock
}

# --no-deps: the lock is the whole environment (every package pinned and hashed, nothing resolved here).
# pip installs it where uv cannot (another platform, no uv wheel, a failed uv install: pip then gives
# its own error, hashes included)
if ! uv_install; then
  echo "setup: installing requirements.lock with pip (uv not available or it failed)" >&2
  pip_install --require-hashes --no-deps -r requirements.lock
fi
# the unrelated PyPI package `gazelib`, or this project under its old distribution name, would
# shadow the import name
if "$VENV/bin/python" -m pip show -q gazelib >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip uninstall -q -y gazelib
fi
pip_install --no-deps --no-build-isolation -e .
# gazelib first (it pins the CPU path before numpy and torch load, and warns otherwise); soundfile: its
# manylinux wheel bundles libsndfile, the pure one does not (then transformers fails to import)
"$VENV/bin/python" -c "import gazelib, torch, av, cv2, faster_whisper, silero_vad, dvc, ray, onnx, pymovements, soundfile" \
  || { echo "setup: install incomplete: the imports above fail in $VENV" >&2; exit 1; }
echo "$want" > "$stamp"
