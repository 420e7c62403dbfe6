"""Areas of interest (AOIs) that move: face identities, the active speaker, user AOI files, the
measures eye-tracking researchers compute on them, and the model judged at the AOI level.

Modules (docs/aoi.md says why each choice was made):

- :mod:`~gazelib.aoi.shapes`: an AOI as keyframes (box or polygon, visibility), interpolation, hit tests
- :mod:`~gazelib.aoi.tracks`: per-frame face boxes -> identities (scipy's Hungarian solver)
- :mod:`~gazelib.aoi.speaker`: the active speaker by mouth-motion / speech-envelope synchrony
- :mod:`~gazelib.aoi.user_aoi`: the user AOI file (Tobii Pro Lab style keyframes)
- :mod:`~gazelib.aoi.measures`: dwell, time to first fixation, entries, ... per viewer x AOI
- :mod:`~gazelib.aoi.model_level`: predicted mass per AOI and AOI hit rate of every row
- :mod:`~gazelib.aoi.truth`: identity switches and speaker accuracy against the demo's truth
- :mod:`~gazelib.aoi.run`: the stage (``aoi``, with its per-video cache) and the per-video work both share
- :mod:`~gazelib.aoi.cli`: ``gazelib aoi`` on a video file, a corpus folder or a ``gazelib predict`` folder
"""
