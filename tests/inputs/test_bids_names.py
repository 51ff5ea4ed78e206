"""BIDS names and inheritance: the one entity parser and the one sidecar resolver, on the real
ds001246 files and on a tree where sidecars at every level compete."""

from __future__ import annotations

import json

import pytest

from bids_decode.errors import DataError
from bids_decode.inputs.bids_names import entities_of, inherited_sidecars, sidecar_folders
from bids_decode.inputs.events import sidecar_levels
from bids_decode.inputs.layout import inherited_metadata


def test_entities_of_real_ds001246_names(real_events_dir):
    ev = sorted(real_events_dir.glob("sub-01/ses-perceptionTraining01/func/*_events.tsv"))[0]
    assert entities_of(ev.name) == {"sub": "01", "ses": "perceptionTraining01",
                                    "task": "perception", "run": "01"}
    assert entities_of("task-perception_bold.json") == {"task": "perception"}
    assert entities_of("sub-01_ses-x_task-y_run-1_bold.nii.gz")["run"] == "1"


def test_real_top_level_sidecar_gives_every_run_its_tr(real_events_dir):
    for ev in sorted(real_events_dir.glob("sub-0*/ses-*/func/*_events.tsv"))[::40]:
        task = entities_of(ev.name)["task"]
        assert inherited_sidecars(ev, "*_bold.json", real_events_dir) \
            == [real_events_dir / f"task-{task}_bold.json"]
        assert inherited_metadata(real_events_dir, ev)["RepetitionTime"] == 3


@pytest.fixture
def tree(tmp_path):
    """A dataset whose BOLD and events sidecars sit at the top, subject and run levels, with
    sidecars of another task, subject and run beside them."""
    ds = tmp_path / "ds"
    func = ds / "sub-01" / "ses-a" / "func"
    func.mkdir(parents=True)
    (ds / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    sidecars = {
        ds / "task-x_bold.json": {"RepetitionTime": 2.0, "Top": 1},
        ds / "task-y_bold.json": {"RepetitionTime": 9.0},
        ds / "sub-01" / "sub-01_task-x_bold.json": {"RepetitionTime": 3.0, "Sub": 1},
        ds / "sub-01" / "sub-02_task-x_bold.json": {"RepetitionTime": 8.0},
        func / "sub-01_ses-a_task-x_run-1_bold.json": {"Run": 1},
        func / "sub-01_ses-a_task-x_run-2_bold.json": {"RepetitionTime": 7.0},
        ds / "task-x_events.json": {"event_type": {"Levels": {"1": "stimulus block"}}},
        func / "sub-01_ses-a_task-x_run-1_events.json":
            {"event_type": {"Levels": {"2": "stimulus presentation"}}},
        func / "sub-01_ses-a_task-x_run-2_events.json":
            {"event_type": {"Levels": {"3": "stimulus"}}},
    }
    for path, content in sidecars.items():
        path.write_text(json.dumps(content))
    events = func / "sub-01_ses-a_task-x_run-1_events.tsv"
    events.write_text("onset\tduration\n0\t1\n")
    return ds, events


def test_deeper_sidecars_override_and_others_are_left_out(tree):
    ds, events = tree
    func = events.parent
    assert inherited_sidecars(events, "*_bold.json", ds) == [
        ds / "task-x_bold.json", ds / "sub-01" / "sub-01_task-x_bold.json",
        func / "sub-01_ses-a_task-x_run-1_bold.json"]
    assert inherited_metadata(ds, events) == {"RepetitionTime": 3.0, "Top": 1, "Sub": 1,
                                              "Run": 1}
    # the events resolver finds the dataset's top by its description, and the deepest wins
    assert sidecar_folders(events) == [ds, ds / "sub-01", ds / "sub-01" / "ses-a", func]
    assert inherited_sidecars(events, "*_events.json") == [
        ds / "task-x_events.json", func / "sub-01_ses-a_task-x_run-1_events.json"]
    assert sidecar_levels(events) == ({"2": "stimulus presentation"},
                                      func / "sub-01_ses-a_task-x_run-1_events.json")
    # a file outside the dataset: the top level and its own folder
    outside = ds.parent / "elsewhere" / events.name
    assert sidecar_folders(outside, ds) == [ds, outside.parent]


def test_a_broken_sidecar_is_named_by_both_readers(tree):
    ds, events = tree
    broken = events.parent / "sub-01_ses-a_task-x_run-1_events.json"
    broken.write_text("{not json")
    with pytest.raises(DataError, match=f"The events sidecar {broken} is not valid JSON"):
        sidecar_levels(events)
    bold_json = ds / "sub-01" / "sub-01_task-x_bold.json"
    bold_json.write_text("[1,")
    with pytest.raises(DataError, match=f"The sidecar {bold_json} is not valid JSON"):
        inherited_metadata(ds, events)
