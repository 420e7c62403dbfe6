"""DVC stage `demo`: parse params.yaml, run gazelib.demo.corpus.run_demo."""
from gazelib.core.params import load_params, setup_logging
from gazelib.demo.corpus import run_demo


def main() -> None:
    setup_logging()
    run_demo(params=load_params())


if __name__ == "__main__":
    main()
