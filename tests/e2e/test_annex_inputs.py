"""The datasets as DataLad serves them: the real ds001246 annex tree of sub-01 (tests/data,
written by tests/data/make_annex_trees.py from github.com/OpenNeuroDatasets/ds001246).

- a run on the tree without content stops at once (exit 66) with the count and size of the
  needed files, read here from the annex keys independently of bids_decode;
- ``--list-inputs`` lists exactly the files that a run on complete data opens (traced with an
  audit hook on a copy of the tree whose links are replaced by simulated content), and a run on
  a copy holding only those files gives the same outputs bit for bit.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from bids_decode.cli import main
from bids_decode.errors import EXIT_NOINPUT

TREE = Path(__file__).resolve().parents[1] / "data" / "ds001246-annex"
ROOT = Path(__file__).resolve().parents[2]
VC_PARTS = ("V1d", "V1v", "V2d", "V2v", "V3d", "V3v", "hV4", "HVC")


def _tree_files() -> dict[str, Path]:
    """Every file of the shipped tree, relative path -> path (links included)."""
    out = {}
    for folder, _, names in os.walk(TREE):
        for n in names:
            p = Path(folder) / n
            out[p.relative_to(TREE).as_posix()] = p
    return out


def _expected(task="perception", train="perceptionTraining", test="perceptionTest",
              source="preproc-spm", parts=VC_PARTS) -> set[str]:
    """The files a run reads, from the file names alone (independent of bids_decode)."""
    want = set()
    for rel in _tree_files():
        m = re.match(r"sub-01/ses-(\w+?)\d\d/func/sub-01_ses-\w+_task-(\w+)_run-\d+_events\.tsv",
                     rel)
        if m and ((m[2] == "perception" and m[1] == train) or (m[2] == task and m[1] == test)):
            stem = rel[: -len("_events.tsv")]
            want |= {rel, stem + "_bold.nii.gz"}
            if source == "preproc-spm":
                want.add("derivatives/preproc-spm/output/" + stem + "_bold_preproc.nii.gz")
    masks = {f"sourcedata/sub-01/anat/sub-01_mask_{h}_{p}.nii.gz"
             for p in parts for h in ("LH", "RH")}
    sidecars = {f"task-{t}_bold.json" for t in {"perception", task}}
    return want | masks | sidecars


def _list(capsys, bids, *options) -> list[str]:
    code = main([str(bids), str(bids.parent / "never-written"), "participant",
                 "--participant-label", "01", "--list-inputs", *options])
    out = capsys.readouterr().out
    assert code == 0
    assert not (bids.parent / "never-written").exists()  # nothing written
    return out.splitlines()


def test_annex_keys_links_and_pointer_files(tmp_path):
    from bids_decode.inputs.annex import absent, key_size, listed, matching

    assert key_size("MD5E-s49910870--be70fd14350f28c0d9cb5c15ff9dc36a.nii.gz") == 49910870
    assert key_size("SHA256E-s0--e3b0c4.nii.gz") == 0
    assert key_size("URL--https&c%%example.org%x.nii.gz") is None
    link = tmp_path / "a_bold.nii.gz"
    os.symlink("../.git/annex/objects/XX/YY/MD5E-s123--ab.nii.gz/MD5E-s123--ab.nii.gz", link)
    pointer = tmp_path / "b_bold.nii.gz"
    pointer.write_text("/annex/objects/SHA256E-s77--cd.nii.gz\n")
    real = tmp_path / "c_bold.nii.gz"
    real.write_bytes(b"\x1f\x8b content")
    assert absent(link).key == "MD5E-s123--ab.nii.gz" and absent(link).size == 123
    assert absent(pointer).size == 77
    assert absent(real) is None and absent(tmp_path / "none") is None
    assert listed(link) and listed(pointer) and not listed(tmp_path / "none")
    # Path.glob drops the link for a pattern without wildcard (Python < 3.12); matching doesn't
    assert matching(tmp_path, "a_bold.nii.gz") == [link]
    assert matching(tmp_path, "*_bold.nii.gz") == [link, pointer, real]


def test_annex_tree_without_content_stops_with_count_size_and_command(capsys, tmp_path,
                                                                      monkeypatch):
    from bids_decode.inputs import validation

    def no_validator(*a, **k):
        raise AssertionError("the validator ran over absent files")

    monkeypatch.setattr(validation, "validator_issues", no_validator)
    files = _tree_files()
    needed = sorted(r for r in _expected() if files[r].is_symlink())
    sizes = [int(re.search(r"-s(\d+)--", os.readlink(files[r]))[1]) for r in needed]
    assert len(needed) == 134 and sum(sizes) > 5e9  # 59 runs, raw and preproc-spm; 16 masks
    out = tmp_path / "out"
    code = main([str(TREE), str(out), "participant", "--participant-label", "01"])
    err = capsys.readouterr().err
    assert code == EXIT_NOINPUT, err
    msg = err.split("bids_decode: error: ", 1)[1]
    assert "Traceback" not in err and msg.count("\n") == 1  # one paragraph
    assert msg.startswith(f"{len(needed)} of the {len(_expected())} files this run reads")
    assert f"{sum(sizes) / 1e9:.3g} GB in all" in msg
    assert f"cd {TREE} && datalad get $(cat " in msg
    listing = next((out / "logs").glob("missing_content_sub-01_*.txt"))
    assert str(listing) in msg
    assert listing.read_text().splitlines() == needed
    assert not list(out.glob("sub-*"))  # nothing else written


def test_unlocked_pointer_files_count_as_absent(capsys, tmp_path):
    """An unlocked (adjusted) clone: the masks as pointer files, the rest as links."""
    bids = tmp_path / "ds"
    shutil.copytree(TREE, bids, symlinks=True)
    for link in (bids / "sourcedata" / "sub-01" / "anat").iterdir():
        key = Path(os.readlink(link)).name
        link.unlink()
        link.write_text(f"/annex/objects/{key}\n")
    code = main([str(bids), str(tmp_path / "out"), "participant", "--participant-label", "01",
                 "--bold-source", "raw", "--roi", "V1"])
    err = capsys.readouterr().err
    assert code == EXIT_NOINPUT
    n = len([r for r in _expected(source="raw", parts=("V1d", "V1v")) if r.endswith(".nii.gz")])
    assert f"{n} of the" in err and n == 59 + 4
    assert "sourcedata/sub-01/anat/sub-01_mask_LH_V1d.nii.gz" in \
        next((tmp_path / "out" / "logs").glob("missing_content_*.txt")).read_text()


@pytest.mark.parametrize("options,expected", [
    ((), {}),
    (("--bold-source", "raw", "--roi", "V1", "HVC"),
     {"source": "raw", "parts": ("V1d", "V1v", "HVC")}),
    (("--task", "imagery"), {"task": "imagery", "test": "imageryTest"}),
    (("--train-session", "perceptionTraining01", "--test-session", "perceptionTest04"), None),
])
def test_list_inputs_on_the_annex_tree(capsys, options, expected):
    listed = _list(capsys, TREE, *options)
    files = _tree_files()
    assert all(r in files for r in listed), "every listed path is in the tree"
    assert len(listed) == len(set(listed))
    if expected is None:  # one training and one test session
        want = {r for r in _expected() if "Training02" not in r and "Training03" not in r
                and not re.search(r"perceptionTest0[123]", r)}
        assert len([r for r in want if r.endswith("_events.tsv")]) == 10 + 10
    else:
        want = _expected(**expected)
    assert set(listed) == want


def test_list_inputs_user_masks_and_derivatives_masks(capsys, tmp_path):
    """--roi NAME=PATH (in and outside the dataset) and -d masks folders select mask files."""
    bids = tmp_path / "ds"
    shutil.copytree(TREE, bids, symlinks=True)
    mine = "sourcedata/sub-01/anat/sub-01_mask_LH_FFA.nii.gz"
    listed = _list(capsys, bids, "--bold-source", "raw", "--roi",
                   f"FFAl={bids}/{mine.replace('sub-01', 'sub-{subject}')}",
                   f"other={tmp_path}/outside.nii.gz")
    assert mine in listed and not any("outside" in r for r in listed)
    masks = bids / "derivatives" / "masks" / "sub-01" / "anat"
    masks.mkdir(parents=True)
    (masks / "sub-01_desc-PPA_mask.nii.gz").write_bytes(b"")
    shutil.rmtree(bids / "sourcedata")
    listed = _list(capsys, bids, "--bold-source", "raw", "--roi", "PPA", "-d",
                   f"masks={bids}/derivatives/masks")
    assert [r for r in listed if "mask" in r] == ["derivatives/masks/sub-01/anat/"
                                                  "sub-01_desc-PPA_mask.nii.gz"]


# ------------------------------------------------------------- against a run on full data


def _complete_tree(sim_dir: Path, dest: Path) -> int:
    """A copy of the annex tree with every link replaced by content: the simulated file of the
    same path, else (images no run of these options reads) unreadable bytes."""
    shutil.copytree(TREE, dest, symlinks=True)
    n_sim = 0
    for folder, _, names in os.walk(dest):
        for name in names:
            p = Path(folder) / name
            if not p.is_symlink():
                continue
            p.unlink()
            src = sim_dir / p.relative_to(dest)
            if src.is_file():
                shutil.copyfile(src, p)
                n_sim += 1
            else:
                p.write_bytes(b"placeholder: not an image")
    return n_sim


class _Opened:
    """Paths opened under a folder (``open`` audit events: builtins, io, gzip, pandas)."""

    def __init__(self, root: Path):
        self.root, self.paths, self.on = str(root) + os.sep, set(), False

    def __call__(self, event, args):
        if self.on and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.abspath(os.fsdecode(args[0]))
            if path.startswith(self.root) and os.path.isfile(path):
                self.paths.add(path[len(self.root):])


@pytest.fixture(scope="module")
def tracer():
    t = _Opened(Path("/nonexistent"))
    sys.addaudithook(t)  # (audit hooks cannot be removed: switched off after use)
    return t


@pytest.mark.slow
def test_list_inputs_is_what_a_run_on_complete_data_reads(capsys, tmp_path, tracer):
    from bids_decode.simulate import simulate_dataset

    sim = simulate_dataset(tmp_path / "sim", n_subjects=1, n_train_runs=24, n_test_runs=35,
                           n_imagery_runs=0, preproc_spm=True, seed=11)
    bids = tmp_path / "ds"
    assert _complete_tree(sim["bids_dir"], bids) == 2 * 59 + 22  # runs x2 and every mask
    listed = _list(capsys, TREE)
    options = ["--participant-label", "01", "--features", str(sim["features"]), "--n-voxels",
               "30", "--n-permutations", "20", "--skip-bids-validation", "-q"]
    tracer.root, tracer.on = str(bids) + os.sep, True
    try:
        assert main([str(bids), str(tmp_path / "out-complete"), "participant", *options]) == 0
    finally:
        tracer.on = False
    read = tracer.paths
    # pybids also reads every top-level JSON while indexing; below the top level, the list
    # is exactly what the run opened
    assert {r for r in read if "/" in r} == {r for r in listed if "/" in r}
    assert {r for r in listed if "/" not in r} <= read
    # a dataset holding only the listed files (and the top-level metadata), at the same path
    bids.rename(tmp_path / "ds-complete")
    for rel in listed + [p.name for p in (tmp_path / "ds-complete").iterdir() if p.is_file()]:
        (bids / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "ds-complete" / rel, bids / rel)
    assert main([str(bids), str(tmp_path / "out-listed"), "participant", *options]) == 0
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from compare_derivatives import compare
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert compare(tmp_path / "out-complete", tmp_path / "out-listed") == []
