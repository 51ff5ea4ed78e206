"""Stimulus images: discovery, matching names to files, names from events files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bids_decode.errors import DataError, MissingInputError
from bids_decode.features.stimuli import discover_images, find_images, read_names
from tests.features.helpers import save_image

REAL_EVENTS = Path(__file__).resolve().parents[2] / "bids_decode" / "data" / "ds001246"


def test_find_images_by_name_extension_and_relative_path(tmp_path):
    folder = tmp_path / "stimuli"
    a = save_image(folder / "n01443537_22563.JPEG", (5, 6))
    b = save_image(folder / "sub" / "cat01.png", (5, 6))
    c = save_image(folder / "dog.tif", (5, 6))
    names = ["n01443537_22563", "sub/cat01.png", "stimuli/cat01.jpg", "dog.tif", "sub/cat01"]
    assert find_images(folder, names) == [a, b, b, c, b]


def test_find_images_lists_missing_names_and_folder(stimuli):
    folder, _, names = stimuli
    with pytest.raises(MissingInputError) as err:
        find_images(folder, [*names, "n99_1", "n99_2"])
    message = str(err.value)
    assert "2 of 5 stimulus images are missing" in message
    assert "'n99_1', 'n99_2'" in message and str(folder) in message


def test_find_images_ambiguous_name(tmp_path):
    folder = tmp_path / "stimuli"
    save_image(folder / "a" / "x.png", (5, 6))
    save_image(folder / "b" / "x.jpg", (5, 6))
    with pytest.raises(DataError, match=r"'x' matches 2 images"):
        find_images(folder, ["x"])
    assert find_images(folder, ["a/x"]) == [folder / "a" / "x.png"]


def test_discover_images_and_names(stimuli, tmp_path):
    folder, paths, _ = stimuli
    (folder / "notes.txt").write_text("not an image")
    found, names = discover_images(folder)
    assert names == sorted(["img_b", "img_c", "n01443537_22563"])
    assert set(found) == set(paths)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(MissingInputError, match="No images in .*empty_dir"):
        discover_images(empty)


def test_read_names_from_events(tmp_path):
    events = tmp_path / "sub-01_task-x_events.tsv"
    events.write_text(
        "onset\tduration\tstim_file\n0\t9\tn/a\n9\t9\tb.jpg\n18\t9\ta.png\n27\t9\tb.jpg\n"
    )
    assert read_names(events) == ["b.jpg", "a.png"]
    single = tmp_path / "names.tsv"
    single.write_text("image\nx\ny\n")
    assert read_names(single) == ["x", "y"]
    real = next(REAL_EVENTS.glob("sub-02/ses-perceptionTraining02/func/*run-05_events.tsv"))
    ds001246 = read_names(real)  # stimulus_name column, rest rows are n/a
    assert ds001246[0] == "n04587559_13336" and len(ds001246) == len(set(ds001246)) > 10
    other = tmp_path / "other.tsv"
    other.write_text("onset\tfoo\n0\tx\n")
    with pytest.raises(DataError, match=r"columns \['onset', 'foo'\], expected one of stim_file"):
        read_names(other)
