"""ds001506 (Deep Image Reconstruction) end to end: the real layout and events of sub-01, numeric
event codes detected, decoded with the session flags alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from bids_decode.cli import main
from bids_decode.errors import EXIT_VALIDATION
from bids_decode.inputs.validation import find_validator

TRAIN = "perceptionNaturalImageTraining*"
pytestmark = pytest.mark.slow  # the module's dataset takes ~40 s to simulate


@pytest.fixture(scope="module")
def ds1506(tmp_path_factory):
    """sub-01 on ds001506's real layout: all 120 training runs (15 sessions), the 24 natural-
    image test runs, the 20 artificial-shape runs, the 12 letter runs and 4 imagery runs."""
    from bids_decode.simulate import simulate_dataset

    return simulate_dataset(tmp_path_factory.mktemp("ds1506") / "ds", n_subjects=1,
                            n_train_runs=120, n_test_runs=24, n_imagery_runs=4,
                            layout="ds001506", seed=7)


def _accuracy_vs_truth(ds, out, task="perception"):
    res = {}
    path = out / "sub-01" / "func" / f"sub-01_task-{task}_net-simulated_desc-VC_decoding.h5"
    with h5py.File(path) as h5:
        for layer in ds["truth"]:
            acc = h5[layer]["accuracy"][()].ravel()
            rho = ds["truth"][layer].ravel()
            ok = np.isfinite(rho)
            res[layer] = spearmanr(acc[ok], rho[ok])[0]
    return res


def test_simulated_layout_is_ds001506s(ds1506):
    bids = ds1506["bids_dir"]
    sessions = sorted(p.name for p in (bids / "sub-01").iterdir())
    assert [s for s in sessions if "Training" in s] == [
        f"ses-perceptionNaturalImageTraining{i:02d}" for i in range(1, 16)]
    assert "ses-perceptionLetterImage01" in sessions and "ses-imagery01" in sessions
    assert json.loads((bids / "task-perception_bold.json").read_text())["RepetitionTime"] == 2.0
    ev = pd.read_csv(next((bids / "sub-01").glob(
        "ses-perceptionNaturalImageTraining01/func/*_run-01_events.tsv")), sep="\t")
    assert set(ev.event_type) == {-1, 1, 2, -2}  # the numeric codes, as published
    from bids_decode.inputs.validation import validate_bids

    validate_bids(bids)  # a valid BIDS dataset (raises otherwise)


@pytest.mark.parametrize("test_session,n_images", [("perceptionNaturalImageTest*", 50),
                                                   ("perceptionArtificialImage*", 40)])
def test_ds001506_decodes_with_the_session_flags_alone(ds1506, tmp_path, test_session,
                                                       n_images):
    out = tmp_path / "out"
    code = main([str(ds1506["bids_dir"]), str(out), "participant", "--features",
                 str(ds1506["features"]), "--train-session", TRAIN, "--test-session",
                 test_session, "--skip-bids-validation"])
    assert code == 0
    tsv = pd.read_csv(out / "sub-01" / "func" / "sub-01_task-perception_net-simulated_decoding.tsv",
                      sep="\t")
    assert (tsv.n_train_samples == 6000).all()  # every trial; repetition blocks left out
    assert (tsv.n_test_images == n_images).all()
    for layer, r in _accuracy_vs_truth(ds1506, out).items():
        assert r >= 0.6, f"{test_session} {layer}: Spearman {r:.2f}"
    cfg = json.loads((out / "sub-01" / "sub-01_task-perception"
        "_net-simulated_config.json").read_text())
    conv = cfg["provenance"]["samples"]["event_conventions"]
    assert conv["train"] == ["kamitani-numeric: samples are rows with event_type = 1, image in "
                             "'stimulus_name'; event_type = 2 marks repeats (not samples)"]
    log = next((out / "logs").glob("*.log")).read_text()
    assert "kamitani-numeric" in log


def test_ds001506_imagery_and_train_average(ds1506, tmp_path):
    """Imagery (event_type 2, category_name) decoded with decoders trained on perception,
    from one averaged sample per training image."""
    out = tmp_path / "imagery"
    code = main([str(ds1506["bids_dir"]), str(out), "participant", "--features",
                 str(ds1506["features"]), "--task", "imagery", "--train-session", TRAIN,
                 "--test-session", "imagery*", "--train-average", "--layers", "fc6", "fc8",
                 "--skip-bids-validation"])
    assert code == 0
    tsv = pd.read_csv(out / "sub-01" / "func" / "sub-01_task-imagery"
        "_net-simulated_decoding.tsv", sep="\t")
    assert (tsv.n_train_samples == 1200).all()
    with h5py.File(out / "sub-01" / "func" / "sub-01_task-imagery"
        "_net-simulated_desc-VC_decoding.h5") as h5:
        cats = [s.decode() for s in h5["stimulus_name"][()]]
    assert len(cats) == int(tsv.n_test_images.iloc[0]) and len(cats) >= 20
    assert all(c.startswith("n") and "_" not in c for c in cats)
    assert (tsv.identification_accuracy > 0.6).all()
    cfg = json.loads((out / "sub-01" / "sub-01_task-imagery_net-simulated_config.json").read_text())
    assert cfg["train_average"] is True
    assert cfg["provenance"]["samples"]["n_train_trials"] == 6000
    assert "event_type = 2" in cfg["provenance"]["samples"]["event_conventions"]["test"][0]


def test_unknown_convention_exits_65_naming_file_values_and_option(ds1506, tmp_path, capsys):
    import shutil

    bids = tmp_path / "ds"
    shutil.copytree(ds1506["bids_dir"], bids, ignore=shutil.ignore_patterns(
        "ses-perceptionNaturalImageTraining0[2-9]", "ses-perceptionNaturalImageTraining1*",
        "ses-imagery*", "ses-perceptionArtificial*", "ses-perceptionLetter*"))
    recoded = sorted(bids.glob("sub-01/ses-perceptionNaturalImageTest01/func/*_events.tsv"))
    for path in recoded:  # the test session with codes of its own
        ev = pd.read_csv(path, sep="\t", dtype=str)
        ev["event_type"] = ev["event_type"].map({"1": "11", "2": "12"}).fillna("0")
        ev.to_csv(path, sep="\t", index=False)
    victim = recoded[0]
    args = [str(bids), str(tmp_path / "out"), "participant", "--features",
            str(ds1506["features"]), "--train-session", TRAIN, "--test-session",
            "perceptionNaturalImageTest01", "--layers", "fc8", "--skip-bids-validation"]
    assert main(args) == 65
    err = capsys.readouterr().err
    assert "Traceback" not in err
    msg = [line for line in err.splitlines() if line.startswith("bids_decode: error:")]
    assert len(msg) == 1  # one paragraph, naming the file, the values found and the option
    assert victim.name in msg[0] and "['0', '11', '12']" in msg[0]
    assert "--sample-events event_type=11" in msg[0]
    # the option states it for the test runs only
    assert main([*args, "--sample-events", "test:event_type=11"]) == 0
    tsv = pd.read_csv(tmp_path / "out/sub-01/func/sub-01_task-perception"
        "_net-simulated_decoding.tsv",
                      sep="\t")
    assert (tsv.n_test_images == 50).all() and (tsv.n_train_samples == 400).all()


REAL_DESCRIPTION = Path(__file__).resolve().parents[1] / "data" / "ds001506" / \
    "dataset_description.json"


@pytest.mark.skipif(find_validator() is None, reason="bids-validator-deno not installed")
def test_ds001506s_own_description_does_not_stop_the_run(ds1506, tmp_path, capsys):
    """ds001506 as published: its dataset_description.json has "Funding": "" (one validator
    error, in a file the run does not read). The session flags alone run it, the finding is
    a warning in the log and the run's provenance; --strict-validation stops for it."""
    assert json.loads(REAL_DESCRIPTION.read_text())["Funding"] == ""
    bids = tmp_path / "ds"  # the simulated dataset, its files linked, the real description
    for src in ds1506["bids_dir"].rglob("*"):
        dst = bids / src.relative_to(ds1506["bids_dir"])
        if src.is_file() and src != ds1506["bids_dir"] / "dataset_description.json":
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
    shutil.copyfile(REAL_DESCRIPTION, bids / "dataset_description.json")
    flags = ["--features", str(ds1506["features"]), "--train-session", TRAIN,
             "--test-session", "perceptionNaturalImageTest*"]
    assert main([str(bids), str(tmp_path / "strict"), "participant", *flags,
                 "--strict-validation"]) == EXIT_VALIDATION
    assert "JSON_SCHEMA_VALIDATION_ERROR at /dataset_description.json" in capsys.readouterr().err
    out = tmp_path / "out"
    assert main([str(bids), str(out), "participant", *flags, "--n-permutations", "0"]) == 0
    tsv = pd.read_csv(out / "sub-01" / "func" / "sub-01_task-perception_net-simulated_decoding.tsv",
                      sep="\t")
    assert (tsv.n_train_samples == 6000).all() and (tsv.n_test_images == 50).all()
    cfg = json.loads((out / "sub-01" / "sub-01_task-perception_net-simulated_config.json")
                     .read_text())
    assert cfg["provenance"]["validation"]["warnings"] == [
        {"code": "JSON_SCHEMA_VALIDATION_ERROR (Funding)", "count": 1,
         "locations": ["/dataset_description.json"]}]
    log = next((out / "logs").glob("*.log")).read_text()
    assert "JSON_SCHEMA_VALIDATION_ERROR (Funding) (e.g. /dataset_description.json)" in log
