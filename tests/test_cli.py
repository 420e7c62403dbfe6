"""The `gazelib` command: every registered verb loads and has help."""
from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from gazelib.cli import COMMANDS, main


def test_top_level_help_lists_every_verb():
    out = CliRunner().invoke(main, ["--help"])
    assert out.exit_code == 0
    for verb in COMMANDS:
        assert verb in out.output


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_each_verb_has_help(verb):
    out = CliRunner().invoke(main, [verb, "--help"])
    assert out.exit_code == 0, out.output
    assert "Usage:" in out.output and len(out.output) > 200


def test_unknown_verb_is_an_error():
    out = CliRunner().invoke(main, ["frobnicate"])
    assert out.exit_code != 0 and "No such command" in out.output


def test_console_entry_point_is_installed():
    proc = subprocess.run([sys.executable, "-m", "gazelib.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "import" in proc.stdout
