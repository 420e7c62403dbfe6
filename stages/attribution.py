"""DVC stage `attribution`: parse params.yaml, run gazelib.attribution.run_attribution."""
from gazelib.params import load_params, setup_logging
from gazelib.attribution import run_attribution


def main() -> None:
    setup_logging()
    run_attribution(params=load_params())


if __name__ == "__main__":
    main()
