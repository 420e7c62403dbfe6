"""Convert vendor eye-tracking recordings into the gazelib corpus layout.

One module per format (``eyelink``, ``tobii``, ``pupil_core``, ``neon``, ``smi``, ``generic``),
clock sync in ``sync``, screen-to-video geometry and degrees in :mod:`gazelib.gaze.geometry`, the driver in
``run``. pymovements is imported only when a file is read.
See docs/importing.md.
"""
from __future__ import annotations

from gazelib.gaze.importers.base import ImportFormatError
from gazelib.gaze.importers.run import FORMATS, load_config, run_import

__all__ = ["FORMATS", "ImportFormatError", "load_config", "run_import"]
