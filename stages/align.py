"""DVC stage `align`: parse params.yaml, run gazelib.data.align.run_align."""
from gazelib.core.params import load_params, setup_logging
from gazelib.data.align import run_align


def main() -> None:
    setup_logging()
    run_align(params=load_params())


if __name__ == "__main__":
    main()
