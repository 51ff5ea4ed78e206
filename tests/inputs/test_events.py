"""Event conventions: ds001246 strings, ds001506 numeric codes, events.json Levels, the option."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from bids_decode.errors import DataError, UsageError
from bids_decode.inputs.events import EventSpec, canonical, parse_sample_events, read_blocks
from bids_decode.inputs.samples import average_by_label

DS1506 = Path(__file__).resolve().parents[2] / "bids_decode" / "data" / "ds001506" / "sub-01"


def _blocks(pattern: str, task: str = "perception"):
    files = sorted(DS1506.glob(f"ses-{pattern}/func/*_events.tsv"))
    assert files, pattern
    return [read_blocks(f, EventSpec.for_task(task)) for f in files]


def test_real_ds001506_events_of_sub01_give_the_published_counts():
    """6,000 training trials of 1,200 images; 50 natural, 40 artificial, 10 letter images."""
    train = _blocks("perceptionNaturalImageTraining*")
    labels = [lab for b in train for lab in b.labels]
    assert len(train) == 120 and len(labels) == 6000
    names, counts = np.unique(labels, return_counts=True)
    assert names.size == 1200 and set(counts) == {5}
    # repetition blocks (event_type 2) are left out, and counted
    assert sum(b.n_repeats for b in train) == 600
    assert {b.convention.split(":")[0] for b in train} == {"kamitani-numeric"}
    for pattern, n_runs, n_images, per_image in (
            ("perceptionNaturalImageTest*", 24, 50, 24),
            ("perceptionArtificialImage*", 20, 40, 20),
            ("perceptionLetterImage*", 12, 10, 12)):
        blocks = _blocks(pattern)
        labels = [lab for b in blocks for lab in b.labels]
        names, counts = np.unique(labels, return_counts=True)
        assert (len(blocks), names.size, set(counts)) == (n_runs, n_images, {per_image}), pattern
    # --train-average: one sample per image
    X = np.arange(len(labels), dtype=np.float32)[:, None]
    Xm, uniq, n, first = average_by_label(X, labels, sort=False)
    assert len(uniq) == 10 and set(n) == {12}
    assert Xm[0, 0] == pytest.approx(np.mean([i for i, lab in enumerate(labels)
                                              if lab == uniq[0]]))
    assert labels[first[3]] == uniq[3] and labels.index(uniq[3]) == first[3]


def test_real_ds001506_imagery_uses_code_2_and_category_name():
    blocks = _blocks("imagery*", task="imagery")
    labels = [lab for b in blocks for lab in b.labels]
    assert len(blocks) == 20 and len(labels) == 520
    assert len(set(labels)) == 26 and all(lab.startswith("n") and "_" not in lab
                                          for lab in labels)
    assert all(np.all(b.durations == 8.0) for b in blocks)  # the imagery period, not the cue
    assert "event_type = 2" in blocks[0].convention


def test_ds001246_strings_still_drop_one_back_repeats(real_events_dir):
    ev = sorted(real_events_dir.glob("sub-01/ses-perceptionTraining01/func/*_events.tsv"))[0]
    b = read_blocks(ev, EventSpec.for_task("perception"))
    assert (len(b.labels), b.n_repeats) == (50, 5)
    assert b.convention.startswith("ds001246") and "one-back" in b.convention
    ev = sorted(real_events_dir.glob("sub-01/ses-imageryTest01/func/*_events.tsv"))[0]
    b = read_blocks(ev, EventSpec.for_task("imagery"))
    assert b.convention.startswith("ds001246: samples are rows with event_type = imagery")


def test_read_blocks_real_events_drops_one_back_repeats(real_events_dir):
    ev = sorted(real_events_dir.glob(
        "sub-01/ses-perceptionTraining01/func/*_run-01_events.tsv"))[0]
    df = pd.read_csv(ev, sep="\t", dtype=str)
    stim = df[df.event_type == "stimulus"].stimulus_name.tolist()
    n_repeats = sum(a == b for a, b in zip(stim[1:], stim[:-1]))
    blocks = read_blocks(ev, None)
    assert blocks.n_repeats == n_repeats == 5
    assert len(blocks.labels) == len(stim) - 5 == 50
    assert len(set(blocks.labels)) == 50
    assert blocks.onsets[0] == 33.0 and np.all(blocks.durations == 9.0)


def test_read_blocks_imagery_events_have_no_stimulus_column(real_events_dir):
    ev = sorted(real_events_dir.glob("sub-01/ses-imageryTest01/func/*_events.tsv"))[0]
    with pytest.raises(DataError, match="stimulus-column"):
        read_blocks(ev, None)


def _events(tmp_path, codes, names, name="sub-01_task-x_run-01_events.tsv"):
    (tmp_path / "dataset_description.json").write_text("{}")
    df = pd.DataFrame({"onset": np.arange(len(codes)) * 4.0, "duration": 4.0,
                       "event_type": codes, "stimulus_name": names})
    path = tmp_path / name
    df.to_csv(path, sep="\t", index=False, na_rep="n/a")
    return path


def test_unknown_convention_is_a_data_error_naming_file_values_and_option(tmp_path):
    ev = _events(tmp_path, ["5", "7", "7", "9"], ["n/a", "a", "b", "n/a"])
    with pytest.raises(DataError) as err:
        read_blocks(ev, EventSpec.for_task("perception"))
    msg = str(err.value)
    assert str(ev) in msg and "['5', '7', '9']" in msg and "--sample-events event_type=" in msg
    # the option states it
    b = read_blocks(ev, EventSpec.for_task("perception", None, ("event_type", ("7",))))
    assert b.labels == ["a", "b"] and b.convention.startswith("option")


def test_events_json_levels_name_the_sample_and_repeat_codes(tmp_path):
    ev = _events(tmp_path, ["0", "7", "8", "7", "0"], ["n/a", "a", "a", "b", "n/a"])
    (tmp_path / "task-x_events.json").write_text(json.dumps({"event_type": {"Levels": {
        "0": "inter-trial rest", "7": "Stimulus presentation block (forest scenes)",
        "8": "Repetition of the stimulus"}}}))
    b = read_blocks(ev, EventSpec.for_task("perception"))
    assert b.labels == ["a", "b"] and b.n_repeats == 1
    assert b.convention.startswith("events.json") and "event_type = 8 marks repeats" in b.convention
    # levels that name no sample block: an error naming the sidecar
    (tmp_path / "task-x_events.json").write_text(json.dumps({"event_type": {"Levels": {
        "0": "rest", "7": "fixation", "8": "button"}}}))
    with pytest.raises(DataError, match="task-x_events.json"):
        read_blocks(ev, EventSpec.for_task("perception"))


def test_events_json_levels_of_ds001506_imagery(tmp_path):
    ev = _events(tmp_path, ["-1", "1", "2", "3", "4", "1", "2", "3", "4"],
                 ["n/a"] + ["cat1"] * 4 + ["cat2"] * 4, name="sub-01_task-imagery_events.tsv")
    ev_df = pd.read_csv(ev, sep="\t").rename(columns={"stimulus_name": "category_name"})
    ev_df.to_csv(ev, sep="\t", index=False, na_rep="n/a")
    (tmp_path / "task-imagery_events.json").write_text(json.dumps({"event_type": {"Levels": {
        "-1": "rest block", "1": "cue presentation period", "2": "imagery period",
        "3": "evaluation of imagery quality period", "4": "inter-trial and post rest period"}}}))
    b = read_blocks(ev, EventSpec.for_task("imagery"))
    assert b.labels == ["cat1", "cat2"] and list(b.onsets) == [8.0, 24.0]
    assert b.convention.startswith("events.json: samples are rows with event_type = 2")


def test_sample_events_option_parsing():
    assert parse_sample_events(["event_type=1"]) == {"train": ("event_type", ("1",)),
                                                     "test": ("event_type", ("1",))}
    got = parse_sample_events(["train:event_type=1.0", "test:event_type=2,3"])
    assert got == {"train": ("event_type", ("1",)), "test": ("event_type", ("2", "3"))}
    for bad in ("event_type", "=1", "event_type="):
        with pytest.raises(UsageError, match="--sample-events"):
            parse_sample_events([bad])
    assert canonical("-1.0") == "-1" and canonical("stimulus") == "stimulus"


def test_missing_test_images_are_named_exactly(tmp_path):
    from bids_decode.features.h5file import FeatureFile

    names = [f"n0000000{i}_{i}" for i in range(6)]
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("stimulus_name", data=np.array(names[1:], dtype=object),
                         dtype=h5py.string_dtype())
        f.create_dataset("layers/fc", data=np.zeros((5, 3), np.float32))
    with FeatureFile(path) as ff, pytest.raises(DataError) as err:
        ff.targets(names)
    msg = str(err.value)
    assert "1 of the 6 test labels" in msg and f"['{names[0]}']" in msg
    assert not any(n in msg for n in names[1:])


def test_malformed_sample_events_is_a_usage_error(tmp_path, capsys):
    from bids_decode.cli import main, parse_args

    assert main([str(tmp_path), str(tmp_path / "out"), "participant",
                 "--sample-events", "event_type"]) == 64
    assert "--sample-events takes" in capsys.readouterr().err
    cfg = parse_args([str(tmp_path), str(tmp_path / "o"), "participant", "--sample-events",
                      "train:event_type=1", "test:event_type=2", "--train-average"])
    assert cfg.sample_events_for("test") == ("event_type", ("2",)) and cfg.train_average
    assert {"sample_events", "train_average"} <= set(cfg.decoding_fingerprint())
