"""The Boutiques descriptor: generated from the parameter declarations, valid for bosh, and its
example invocation becomes a command line that the CLI parses to the same values."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bids_decode import boutiques
from bids_decode.cli import build_parser, parse_args
from bids_decode.config import PARAMS

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTOR = ROOT / "boutiques" / "bids_decode.json"
INVOCATION = ROOT / "boutiques" / "invocation.json"
BOSH = shutil.which("bosh") or str(Path(sys.executable).with_name("bosh"))
needs_bosh = pytest.mark.skipif(not Path(BOSH).exists(), reason="boutiques (bosh) not installed")


def test_committed_descriptor_is_the_generated_one():
    assert json.loads(DESCRIPTOR.read_text()) == boutiques.descriptor(), \
        "regenerate: python -m bids_decode.boutiques boutiques/bids_decode.json"
    assert DESCRIPTOR.read_text() == boutiques.render()


def test_descriptor_lists_every_option():
    desc = boutiques.descriptor()
    flags = {i.get("command-line-flag") for i in desc["inputs"]}
    ids = [i["id"] for i in desc["inputs"]]
    for action in build_parser()._actions:
        if action.option_strings and action.dest not in ("help", "version"):
            assert set(action.option_strings) & flags, action.option_strings
    assert {p.name for p in PARAMS if p.flags} <= set(ids)
    assert ids[:3] == ["bids_dir", "output_dir", "analysis_level"]
    kinds = {i["id"]: i["type"] for i in desc["inputs"]}
    assert kinds["n_voxels"] == "Number" and kinds["list_inputs"] == "Flag"
    assert kinds["features"] == "File" and kinds["bids_dir"] == "File"


def test_a_new_parameter_enters_the_descriptor(monkeypatch):
    real = build_parser

    def with_dummy():
        p = real()
        p.add_argument("--dummy-penalty", type=float, metavar="FLOAT", help="a dummy")
        return p

    monkeypatch.setattr("bids_decode.boutiques.cli.build_parser", with_dummy)
    (item,) = [i for i in boutiques.descriptor()["inputs"] if i["id"] == "dummy_penalty"]
    assert item["command-line-flag"] == "--dummy-penalty" and item["type"] == "Number"
    assert "[DUMMY_PENALTY]" in boutiques.descriptor()["command-line"]


@needs_bosh
def test_bosh_validates_the_descriptor():
    res = subprocess.run([BOSH, "validate", str(DESCRIPTOR)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@needs_bosh
def test_bosh_simulate_gives_a_command_line_the_cli_accepts():
    res = subprocess.run([BOSH, "exec", "simulate", str(DESCRIPTOR), "-i", str(INVOCATION)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    line = res.stdout.split("Generated Command:", 1)[1].strip().splitlines()[0]
    argv = shlex.split(line)
    assert argv[0] == "bids_decode"
    config = parse_args(argv[1:])
    inv = json.loads(INVOCATION.read_text())
    for key, value in inv.items():
        got = getattr(config, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, key
