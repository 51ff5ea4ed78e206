"""The BOLD source registry (``--bold-source``): every kind found by its name or folder,
``auto`` resolved once and recorded, and a new kind that needs no participant change."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from bids_decode.errors import MissingInputError
from bids_decode.features.h5file import FeatureFile
from bids_decode.inputs import sources
from bids_decode.inputs.samples import Samples, SubjectInputs


@pytest.fixture
def bids(tmp_path):
    ds = tmp_path / "ds"
    (ds / "sub-01").mkdir(parents=True)
    (ds / "dataset_description.json").write_text(json.dumps({"Name": "x",
                                                             "BIDSVersion": "1.9.0"}))
    return ds


#: a --bold-source value of each registered kind (a new kind needs its example here)
BOLD_EXAMPLES = {"raw": "raw", "preproc-spm": "preproc-spm", "fmriprep": "fmriprep",
                 "bdata": "bdata=/data/Subject{subject}.h5"}


def test_every_bold_source_kind_is_found_by_its_name(bids):
    assert set(BOLD_EXAMPLES) == set(sources.BOLD_SOURCES)
    (bids / "derivatives" / "preproc-spm" / "output").mkdir(parents=True)
    (bids / "derivatives" / "fmriprep").mkdir(parents=True)
    for kind, cls in sources.BOLD_SOURCES.items():
        src = sources.BoldSource.parse(BOLD_EXAMPLES[kind], bids, {}, "MNI")
        assert type(src) is cls and src.kind == kind and src.space == "MNI"
        assert callable(src.subject_inputs)
    assert sources.BoldSource.parse("bdata=/d/S{subject}.h5", bids, {}, "T1w").root.name \
        == "S{subject}.h5"
    assert type(sources.BoldSource.parse("auto", bids, {}, "T1w")) is sources.PreprocSpmRuns
    fp = sources.BoldSource.parse("fmriprep", bids, {"fmriprep": str(bids)}, "T1w")
    assert fp.root == bids


def test_auto_is_resolved_once_and_the_source_records_its_value(bids, tmp_path, caplog):
    """``auto`` is preproc-spm where the dataset ships it, else raw, logged; every source
    records the value it stands for (what the run config records as ``bold_source``)."""
    caplog.set_level("INFO", logger="bids_decode")
    raw = sources.BoldSource.parse("auto", bids, {}, "T1w")
    assert type(raw) is sources.RawRuns and raw.option == "raw"
    assert "BOLD source: raw (--bold-source auto: no derivatives/preproc-spm" in caplog.text
    (bids / "derivatives" / "preproc-spm" / "output").mkdir(parents=True)
    caplog.clear()
    spm = sources.BoldSource.parse("auto", bids, {}, "T1w")
    assert type(spm) is sources.PreprocSpmRuns and spm.option == "preproc-spm"
    assert caplog.text.count("BOLD source: preproc-spm (--bold-source auto") == 1
    caplog.clear()
    for text in ("raw", "fmriprep", "bdata=/d/S{subject}.h5", str(bids)):
        derivatives = {"fmriprep": str(bids)}
        assert sources.BoldSource.parse(text, bids, derivatives, "T1w").option == text
    assert "BOLD source:" not in caplog.text  # only auto is resolved (and logged)


def test_bold_source_paths_are_detected_and_bad_ones_named(bids, tmp_path):
    spm = tmp_path / "spm" / "sub-01" / "func"
    spm.mkdir(parents=True)
    (spm / "sub-01_task-x_run-1_bold_preproc.nii.gz").write_bytes(b"")
    assert type(sources.BoldSource.parse(str(tmp_path / "spm"), bids, {}, "T1w")) \
        is sources.PreprocSpmRuns
    assert type(sources.BoldSource.parse(str(bids), bids, {}, "T1w")) is sources.FmriprepRuns
    for text, what in (("raw=x", "--bold-source"), ("bdata", "--bold-source"),
                       ("preproc-spm", "preproc-spm"), ("fmriprep", "fmriprep")):
        with pytest.raises(MissingInputError, match=f"folder for '{what}'"):
            sources.BoldSource.parse(text, bids, {}, "T1w")


@dataclass(frozen=True)
class _PlantedSource(sources.BoldSource):
    """A new kind: samples planted from the features (``planted=SEED``)."""

    kind: ClassVar[str] = "planted"
    takes_path: ClassVar[bool] = True
    features: ClassVar[str] = ""

    def subject_inputs(self, config, subject):
        rng = np.random.default_rng(int(str(self.root)))
        with FeatureFile(self.features) as ff:
            Y = next(ff.iter_unit_chunks("fc", np.arange(len(ff.names)), 10**6))[2]
            names = ff.names
        W = rng.standard_normal((Y.shape[1], 40))
        train = np.tile(np.arange(12), 4)
        X_train = Y[train] @ W + 0.3 * rng.standard_normal((train.size, 40))
        X_test = Y[12:] @ W + 0.3 * rng.standard_normal((6, 40))
        info = {"n_test_blocks": 6, "n_repeats_dropped": 0}
        samples = Samples(X_train.astype(np.float32), [names[i] for i in train],
                          np.zeros(train.size), X_test.astype(np.float32), names[12:],
                          np.ones(6), np.arange(40), info)
        mask = np.zeros(40, bool)
        mask[:30] = True
        return SubjectInputs(samples, {"planted": mask}, {"planted": ["none"]}, None)

    def input_files(self, config, subject):
        return []  # planted from the features: no file of its own


def test_a_new_bold_kind_needs_no_participant_change(bids, tmp_path, monkeypatch, feats):
    from bids_decode.config import RunConfig
    from bids_decode.participant import run_participant

    path = feats[0]
    monkeypatch.setitem(sources.BOLD_SOURCES, "planted", _PlantedSource)
    monkeypatch.setattr(_PlantedSource, "features", str(path))
    cfg = RunConfig(str(bids), str(tmp_path / "out"), "participant", roi=("VC",),
                    features=str(path), layers=("fc",), bold_source="planted=3",
                    n_voxels=20, work_dir=str(tmp_path / "work"))
    res = run_participant(cfg, "01")
    assert res["complete"] and [r["roi"] for r in res["rows"]] == ["planted"]
    # a linear planted code: decoded features follow the true ones
    assert res["rows"][0]["profile_r_mean"] > 0.5
    assert res["rows"][0]["n_test_images"] == 6
