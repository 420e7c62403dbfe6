"""The ``gazelib`` command: one verb per concern, each in the module that does the work.

Verbs are imported only when used, so ``gazelib --help`` is fast and a verb's heavy
dependencies (torch, onnxruntime, pymovements) load only for that verb.
"""
from __future__ import annotations

import importlib

import click

# verb -> "module:click command object"
COMMANDS = {
    "import": ("gazelib.gaze.importers.cli:import_cmd", "Convert vendor eye-tracking recordings into a gazelib corpus."),
    "predict": ("gazelib.serve.cli:predict_cmd", "Predict where people look in any video with a trained model folder."),
    "aoi": ("gazelib.aoi.cli:aoi_cmd", "Moving areas of interest (faces, speaker, user AOIs) and dwell / TTFF measures."),
    "export": ("gazelib.model.onnx_export:export_cmd", "Export a trained model folder to ONNX (dynamic time axis, parity-checked)."),
    "params": ("gazelib.core.params:params_cmd", "Check a params.yaml against the schema: prints ok, or the bad keys (exit 1)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """gazelib: learn where people look in videos from what they see, hear and what is said."""


if __name__ == "__main__":
    main()
