"""DVC stage `bias_inputs`: parse params.yaml, run gazelib.pipeline.bias_inputs.run_bias_inputs (content-free clips
through the real extractors, for the bias-entropy diagnostic and the entropy regulariser)."""
from gazelib.core.params import load_params, setup_logging
from gazelib.pipeline.bias_inputs import run_bias_inputs


def main() -> None:
    setup_logging()
    run_bias_inputs(params=load_params())


if __name__ == "__main__":
    main()
