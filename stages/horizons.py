"""DVC stage `horizons`: parse params.yaml, run gazelib.eval.horizons.run_horizons (docs/horizons.md)."""
from gazelib.core.params import load_params, setup_logging
from gazelib.eval.horizons import run_horizons


def main() -> None:
    setup_logging()
    run_horizons(params=load_params())


if __name__ == "__main__":
    main()
