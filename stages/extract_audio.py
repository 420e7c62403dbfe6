"""DVC stage `extract_audio`: parse params.yaml, run gazelib.features.audio.run_extract_audio."""
from gazelib.core.params import load_params, setup_logging
from gazelib.features.audio import run_extract_audio


def main() -> None:
    setup_logging()
    run_extract_audio(params=load_params())


if __name__ == "__main__":
    main()
