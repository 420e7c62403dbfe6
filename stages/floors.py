"""DVC stage `floors`: parse params.yaml, run gazelib.model.floors.run_fit_floors."""
from gazelib.core.params import load_params, setup_logging
from gazelib.model.floors import run_fit_floors


def main() -> None:
    setup_logging()
    run_fit_floors(params=load_params())


if __name__ == "__main__":
    main()
