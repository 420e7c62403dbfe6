"""DVC stage `extract_visual`: parse params.yaml, run gazelib.features.visual.run_extract_visual."""
from gazelib.core.params import load_params, setup_logging
from gazelib.features.visual import run_extract_visual


def main() -> None:
    setup_logging()
    run_extract_visual(params=load_params())


if __name__ == "__main__":
    main()
