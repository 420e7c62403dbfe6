"""DVC stage `extract_text`: parse params.yaml, run gazelib.features.text.run_extract_text."""
from gazelib.core.params import load_params, setup_logging
from gazelib.features.text import run_extract_text


def main() -> None:
    setup_logging()
    run_extract_text(params=load_params())


if __name__ == "__main__":
    main()
