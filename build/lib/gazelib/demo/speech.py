"""Real synthetic speech from libespeak-ng (shipped by ``espeakng-loader``), via ctypes.

``synthesize(text=..., voice=...)`` returns the waveform and per-word times taken from
the synthesizer's own word events, so subtitles and truth are exact by construction.

libespeak-ng keeps hidden state between utterances (even across Terminate/Initialize), so
the waveform depends on what was said before in the same process, and it seeds its pitch
jitter from the clock (reseeded here before every utterance). Callers that need bit-exact
output run a fixed sequence of calls in a fresh process (see demo.corpus).
"""
from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_DONT_EXIT = 0x8000
_EVENT_WORD = 1
_EVENT_LIST_TERMINATED = 0
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass
class Speech:
    audio: np.ndarray          # float32 mono in [-1, 1]
    sample_rate: int
    words: list[dict]          # {"word", "start", "end"} in seconds from the utterance start


class _Engine:
    """One process-wide libespeak-ng handle (the C library keeps global state)."""

    _lock = threading.Lock()
    _instance: "_Engine | None" = None

    def __init__(self):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_parent = str(Path(espeakng_loader.get_data_path()).parent).encode()
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent,
                                                      _INIT_DONT_EXIT)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data in {data_parent!r}")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int]] = []
        self._cb = _CALLBACK(self._on_audio)  # keep a reference: ctypes does not
        self.lib.espeak_SetSynthCallback(self._cb)

    @classmethod
    def get(cls) -> "_Engine":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _on_audio(self, wav, n, events):
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_WORD:
                self._events.append((ev.text_position, ev.length, ev.audio_position, ev.sample))
            i += 1
        return 0

    def synth(self, text: str, voice: str, rate: int, pitch: int) -> Speech:
        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            self.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            self._chunks, self._events = [], []
            # libespeak-ng seeds its pitch jitter from the clock; fix it so runs repeat
            self.lib.espeak_ng_SetRandSeed(ctypes.c_long(0))
            buf = ctypes.create_string_buffer(text.encode("utf-8"))
            rc = self.lib.espeak_Synth(buf, ctypes.c_size_t(len(buf)), 0, _POS_CHARACTER, 0,
                                       _CHARS_UTF8, None, None)
            if rc != 0:
                raise RuntimeError(f"espeak-ng synthesis failed (code {rc}) for {text!r}")
            self.lib.espeak_Synchronize()
            pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            events = list(self._events)
        audio = pcm.astype(np.float32) / 32768.0
        return Speech(audio=audio, sample_rate=self.sample_rate,
                      words=_words_from_events(text, events, audio, self.sample_rate))


def _words_from_events(text: str, events, audio: np.ndarray, sr: int) -> list[dict]:
    """Word start from the event; end where the voice energy falls before the next word."""
    encoded = text.encode("utf-8")
    starts = [ev[2] / 1000.0 for ev in events]
    total = len(audio) / sr
    frame = int(0.01 * sr)
    n_frames = max(1, len(audio) // frame)
    env = np.sqrt(np.mean(audio[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1))
    thresh = 0.05 * (env.max() if env.size else 0.0)
    words = []
    for i, (pos, length, _, _) in enumerate(events):
        word = encoded[pos - 1: pos - 1 + length].decode("utf-8", "ignore").strip(" .,!?;:")
        nxt = starts[i + 1] if i + 1 < len(starts) else total
        lo, hi = int(starts[i] / 0.01), max(int(starts[i] / 0.01) + 1, int(nxt / 0.01))
        voiced = np.nonzero(env[lo:hi] > thresh)[0]
        end = (lo + voiced[-1] + 1) * 0.01 if voiced.size else nxt
        if word:
            words.append({"word": word, "start": round(starts[i], 3),
                          "end": round(float(min(max(end, starts[i] + 0.05), nxt)), 3)})
    return words


def synthesize(*, text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50) -> Speech:
    """Speak ``text`` and return audio plus word times."""
    return _Engine.get().synth(text, voice, rate, pitch)
