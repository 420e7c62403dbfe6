#!/usr/bin/env bash
# CI step (scripts/test.sh runs it after the full suite): the package as a user gets it.
# `pip install .[all]` into an empty venv (the lock's versions as constraints, so pip resolves
# pyproject.toml's dependencies itself but lands on the tested versions; downloads come from
# pip's cache when warm), then, from outside the checkout: `gazelib --help`, `gazelib predict
# --help`, every gazelib module imports, the installed version is gazelib.__version__, and the
# default face detector runs from the weights inside the package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
"$PY" -m venv "$work/venv"
grep -oE '^[A-Za-z0-9._-]+==[^ ]+' requirements.lock > "$work/constraints.txt"
# install from a copy of the tracked files: building in place would leave build/ in the checkout
mkdir "$work/src"
git ls-files -z | xargs -0 cp --parents -t "$work/src"
out=$work/pip.log
# --no-compile: pip's bytecode for ~190 packages is a third of this check's time (130 s with it, 86 s
# without, one run each here) and checks nothing; importing every gazelib module below compiles ours
if ! "$work/venv/bin/python" -m pip install -q --no-compile --disable-pip-version-check -c "$work/constraints.txt" \
    "$work/src[all]" >"$out" 2>&1; then
  cat "$out" >&2
  echo "check_package: pip install .[all] failed" >&2
  exit 1
fi
cd "$work"
export -n PYTHONPATH 2>/dev/null || true
unset PYTHONPATH
bin=$work/venv/bin
"$bin/gazelib" --help >/dev/null
"$bin/gazelib" predict --help | head -3
"$bin/python" - <<'PY'
import importlib, pkgutil
from importlib.metadata import version
import gazelib
assert "site-packages" in gazelib.__file__, f"not the installed package: {gazelib.__file__}"
for m in pkgutil.walk_packages(gazelib.__path__, "gazelib."):
    importlib.import_module(m.name)
assert version("gazelib-av") == gazelib.__version__, (version("gazelib-av"), gazelib.__version__)
# the default face detector's weights ship in the package (predict's default visual features)
import numpy as np
from gazelib.features.faces import CenterFaceDetector, centerface_weights
assert "site-packages" in str(centerface_weights()), centerface_weights()
assert CenterFaceDetector().detect(np.zeros((180, 320, 3), np.uint8)).shape == (0, 4)
print(f"check_package: gazelib-av {gazelib.__version__} installed with [all]; every module imports")
PY
echo "check_package: ok in $(( $(date +%s) - start )) s"
