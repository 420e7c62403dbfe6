"""DVC stage `attribution`: parse params.yaml, run gazelib.eval.attribution.run_attribution."""
from gazelib.core.params import load_params, setup_logging
from gazelib.eval.attribution import run_attribution


def main() -> None:
    setup_logging()
    run_attribution(params=load_params())


if __name__ == "__main__":
    main()
