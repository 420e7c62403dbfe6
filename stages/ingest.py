"""DVC stage `ingest`: parse params.yaml, run gazelib.gaze.ingest.run_ingest."""
from gazelib.core.params import load_params, setup_logging
from gazelib.gaze.ingest import run_ingest


def main() -> None:
    setup_logging()
    run_ingest(params=load_params())


if __name__ == "__main__":
    main()
