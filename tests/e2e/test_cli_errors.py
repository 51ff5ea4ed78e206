"""Bad input ends with a clear one-paragraph message, a documented exit code, no traceback."""

from __future__ import annotations

import shutil

import h5py
import nibabel as nib
import numpy as np
import pytest

from bids_decode.cli import main, parse_args
from bids_decode.errors import (
    EXIT_CANTCREAT,
    EXIT_DATAERR,
    EXIT_NOINPUT,
    EXIT_USAGE,
    EXIT_VALIDATION,
)
from bids_decode.inputs.validation import find_validator


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from bids_decode.simulate import simulate_dataset

    return simulate_dataset(tmp_path_factory.mktemp("small") / "ds", n_subjects=1,
                            n_train_runs=3, n_test_runs=1, seed=3)


@pytest.fixture
def ds(small, tmp_path):
    """A private copy of the small dataset (tests may break it)."""
    dst = tmp_path / "ds"
    shutil.copytree(small["bids_dir"], dst)
    return dst


def _run(capsys, ds, out, *extra, features=None):
    feats = features or ds / "stimuli" / "features_simulated.h5"
    code = main([str(ds), str(out), "participant", "--features", str(feats),
                 "--n-voxels", "20", "--skip-bids-validation", *extra])
    err = capsys.readouterr().err
    return code, err


def _assert_clean_failure(code, err, expected_code, *needles):
    assert code == expected_code, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, f"{n!r} not in: {err}"


def _no_results(out):
    return not list(out.glob("sub-*/func/*_decoding.h5")) and not list(
        out.glob("sub-*/func/*.tmp"))


def test_dash_and_underscore_spellings_and_sub_prefix():
    a = parse_args(["/d", "/o", "participant", "--participant-label", "sub-01", "02",
                    "--n_voxels", "7", "--n-voxels", "9", "--train_session", "x*"])
    assert a.participant_label == ("sub-01", "02")
    assert a.n_voxels == 9 and a.train_session == "x*"
    assert parse_args(["/d", "/o", "group", "--skip_bids_validation"]).skip_bids_validation


@pytest.mark.slow
def test_participant_label_with_or_without_prefix(capsys, ds, tmp_path):
    code, err = _run(capsys, ds, tmp_path / "o1", "--participant-label", "sub-01",
                     "--layers", "fc8")
    assert code == 0, err
    code, err = _run(capsys, ds, tmp_path / "o2", "--participant_label", "01",
                     "--layers", "fc8")
    assert code == 0, err
    assert (tmp_path / "o2" / "sub-01" / "func" /
            "sub-01_task-perception_net-simulated_desc-VC_decoding.h5").is_file()


def test_participant_not_found(capsys, ds, tmp_path):
    code, err = _run(capsys, ds, tmp_path / "out", "--participant-label", "07")
    _assert_clean_failure(code, err, EXIT_NOINPUT, "sub-07", "--participant-label")


def test_output_dir_equals_bids_dir(capsys, ds):
    code, err = _run(capsys, ds, ds)
    _assert_clean_failure(code, err, EXIT_USAGE, "OUTPUT_DIR", str(ds.resolve()))


def test_output_dir_inside_bids_dir(capsys, ds):
    code, err = _run(capsys, ds, ds / "results")
    _assert_clean_failure(code, err, EXIT_USAGE, "derivatives")


def test_bids_dir_missing(capsys, tmp_path):
    code, err = _run(capsys, tmp_path / "nope", tmp_path / "out",
                     features=tmp_path / "f.h5")
    _assert_clean_failure(code, err, EXIT_NOINPUT, str(tmp_path / "nope"))


def test_bids_dir_not_bids(capsys, tmp_path):
    (tmp_path / "notbids").mkdir()
    code, err = _run(capsys, tmp_path / "notbids", tmp_path / "out",
                     features=tmp_path / "f.h5")
    _assert_clean_failure(code, err, EXIT_NOINPUT, "dataset_description.json")


def test_no_events(capsys, ds, tmp_path):
    victim = sorted(ds.glob("sub-01/ses-perceptionTraining*/func/*_events.tsv"))[0]
    victim.unlink()
    code, err = _run(capsys, ds, tmp_path / "out")
    _assert_clean_failure(code, err, EXIT_NOINPUT, victim.name, "events")
    assert _no_results(tmp_path / "out")


