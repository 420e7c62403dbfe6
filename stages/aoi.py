"""DVC stage `aoi`: parse params.yaml, run gazelib.aoi.run.run_aoi."""
from gazelib.core.params import load_params, setup_logging
from gazelib.aoi.run import run_aoi


def main() -> None:
    setup_logging()
    run_aoi(params=load_params())


if __name__ == "__main__":
    main()
