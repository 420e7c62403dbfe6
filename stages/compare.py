"""DVC stage `compare`: parse params.yaml, run gazelib.eval.compare.run_compare."""
from gazelib.core.params import load_params, setup_logging
from gazelib.eval.compare import run_compare


def main() -> None:
    setup_logging()
    run_compare(params=load_params())


if __name__ == "__main__":
    main()
