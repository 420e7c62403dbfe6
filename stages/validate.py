"""DVC stage `validate`: parse params.yaml, run gazelib.data.validate.run_validate."""
from gazelib.core.params import load_params, setup_logging
from gazelib.data.validate import run_validate


def main() -> None:
    setup_logging()
    run_validate(params=load_params())


if __name__ == "__main__":
    main()
