"""DVC stage `report`: parse params.yaml, run gazelib.report.html.run_report (writes reports/index.html)."""
from gazelib.core.params import load_params, setup_logging
from gazelib.report.html import run_report


def main() -> None:
    setup_logging()
    run_report(params=load_params())


if __name__ == "__main__":
    main()
