"""DVC stage `align`: parse params.yaml, run gazelib.align.run_align."""
from gazelib.params import load_params, setup_logging
from gazelib.align import run_align


def main() -> None:
    setup_logging()
    run_align(params=load_params())


if __name__ == "__main__":
    main()
