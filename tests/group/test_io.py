"""Finding and checking the participant outputs: too few subjects and mismatched parameters
are clear errors that write nothing."""

from __future__ import annotations

import json

import pytest

from bids_decode import cli
from bids_decode.outputs.paths import func_path
from tests.group.simulated import TASK, copy_outputs


@pytest.mark.slow
def test_fewer_than_two_subjects_is_a_clear_error(outputs, tmp_path, capsys):
    base = [str(outputs["bids"]), str(outputs["out"]), "group", "-q"]
    assert cli.main([*base, "--participant-label", "sub-02"]) == 66
    err = capsys.readouterr().err
    assert "at least two" in err and "sub-02" in err and "participant" in err
    alone = copy_outputs(outputs["out"], tmp_path / "alone", ["01"])
    assert cli.main([str(outputs["bids"]), str(alone), "group", "-q"]) == 66
    assert "at least two" in capsys.readouterr().err
    assert cli.main([*base, "--participant-label", "07", "01"]) == 66
    assert "sub-07" in capsys.readouterr().err


@pytest.mark.slow
def test_mismatched_parameters_are_a_clear_error(outputs, tmp_path, capsys):
    odd = copy_outputs(outputs["out"], tmp_path / "odd", ["01", "02"])
    side = func_path(odd, "02", TASK, net="simulated", desc="LVC", suffix="decoding",
                     ext=".json")
    d = json.loads(side.read_text())
    d["Alpha"] = 10.0
    side.write_text(json.dumps(d))
    assert cli.main([str(outputs["bids"]), str(odd), "group", "-q"]) == 65
    err = capsys.readouterr().err
    assert "Alpha" in err and "sub-01=100.0" in err and "sub-02=10.0" in err
    assert "--participant-label" in err
    func_path(odd, "02", TASK, net="simulated", desc="VC", suffix="decoding", ext=".h5").unlink()
    assert cli.main([str(outputs["bids"]), str(odd), "group", "-q"]) == 65
    assert "ROIs" in capsys.readouterr().err
    assert not (odd / "group"
                / f"task-{TASK}_net-simulated_desc-crosssubject_correlation.tsv").exists()
