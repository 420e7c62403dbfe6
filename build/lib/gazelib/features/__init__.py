"""Per-video feature extractors (audio, text, visual) writing typed Parquet/NPZ artifacts."""
