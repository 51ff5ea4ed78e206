"""The run configuration is the single source of truth for every parameter.

The parser, the work-file fingerprint, the group consistency keys and the ROI sidecar entries
are derived from the declarations in ``bids_decode/config.py``; these tests loop over those
declarations, so a new parameter is covered without editing them.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bids_decode import group, participant
from bids_decode.cli import build_parser, parse_args
from bids_decode.config import (
    DECODING_KEYS,
    PARAMS,
    SECTIONS,
    RunConfig,
    group_keys,
    parse_shard,
)
from bids_decode.errors import UsageError
from bids_decode.outputs.work_files import work_file_path

#: The fingerprint keys before the declarations existed: existing work files are keyed by them,
#: so none may leave (a new parameter may join).
LEGACY_FINGERPRINT = {
    "features", "n_voxels", "alpha", "train_session", "test_session", "task", "train_task",
    "derivatives", "stimulus_column", "hrf_shift", "dtype", "bold_source", "confounds", "space",
    "atlas", "n_permutations", "permutation_seed", "preprocessing", "sample_events",
    "train_average"}
#: Every option spelling of the hand-written parser, which must keep working.
LEGACY_FLAGS = {
    "--alpha", "--assume-aligned", "--assume_aligned", "--atlas", "--atlas-labels",
    "--atlas_labels", "--bold-source", "--bold_source", "--config", "--confounds",
    "--derivatives", "--device", "--dtype", "--features", "--help", "--hrf-shift", "--hrf_shift",
    "--layers", "--mem", "--mem-gb", "--n-cpus", "--n-permutations", "--n-voxels",
    "--n_permutations", "--n_voxels", "--network", "--nprocs", "--participant-label",
    "--participant_label", "--permutation-seed", "--permutation_seed", "--preprocessing",
    "--quiet", "--reports-only", "--reports_only", "--roi", "--sample-events", "--sample_events",
    "--skip-bids-validation", "--skip_bids_validation", "--space", "--stimuli-dir",
    "--stimuli_dir", "--stimulus-column", "--stimulus_column", "--task", "--test-session",
    "--test_session", "--train-average", "--train-session", "--train-task", "--train_average",
    "--train_session", "--train_task", "--unit-shard", "--unit_shard", "--verbose", "--version",
    "--weights", "--work-dir", "--work_dir", "-d", "-h", "-q", "-v", "-w"}
#: Sidecar entries that earlier outputs have (the group level and the reports read them).
LEGACY_SIDECAR = {
    "Description", "ROI", "MaskFiles", "NumberOfVoxels", "VoxelsSelectedPerUnit", "Alpha",
    "HaemodynamicShift", "RepetitionTime", "TrainSession", "TestSession", "TrainTask",
    "BoldSource", "Confounds", "FeaturesFile", "FeaturesAttributes", "Layers", "Samples",
    "Precision"}

BASE = dict(bids_dir="/d", output_dir="/o", analysis_level="participant",
            atlas="atlas.nii.gz", atlas_labels="atlas.tsv")  # atlas: both or neither
#: Valid other values where the generic rule of :func:`_other` does not give one.
SPECIAL = {"device": "cuda:1", "unit_shard": (2, 3), "analysis_level": "group"}


def _other(p):
    """A valid value of parameter ``p`` different from the one in :data:`BASE`."""
    now = BASE.get(p.name, p.default)
    if p.name in SPECIAL:
        return SPECIAL[p.name]
    if "choices" in p.cli:
        return next(c for c in p.cli["choices"] if c != now)
    if isinstance(now, bool):
        return not now
    if isinstance(now, (int, float)):
        return now + 1.5 if isinstance(now, float) else now + 2
    if isinstance(now, tuple):
        return (*now, "column=value")
    return f"{now or ''}other"


def _work_name(cfg: RunConfig, tmp_path: Path) -> str:
    """The work-file name the participant level derives from ``cfg`` (digest included)."""
    feats = tmp_path / "features.h5"
    if not feats.exists():  # its size and time stamp enter the key too
        feats.touch()
    roi = SimpleNamespace(name="VC", digest="0123456789ab")
    return work_file_path(cfg, "01", roi, "fc8", (1, 1), feats).name


@pytest.mark.parametrize("p", PARAMS, ids=lambda p: p.name)
def test_fingerprint_changes_exactly_with_the_keyed_parameters(p, tmp_path):
    base = RunConfig(**BASE)
    changed = base.replace(**{p.name: _other(p)})
    assert getattr(changed, p.name) != getattr(base, p.name)
    moved = changed.decoding_fingerprint() != base.decoding_fingerprint()
    assert moved == p.keyed, f"{p.name}: keyed={p.keyed} but fingerprint moved={moved}"
    assert (_work_name(changed, tmp_path) != _work_name(base, tmp_path)) == p.keyed


def test_decoding_section_fields_enter_the_fingerprint_or_say_why_not():
    """A field of a keyed section (decoding, statistics) that skips the fingerprint must name
    where its value is keyed instead; otherwise a rerun would silently reuse stale work files."""
    keyed_sections = [name for name, sec in SECTIONS.items() if sec.keyed]
    assert "decoding" in keyed_sections
    fields = [p for p in PARAMS if p.section in keyed_sections]
    assert {"n_voxels", "alpha", "dtype"} <= {p.name for p in fields}
    for p in fields:
        assert p.keyed or (isinstance(p.fingerprint, str) and p.fingerprint), p.name
        assert p.keyed == (p.name in DECODING_KEYS)


def test_keys_come_from_the_declarations():
    assert DECODING_KEYS == tuple(p.name for p in PARAMS if p.keyed)
    assert LEGACY_FINGERPRINT <= set(DECODING_KEYS)
    assert set(RunConfig(**BASE).decoding_fingerprint()) == set(DECODING_KEYS)
    assert group.CONFIG_KEYS == group_keys("config") == tuple(p.name for p in PARAMS if p.group)
    assert group.SIDECAR_KEYS == (*group_keys("sidecar"), "FeaturesAttributes", "Layers")
    assert set(group_keys("sidecar")) <= {p.sidecar for p in PARAMS}
    # the comparisons made before the declarations still hold
    assert {"n_voxels", "alpha", "hrf_shift", "train_session", "test_session", "stimulus_column",
            "dtype", "bold_source", "confounds", "space", "layers"} <= set(group.CONFIG_KEYS)
    assert {"Alpha", "HaemodynamicShift", "TrainSession", "TestSession",
            "Precision"} <= set(group.SIDECAR_KEYS)


def test_roi_sidecar_holds_the_declared_parameters(tmp_path):
    cfg = RunConfig(**{**BASE, "output_dir": str(tmp_path), "alpha": 7.0, "hrf_shift": 4.5})
    feats = tmp_path / "f.h5"
    ff = SimpleNamespace(path=feats, attrs={"network": "x"}, check_layers=lambda la: ["fc8"])
    roi = SimpleNamespace(name="VC", files=["m.nii.gz"], n_voxels=30)
    participant.write_roi_sidecar(cfg, "01", roi, ff, SimpleNamespace(info={}), 3.0)
    side = json.loads(next(tmp_path.glob("sub-01/func/*_desc-VC_decoding.json")).read_text())
    assert LEGACY_SIDECAR <= set(side)
    for p in PARAMS:
        if p.sidecar:
            assert side[p.sidecar] == getattr(cfg, p.sidecar_from or p.name), p.name
    assert (side["Alpha"], side["HaemodynamicShift"], side["Precision"]) == (7.0, 4.5, "float32")
    assert side["TestSession"] == "perceptionTest*"  # the resolved glob, not None


def _argv_value(p):
    """(command-line tokens after the flag, the value the config then holds) for ``p``."""
    if p.cli.get("action") == "store_true":
        return [], True
    value = _other(p)
    if p.cli.get("type") is parse_shard:
        return [f"{value[0]}/{value[1]}"], value
    if isinstance(value, tuple):
        return list(value), value
    return [str(value)], value


@pytest.mark.parametrize("p", [p for p in PARAMS if p.flags and p.flags[0].startswith("-")],
                         ids=lambda p: p.name)
def test_every_declared_flag_parses_and_round_trips(p, tmp_path):
    tokens, want = _argv_value(p)
    for flag in p.option_strings:
        argv = ["/d", "/o", "participant", "--atlas", "a", "--atlas-labels", "t"]
        cfg = parse_args([*argv, flag, *tokens])
        assert getattr(cfg, p.name) == want, flag
        saved = tmp_path / "config.json"
        saved.write_text(cfg.to_json())
        assert RunConfig.from_json(saved) == cfg


def test_positionals_and_counted_flags():
    cfg = parse_args(["/data/ds/", "./out", "group", "-v", "-v", "-q"])
    assert (cfg.bids_dir, cfg.output_dir, cfg.analysis_level) == ("/data/ds", "out", "group")
    assert cfg.verbosity == 1
    assert cfg.extra["resources"]["source"] in ("cli", "default", "slurm", "cgroup")


def test_help_lists_every_option():
    parser = build_parser()
    spellings = {s for a in parser._actions for s in a.option_strings}
    assert LEGACY_FLAGS <= spellings
    text = parser.format_help()
    for p in PARAMS:
        for flag in p.option_strings if p.flags else ():
            assert flag in text or not flag.startswith("-"), flag  # positionals: usage line
    for sec in SECTIONS.values():
        assert f"\n{sec.title}:\n" in text


@pytest.mark.parametrize("argv, field, value, message", [
    (["-d", "fmriprep"], "derivatives", ("fmriprep",), "-d/--derivatives takes NAME=PATH"),
    (["--n-voxels", "-3"], "n_voxels", -3, "--n-voxels must be >= 0 (0 = all voxels); got -3."),
    (["--unit-shard", "4/3"], "unit_shard", (4, 3), "--unit-shard must be i/N with 1 <= i <= N"),
    (["--mem", "0"], "mem_gb", 0.0, "--mem must be positive (GB); got 0.0."),
    (["--sample-events", "event_type"], "sample_events", ("event_type",), "--sample-events"),
])
def test_checks_run_at_parse_time_and_for_json_configs(argv, field, value, message):
    with pytest.raises(UsageError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
                       .replace("+", r"\+")):
        build_parser().parse_args(["/d", "/o", "participant", *argv])
    with pytest.raises(UsageError, match=message.split(" ")[0]):
        RunConfig.from_dict({**RunConfig(**BASE).to_dict(), field: value})


def test_saved_config_of_the_current_format_is_read():
    """A *_config.json written before the declarations (keys as saved then) reads back."""
    saved = {
        "alpha": 100.0, "analysis_level": "participant", "assume_aligned": False,
        "atlas": None, "atlas_labels": None, "bids_dir": "/ds", "bold_source": "raw",
        "confounds": None, "derivatives": [], "device": "cpu", "dtype": "float32",
        "extra": {"resources": {"mem_gb": 4.0, "nprocs": 2, "source": "default"}},
        "features": "/ds/f.h5", "hrf_shift": 3.0, "layers": [], "mem_gb": 4.0,
        "n_permutations": 1000, "n_voxels": 200, "network": "alexnet", "nprocs": 2,
        "output_dir": "/out", "participant_label": ["01"], "permutation_seed": 0,
        "preprocessing": "default", "reports_only": False, "roi": ["VC", "LVC"],
        "sample_events": [], "skip_bids_validation": False, "space": "T1w",
        "stimuli_dir": None, "stimulus_column": None, "task": "perception",
        "test_session": None, "train_average": False, "train_session": "perceptionTraining*",
        "train_task": "perception", "unit_shard": [1, 1], "verbosity": 0, "weights": None,
        "work_dir": None}
    cfg = RunConfig.from_dict(saved)
    now = json.loads(cfg.to_json())
    assert {k: now[k] for k in saved} == saved
    for p in PARAMS:  # parameters declared since then take their defaults
        if p.name not in saved:
            assert getattr(cfg, p.name) == p.default, p.name
    assert cfg.roi == ("VC", "LVC") and cfg.unit_shard == (1, 1)
