"""DVC stage `compare`: parse params.yaml, run gazelib.compare.run_compare."""
from gazelib.params import load_params, setup_logging
from gazelib.compare import run_compare


def main() -> None:
    setup_logging()
    run_compare(params=load_params())


if __name__ == "__main__":
    main()
