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


def test_params_check_prints_ok_or_the_bad_keys(tmp_path):
    """`gazelib params check [PATH]`: the committed params.yaml is ok; a mistyped key and a bad
    value are named, exit 1; a missing file is named, exit 1."""
    import yaml

    ok = CliRunner().invoke(main, ["params", "check"])
    assert ok.exit_code == 0 and ok.output.strip() == "ok", ok.output
    raw = yaml.safe_load(open("params.yaml"))
    raw["train"]["lambda_entorpy"] = 1.0
    raw["train"]["max_track_age_s"] = -1.0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    out = CliRunner().invoke(main, ["params", "check", str(bad)])
    assert out.exit_code == 1, out.output
    assert "train.lambda_entorpy: unknown key (did you mean train.lambda_entropy?)" in out.output
    assert "train.max_track_age_s" in out.output and "ok" not in out.output.split()
    gone = CliRunner().invoke(main, ["params", "check", str(tmp_path / "none.yaml")])
    assert gone.exit_code == 1 and "none.yaml" in gone.output
