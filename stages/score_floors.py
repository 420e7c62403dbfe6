"""DVC stage `score_floors`: parse params.yaml, run gazelib.eval.evaluate.run_score_floors (the floors'
rows, scored once for every evaluate@<variant>)."""
from gazelib.core.params import load_params, setup_logging
from gazelib.eval.evaluate import run_score_floors


def main() -> None:
    setup_logging()
    run_score_floors(params=load_params())


if __name__ == "__main__":
    main()
