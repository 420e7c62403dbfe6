"""DVC stage `train@<variant>`: parse params.yaml and --variant, run gazelib.train.run_train."""
import argparse

from gazelib.params import load_params, setup_logging
from gazelib.train import run_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", required=True, help="a key of 'variants' in params.yaml")
    args = parser.parse_args()
    setup_logging()
    run_train(params=load_params(), variant=args.variant)


if __name__ == "__main__":
    main()