def test_no_test_runs(capsys, ds, tmp_path):
    code, err = _run(capsys, ds, tmp_path / "out", "--test-session", "nothing*")
    _assert_clean_failure(code, err, EXIT_NOINPUT, "test runs", "--test-session")


def test_events_without_stimulus_column(capsys, ds, tmp_path):
    code, err = _run(capsys, ds, tmp_path / "out", "--stimulus-column", "stim_file")
    _assert_clean_failure(code, err, EXIT_DATAERR, "stim_file", "--stimulus-column")


def test_stimulus_missing_from_features(capsys, ds, tmp_path):
    src = ds / "stimuli" / "features_simulated.h5"
    bad = tmp_path / "features_missing.h5"
    with h5py.File(src) as f, h5py.File(bad, "w") as g:
        names = f["stimulus_name"][()]
        keep = np.arange(5, len(names))  # drop five images
        g.create_dataset("stimulus_name", data=names[keep])
        for lay in f["layers"]:
            g.create_dataset(f"layers/{lay}", data=f["layers"][lay][()][keep])
    code, err = _run(capsys, ds, tmp_path / "out", features=bad)
    _assert_clean_failure(code, err, EXIT_DATAERR, str(bad), "no features")
    assert _no_results(tmp_path / "out")


def test_features_file_missing(capsys, ds, tmp_path):
    code, err = _run(capsys, ds, tmp_path / "out", features=tmp_path / "none.h5")
    _assert_clean_failure(code, err, EXIT_NOINPUT, "none.h5", "bids_decode features")


def test_corrupt_features_file(capsys, ds, tmp_path):
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"\x89HDF\r\n" + b"\x00" * 100)
    code, err = _run(capsys, ds, tmp_path / "out", features=bad)
    _assert_clean_failure(code, err, EXIT_DATAERR, "corrupt.h5")


def test_unknown_layer_and_roi(capsys, ds, tmp_path):
    code, err = _run(capsys, ds, tmp_path / "out", "--layers", "conv9")
    _assert_clean_failure(code, err, EXIT_USAGE, "conv9", "--layers")
    code, err = _run(capsys, ds, tmp_path / "out", "--roi", "V7")
    _assert_clean_failure(code, err, EXIT_USAGE, "V7", "VC")


def test_empty_roi(capsys, ds, tmp_path):
    for f in ds.glob("sourcedata/sub-01/anat/*_V1*.nii.gz"):
        img = nib.load(f)
        nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), f)
    code, err = _run(capsys, ds, tmp_path / "out", "--roi", "V1")
    _assert_clean_failure(code, err, EXIT_DATAERR, "V1", "empty")


def test_four_d_mask(capsys, ds, tmp_path):
    f = sorted(ds.glob("sourcedata/sub-01/anat/*_LH_V1d.nii.gz"))[0]
    img = nib.load(f)
    data = np.asarray(img.dataobj)
    nib.save(nib.Nifti1Image(np.stack([data, data], axis=-1), img.affine), f)
    code, err = _run(capsys, ds, tmp_path / "out", "--roi", "V1")
    _assert_clean_failure(code, err, EXIT_DATAERR, f.name, "4-D", "3-D mask is expected")
    assert _no_results(tmp_path / "out")


def test_user_mask_missing(capsys, ds, tmp_path):
    code, err = _run(capsys, ds, tmp_path / "out", "--roi", f"mine={tmp_path}/m.nii.gz")
    _assert_clean_failure(code, err, EXIT_NOINPUT, "m.nii.gz")


@pytest.mark.slow
def test_user_mask_with_subject_placeholder(capsys, ds, tmp_path):
    mask = ds / "sourcedata" / "sub-01" / "anat" / "sub-01_mask_LH_HVC.nii.gz"
    pattern = str(mask).replace("sub-01", "sub-{subject}")
    code, err = _run(capsys, ds, tmp_path / "out", "--roi", f"lhvc={pattern}",
                     "--layers", "fc8")
    assert code == 0, err
    assert (tmp_path / "out" / "sub-01" / "func" /
            "sub-01_task-perception_net-simulated_desc-lhvc_decoding.h5").is_file()


