"""DVC stage `align`: parse params.yaml, run gazelib.pipeline.run_align."""
from gazelib.params import load_params, setup_logging
from gazelib.pipeline import run_align


def main() -> None:
    setup_logging()
    run_align(params=load_params())


if __name__ == "__main__":
    main()
