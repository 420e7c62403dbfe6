"""DVC stage `train@<variant>`: parse params.yaml and --variant, run gazelib.model.train.run_train.

Data-parallel: `train.nproc: N` (> 1) makes this script relaunch itself under
`torchrun --standalone --nproc_per_node N`; or launch it so yourself
(`torchrun --nproc_per_node N stages/train.py --variant X`, docs/scaling.md).
"""
import argparse
import sys

from gazelib.model.distributed import log_level, relaunch, shutdown
from gazelib.core.params import load_params, setup_logging
from gazelib.model.train import run_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", required=True, help="a key of 'variants' in params.yaml")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="stop after this epoch count (a later run resumes from latest.pt)")
    args = parser.parse_args()
    setup_logging(log_level())
    params = load_params()
    code = relaunch(nproc=params["train"]["nproc"], script=__file__, argv=sys.argv[1:])
    if code is not None:
        raise SystemExit(code)
    try:
        run_train(params=params, variant=args.variant, max_epochs=args.max_epochs)
    finally:
        shutdown()


if __name__ == "__main__":
    main()