def test_run_shorter_than_events(capsys, ds, tmp_path):
    bold = sorted(ds.glob("sub-01/ses-perceptionTest*/func/*_bold.nii.gz"))[0]
    img = nib.load(bold)
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[..., :100], img.affine, img.header),
             bold)
    code, err = _run(capsys, ds, tmp_path / "out")
    _assert_clean_failure(code, err, EXIT_DATAERR, bold.name, "shorter than its events")


def test_truncated_nifti(capsys, ds, tmp_path):
    bold = sorted(ds.glob("sub-01/ses-perceptionTraining*/func/*_bold.nii.gz"))[1]
    data = bold.read_bytes()
    bold.write_bytes(data[: len(data) // 2])
    code, err = _run(capsys, ds, tmp_path / "out")
    _assert_clean_failure(code, err, EXIT_DATAERR, bold.name, "corrupt")


def test_unwritable_output(capsys, ds, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, err = _run(capsys, ds, blocker / "out")
    _assert_clean_failure(code, err, EXIT_CANTCREAT, str(blocker))


def test_bad_usage_exit_code(capsys):
    assert main(["only-one-arg"]) == EXIT_USAGE
    assert "Traceback" not in capsys.readouterr().err
    assert main(["/a", "/b", "participant", "--n-voxels", "-3"]) == EXIT_USAGE


def test_version(capsys):
    from bids_decode import __version__

    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.skipif(find_validator() is None, reason="bids-validator-deno not installed")
def test_validator_errors_stop_the_run_only_in_its_files(capsys, ds, tmp_path):
    """A validator error in a file the run does not read is a warning (the run goes on, here
    to the missing features file: exit 66); --strict-validation stops for it (exit 16); an
    error in one of the run's BOLD files stops the run without the option."""
    (ds / "sub-01" / "func").mkdir(exist_ok=True)
    (ds / "sub-01" / "func" / "not_a_bids_name.nii.gz").write_bytes(b"x")

    def run(*extra):
        code = main([str(ds), str(tmp_path / "out"), "participant", "--features",
                     str(tmp_path / "absent.h5"), *extra])
        return code, capsys.readouterr().err

    code, err = run()
    _assert_clean_failure(code, err, EXIT_NOINPUT, "absent.h5")
    assert "not_a_bids_name.nii.gz), outside the files this run reads" in err
    code, err = run("--strict-validation")
    _assert_clean_failure(code, err, EXIT_VALIDATION, "not_a_bids_name.nii.gz",
                          "--skip-bids-validation")
    (ds / "sub-01" / "func" / "not_a_bids_name.nii.gz").unlink()
    bold = sorted(ds.glob("sub-01/ses-perceptionTest*/func/*_bold.nii.gz"))[0]
    bold.write_bytes(b"not a NIfTI")
    code, err = run()
    _assert_clean_failure(code, err, EXIT_VALIDATION, "in files this run reads",
                          f"NIFTI_HEADER_UNREADABLE at /{bold.relative_to(ds)}")


def test_mismatched_trs(capsys, ds, tmp_path):
    bold = sorted(ds.glob("sub-01/ses-perceptionTest*/func/*_bold.nii.gz"))[0]
    sidecar = bold.with_name(bold.name.replace(".nii.gz", ".json"))
    sidecar.write_text('{"RepetitionTime": 2.0}')
    code, err = _run(capsys, ds, tmp_path / "out")
    _assert_clean_failure(code, err, EXIT_DATAERR, "repetition times", "2.0", "3.0")


def test_partial_features_file(capsys, ds, tmp_path):
    src = ds / "stimuli" / "features_simulated.h5"
    bad = tmp_path / "partial.h5"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    code, err = _run(capsys, ds, tmp_path / "out", features=bad)
    _assert_clean_failure(code, err, EXIT_DATAERR, "partial.h5")
    assert _no_results(tmp_path / "out")


@pytest.mark.slow
def test_stimulus_without_features_or_image(capsys, ds, tmp_path):
    """No --features: images are needed; a missing one is named with the folder."""
    from bids_decode.simulate.writers import write_images

    stim = tmp_path / "stimuli"
    stim.mkdir()
    import pandas as pd

    names = set()
    for ev in ds.glob("sub-01/*/func/*_events.tsv"):
        df = pd.read_csv(ev, sep="\t", dtype=str)
        names.update(df.loc[df.event_type == "stimulus", "stimulus_name"])
    names = sorted(names)
    write_images(stim, names[1:], np.random.default_rng(0).standard_normal((len(names) - 1, 3)),
                 np.random.default_rng(1), size=16)
    code = main([str(ds), str(tmp_path / "out"), "participant", "--stimuli-dir", str(stim),
                 "--network", "alexnet", "--weights", "random", "--layers", "fc8",
                 "--skip-bids-validation"])
    err = capsys.readouterr().err
    _assert_clean_failure(code, err, EXIT_DATAERR, names[0])


@pytest.mark.slow
def test_mask_on_another_grid_is_resampled_with_a_warning(capsys, ds, tmp_path):
    from nilearn.image import resample_img

    for f in ds.glob("sourcedata/sub-01/anat/*_HVC.nii.gz"):
        img = nib.load(f)
        aff = img.affine.copy()
        aff[:3, :3] *= 2 / 3  # 2 mm voxels
        nib.save(resample_img(img, target_affine=aff, interpolation="nearest",
                              force_resample=True, copy_header=True), f)
    code, err = _run(capsys, ds, tmp_path / "out", "--roi", "HVC", "--layers", "fc8")
    assert code == 0, err
    assert "another grid" in err and "resampled" in err


def test_disk_full(capsys, ds, tmp_path):
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        code, err = _run(capsys, ds, mnt / "out", "--work-dir", str(tmp_path / "work"))
        _assert_clean_failure(code, err, EXIT_CANTCREAT, str(mnt / "out"), "space")
        assert not list((mnt / "out").glob("sub-*/func/*_decoding.h5"))
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_non_numeric_onsets(capsys, ds, tmp_path):
    ev = sorted(ds.glob("sub-01/ses-perceptionTraining*/func/*_events.tsv"))[0]
    lines = ev.read_text().splitlines()
    cells = lines[2].split("\t")
    cells[0] = "soon"
    lines[2] = "\t".join(cells)
    ev.write_text("\n".join(lines) + "\n")
    code, err = _run(capsys, ds, tmp_path / "out")
    _assert_clean_failure(code, err, EXIT_DATAERR, ev.name, "non-numeric")


def test_negative_duration(capsys, ds, tmp_path):
    ev = sorted(ds.glob("sub-01/ses-perceptionTest*/func/*_events.tsv"))[-1]
    lines = ev.read_text().splitlines()
    header = lines[0].split("\t")
    row = next(i for i, line in enumerate(lines) if "\tstimulus\t" in line)
    cells = lines[row].split("\t")
    cells[header.index("duration")] = "-9"
    lines[row] = "\t".join(cells)
    ev.write_text("\n".join(lines) + "\n")
    code, err = _run(capsys, ds, tmp_path / "out")
    _assert_clean_failure(code, err, EXIT_DATAERR, ev.name, "negative duration", "-9 s")
    assert _no_results(tmp_path / "out")


def test_nan_features(capsys, ds, tmp_path):
    src = ds / "stimuli" / "features_simulated.h5"
    bad = tmp_path / "nan.h5"
    bad.write_bytes(src.read_bytes())
    with h5py.File(bad, "a") as f:
        f["layers/fc8"][:, 3] = np.nan
    code, err = _run(capsys, ds, tmp_path / "out", "--layers", "fc8", features=bad)
    _assert_clean_failure(code, err, EXIT_DATAERR, "nan.h5", "fc8", "NaN")
    assert _no_results(tmp_path / "out")


def test_train_and_test_runs_must_differ(capsys, ds, tmp_path):
    code, err = _run(capsys, ds, tmp_path / "out", "--train-session", "perception*",
                     "--test-session", "perceptionTest*")
    _assert_clean_failure(code, err, EXIT_USAGE, "both train and test", "disjoint")


def test_bad_lapack_choice_refused_before_work(capsys, ds, tmp_path, lapack_choice):
    lapack_choice("openblas")
    code, err = _run(capsys, ds, tmp_path / "out")
    _assert_clean_failure(code, err, EXIT_USAGE, "BIDS_DECODE_LAPACK", "'mkl', 'scipy'")
    assert _no_results(tmp_path / "out")
