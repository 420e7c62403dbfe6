"""DVC stage `evaluate@<variant>`: parse params.yaml and --variant, run gazelib.eval.evaluate.run_evaluate."""
import argparse

from gazelib.core.params import load_params, setup_logging
from gazelib.eval.evaluate import run_evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", required=True, help="a key of 'variants' in params.yaml")
    args = parser.parse_args()
    setup_logging()
    run_evaluate(params=load_params(), variant=args.variant)


if __name__ == "__main__":
    main()
