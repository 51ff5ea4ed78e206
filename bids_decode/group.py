"""Group level: reads participant outputs only; between-subject statistics and the Averaged subject.

Nothing is refitted. For each (ROI, layer) the per-unit accuracies of every pair of subjects are
correlated (the between-subject consistency of Horikawa et al. 2019, Fig. 2), the overlap of
their top-k% units is counted, and the subjects' decoded features are averaged into an
"Averaged" subject scored like a participant against the true features. Outputs: see
docs/outputs.md.

Work is streamed layer by layer: at any time memory holds one layer's true test features, the
per-unit accuracies of that layer for every subject and one chunk of decoded features per subject.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from . import derivatives, evaluation, figures, statistics
from .config import RunConfig, group_keys
from .errors import DataError, MissingInputError
from .featurefile import FeatureFile
from .layout import missing_labels

LOGGER = logging.getLogger(__name__)

GROUP_DIR = "group"
AVERAGED = "Averaged"
TOP_PERCENTS = (1, 5, 10)
_H5_RE = re.compile(r"^sub-([A-Za-z0-9]+)_task-([A-Za-z0-9]+)_desc-([A-Za-z0-9]+)_decoding\.h5$")

#: Sidecar entries that must be equal across subjects (per ROI): the declared parameters
#: (config.py) and what the features file says.
SIDECAR_KEYS = (*group_keys("sidecar"), "FeaturesAttributes", "Layers")
#: Run-config entries that must be equal across subjects (declared in config.py).
CONFIG_KEYS = group_keys("config")

PAIR_COLUMNS = ["roi", "layer", "subject_a", "subject_b", "r", "spearman_r", "n_units",
                "reliability_a", "reliability_b", "r_disattenuated"]
SUMMARY_COLUMNS = [
    "roi", "layer", "n_subjects", "n_pairs", "n_units", "r_mean", "r_min", "r_max",
    "spearman_r_mean", "spearman_r_min", "spearman_r_max", "top10_overlap_mean",
    "profile_r_mean", "profile_r_min", "profile_r_max", "averaged_profile_r_mean",
    "averaged_pattern_r_mean", "averaged_identification_accuracy", "r_disattenuated_mean",
    "fraction_decodable_all",
]
OVERLAP_COLUMNS = ["roi", "layer", "subject_a", "subject_b", "top_percent", "n_units", "n_top",
                   "n_shared", "overlap", "chance"]

PAIR_SIDECAR = {
    **derivatives.COMMON_COLUMNS,
    "subject_a": {"Description": "First subject of the pair (label without 'sub-')"},
    "subject_b": {"Description": "Second subject of the pair"},
    "r": {"Description": "Pearson r, over units, between the two subjects' unit accuracies "
                         "(units whose accuracy is finite in both)"},
    "spearman_r": {"Description": "Spearman rank correlation of the same"},
    "n_units": {"Description": "Units entering the correlation"},
    "reliability_a": {"Description": "Reliability of subject_a's unit accuracies: the "
                                     "Spearman-Brown-corrected Pearson r, over units, of the "
                                     "accuracies decoded from the odd and from the even "
                                     "presentations of the test images"},
    "reliability_b": {"Description": "The same for subject_b"},
    "r_disattenuated": {"Description": "r / sqrt(reliability_a * reliability_b): the "
                                       "between-subject correlation corrected for measurement "
                                       "noise (can exceed 1; NaN unless both reliabilities "
                                       "are positive)"},
}
SUMMARY_SIDECAR = {
    "roi": PAIR_SIDECAR["roi"], "layer": PAIR_SIDECAR["layer"],
    "n_subjects": {"Description": "Subjects in the group"},
    "n_pairs": {"Description": "Subject pairs"},
    "n_units": {"Description": "Units in the layer"},
    "r_mean": {"Description": "Mean over subject pairs of the between-subject Pearson r of "
                              "unit accuracies"},
    "r_min": {"Description": "Smallest pair r"}, "r_max": {"Description": "Largest pair r"},
    "spearman_r_mean": {"Description": "Mean over pairs of the Spearman r"},
    "spearman_r_min": {"Description": "Smallest pair Spearman r"},
    "spearman_r_max": {"Description": "Largest pair Spearman r"},
    "top10_overlap_mean": {"Description": "Mean over pairs of the fraction of one subject's "
                                          "top-10% units that are top-10% in the other "
                                          "(chance 0.1)"},
    "profile_r_mean": {"Description": "Mean over subjects of the subject's mean unit accuracy"},
    "profile_r_min": {"Description": "Smallest subject mean unit accuracy"},
    "profile_r_max": {"Description": "Largest subject mean unit accuracy"},
    "averaged_profile_r_mean": {"Description": "Mean unit accuracy of the Averaged subject "
                                              "(decoded features averaged over subjects)"},
    "averaged_pattern_r_mean": {"Description": "Mean pattern correlation of the Averaged "
                                              "subject"},
    "averaged_identification_accuracy": {"Description": "Mean pairwise identification "
                                                       "accuracy of the Averaged subject"},
    "r_disattenuated_mean": {"Description": "Mean over pairs of r_disattenuated"},
    "fraction_decodable_all": {"Description": "Fraction of the layer's units whose q-value is "
                                              "below 0.05 in every subject (NaN when a subject "
                                              "has no permutation statistics)"},
}
OVERLAP_SIDECAR = {
    "roi": PAIR_SIDECAR["roi"], "layer": PAIR_SIDECAR["layer"],
    "subject_a": PAIR_SIDECAR["subject_a"], "subject_b": PAIR_SIDECAR["subject_b"],
    "top_percent": {"Description": "k: the top k percent of units by accuracy"},
    "n_units": {"Description": "Units finite in both subjects"},
    "n_top": {"Description": "Units in each subject's top k% (round(k/100 * n_units), >= 1)"},
    "n_shared": {"Description": "Units in the top k% of both subjects"},
    "overlap": {"Description": "n_shared / n_top"},
    "chance": {"Description": "Expected overlap of random rankings (n_top / n_units)"},
}


@dataclass
class SubjectOutputs:
    """Participant outputs of one subject (paths and JSON; arrays are read later, per layer)."""

    label: str
    h5: dict[str, Path]
    sidecars: dict[str, dict]
    config: dict
    layers: list[str] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    test_names: list[str] = field(default_factory=list)


@dataclass
class GroupPlan:
    """What the group level works on, after the consistency checks."""

    subjects: list[SubjectOutputs]
    rois: list[str]
    layers: list[str]
    shapes: dict[str, tuple[int, ...]]
    test_names: list[str]
    features_file: Path
    notes: list[str]


# ----------------------------------------------------------------------------- 1. find outputs

def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"Cannot read {path} ({err}). It is damaged: rerun the participant "
                        "level of this subject to rewrite it.") from err


def _roi_order(config: dict, found: list[str]) -> list[str]:
    named = [str(r).partition("=")[0] for r in config.get("roi", [])]
    return [r for r in named if r in found] + sorted(set(found) - set(named))


def find_outputs(output_dir: Path, task: str, labels=()) -> list[SubjectOutputs]:
    """Participant outputs of ``task`` in ``output_dir``, one entry per subject that has any.

    Parameters
    ----------
    output_dir : Path
    task : str
    labels : sequence of str
        Subjects to keep (with or without ``sub-``); all when empty.
    """
    output_dir = Path(output_dir)
    per_sub: dict[str, dict[str, Path]] = {}
    for path in sorted(output_dir.glob(f"sub-*/func/sub-*_task-{task}_desc-*_decoding.h5")):
        m = _H5_RE.match(path.name)
        if not m or m.group(2) != task or path.parent.parent.name != f"sub-{m.group(1)}":
            continue
        per_sub.setdefault(m.group(1), {})[m.group(3)] = path
    wanted, missing = missing_labels(labels, per_sub)
    if missing:
        raise MissingInputError(
            f"No participant outputs for task '{task}' of {['sub-' + m for m in missing]} in "
            f"{output_dir} (expected sub-<L>/func/sub-<L>_task-{task}_desc-<ROI>_decoding.h5; "
            f"subjects with outputs: {['sub-' + s for s in sorted(per_sub)] or 'none'}). Run the "
            "participant level for them first, or fix --participant-label / --task."
        )
    out = []
    for label in wanted or sorted(per_sub):
        h5 = per_sub[label]
        cfg = _read_json(derivatives.subject_dir(output_dir, label)
                         / f"sub-{label}_task-{task}_config.json")
        rois = _roi_order(cfg, list(h5))
        sub = SubjectOutputs(label, {r: h5[r] for r in rois},
                             {r: _read_json(h5[r].with_suffix(".json")) for r in rois}, cfg)
        _read_h5_layout(sub)
        out.append(sub)
    return out


def _read_h5_layout(sub: SubjectOutputs) -> None:
    """Fill layers, unit shapes and test stimulus names from the first ROI file."""
    first = next(iter(sub.h5.values()))
    try:
        with h5py.File(first, "r") as f:
            names = [k for k in f if isinstance(f[k], h5py.Group)]
            order = [la for la in sub.sidecars[next(iter(sub.h5))].get("Layers", [])
                     if la in names]
            sub.layers = order + sorted(set(names) - set(order))
            sub.shapes = {la: tuple(f[la]["accuracy"].shape) for la in sub.layers}
            sub.test_names = [v.decode() if isinstance(v, bytes) else str(v)
                              for v in f["stimulus_name"][()]]
    except (OSError, KeyError) as err:
        raise DataError(
            f"The participant output {first} cannot be read ({err}). It is damaged or not a "
            "bids_decode output: rerun the participant level of sub-{sub.label}."
        ) from err


# ------------------------------------------------------------------------ 2. check consistency

def _fmt(values: dict) -> str:
    return ", ".join(f"sub-{k}={json.dumps(v, default=str)}" for k, v in values.items())


def check_consistent(output_dir: Path, task: str, subjects: list[SubjectOutputs]) -> GroupPlan:
    """Refuse fewer than two subjects, or subjects run with different ROIs, layers, parameters.

    Raises
    ------
    MissingInputError
        Fewer than two subjects have outputs.
    DataError
        Subjects differ in ROIs, layers, unit shapes, test images or decoding parameters.
    """
    if len(subjects) < 2:
        have = [f"sub-{s.label}" for s in subjects] or "none"
        raise MissingInputError(
            f"The group level compares subjects and needs the participant outputs of at least "
            f"two; {output_dir} has outputs for task '{task}' from {have} (files "
            f"sub-<L>/func/sub-<L>_task-{task}_desc-<ROI>_decoding.h5). Run the participant level "
            "for more subjects first ('bids_decode BIDS_DIR OUTPUT_DIR participant "
            "--participant-label ...'), or check --participant-label and --task."
        )
    ref = subjects[0]
    diffs = []

    def compare(what: str, get) -> None:
        vals = {s.label: get(s) for s in subjects}
        if any(v != vals[ref.label] for v in vals.values()):
            diffs.append(f"{what}: {_fmt(vals)}")

    compare("ROIs", lambda s: list(s.h5))
    compare("layers", lambda s: s.layers)
    if not diffs:
        compare("unit shapes", lambda s: {k: list(v) for k, v in s.shapes.items()})
        for roi in ref.h5:
            for key in SIDECAR_KEYS:
                compare(f"{key} (sidecar of ROI {roi})", lambda s, k=key, r=roi:
                        s.sidecars[r].get(k))
        for key in CONFIG_KEYS:
            compare(f"{key} (run config)", lambda s, k=key: s.config.get(k))
        compare("test images", lambda s: sorted(s.test_names))
    if diffs:
        shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        raise DataError(
            f"The subjects' participant outputs in {output_dir} were made with different "
            f"ROIs, layers or parameters, so their unit accuracies cannot be compared: {shown}. "
            "Rerun the participant level of the odd subjects with the same options (each "
            f"subject's sub-<L>/sub-<L>_task-{task}_config.json lists them; 'bids_decode --config "
            "FILE' repeats a run), or restrict the group level to matching subjects with "
            "--participant-label."
        )
    notes = []
    missing_cfg = [f"sub-{s.label}" for s in subjects if not s.config]
    if missing_cfg:
        notes.append(f"No run configuration JSON for {missing_cfg}: their parameters were "
                     "compared from the sidecars only.")
    paths = {s.label: s.sidecars[next(iter(s.h5))].get("FeaturesFile") for s in subjects}
    if len(set(paths.values())) > 1:
        notes.append(f"Subjects used different features files ({_fmt(paths)}) with the same "
                     "attributes and unit shapes; the first one is used as the truth of the "
                     "Averaged subject.")
    for n in notes:
        LOGGER.warning(n)
    feat = paths[ref.label]
    if not feat:
        with h5py.File(next(iter(ref.h5.values())), "r") as f:
            feat = f.attrs.get("features_file", "")
    return GroupPlan(subjects, list(ref.h5), list(ref.layers), dict(ref.shapes),
                     list(ref.test_names), Path(str(feat)), notes)


# --------------------------------------------------------------------------- 3. statistics

class _Ranked:
    """One subject's accuracies over a set of units: centred values, sort order, ranks."""

    def __init__(self, x: np.ndarray):
        x = np.asarray(x, dtype=np.float64)
        self.n = x.size
        self.xc = x - x.mean() if x.size else x
        self.norm = float(np.sqrt(self.xc @ self.xc))
        x32 = x.astype(np.float32)
        # accuracies are stored as float32: sorting them as float32 is exact and faster
        self.order = np.argsort(x32 if np.array_equal(x32, x) else x)
        xs = x[self.order]
        start = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]]) if x.size else np.array([], int)
        counts = np.diff(np.r_[start, x.size])
        ranks = np.empty(x.size)
        ranks[self.order] = np.repeat(start + (counts + 1) / 2.0, counts)  # ties: average
        self.rc = ranks - ranks.mean() if x.size else ranks
        self.rnorm = float(np.sqrt(self.rc @ self.rc))

    def top(self, n_top: int) -> np.ndarray:
        return self.order[self.n - n_top:]


def _corr(a: np.ndarray, b: np.ndarray, na: float, nb: float) -> float:
    if a.size < 3 or na == 0 or nb == 0:
        return float("nan")
    return float(np.clip((a @ b) / (na * nb), -1.0, 1.0))


def pair_statistics(acc: dict[str, np.ndarray], percents=TOP_PERCENTS
                    ) -> tuple[list[dict], list[dict]]:
    """Between-subject correlation and top-k% overlap of unit accuracies for every pair.

    Each subject's accuracies are centred and sorted once over the units finite in every
    subject (the usual case: NaN units are the constant features, the same for all); a pair
    whose finite units differ from that set is recomputed over its own common units.

    Parameters
    ----------
    acc : dict subject -> ndarray of shape (n_units,)
    percents : sequence of float
        k of the top-k% overlaps.

    Returns
    -------
    pairs : list of dict with subject_a, subject_b, r (Pearson), spearman_r, n_units
    overlap : list of dict with subject_a, subject_b, top_percent, n_units, n_top, n_shared,
        overlap (n_shared / n_top), chance (n_top / n_units); ``n_top = round(k/100 * n)``,
        at least 1, the same for both subjects, so the overlap is symmetric.
    """
    subs = list(acc)
    finite = {s: np.isfinite(acc[s]) for s in subs}
    common = np.logical_and.reduce([finite[s] for s in subs])
    cache: dict[str, _Ranked] = {}
    pairs, overlap = [], []
    for a, b in combinations(subs, 2):
        ok = finite[a] & finite[b]
        if np.array_equal(ok, common):
            for s in (a, b):
                if s not in cache:
                    cache[s] = _Ranked(acc[s][common])
            ra, rb = cache[a], cache[b]
        else:
            ra, rb = _Ranked(acc[a][ok]), _Ranked(acc[b][ok])
        n = ra.n
        pairs.append({"subject_a": a, "subject_b": b, "r": _corr(ra.xc, rb.xc, ra.norm, rb.norm),
                      "spearman_r": _corr(ra.rc, rb.rc, ra.rnorm, rb.rnorm), "n_units": n})
        if n == 0:
            continue
        for k in percents:
            n_top = max(1, int(round(k / 100 * n)))
            in_b = np.zeros(n, dtype=bool)
            in_b[rb.top(n_top)] = True
            shared = int(in_b[ra.top(n_top)].sum())
            overlap.append({"subject_a": a, "subject_b": b, "top_percent": k, "n_units": n,
                            "n_top": n_top, "n_shared": shared, "overlap": shared / n_top,
                            "chance": n_top / n})
    return pairs, overlap


def pair_correlations(acc: dict[str, np.ndarray]) -> list[dict]:
    """Pearson and Spearman r of unit accuracies for every subject pair (see pair_statistics)."""
    return pair_statistics(acc, percents=())[0]


def top_overlap(acc: dict[str, np.ndarray], percents=TOP_PERCENTS) -> list[dict]:
    """Top-k% overlap of unit accuracies for every subject pair (see pair_statistics)."""
    return pair_statistics(acc, percents)[1]


def _nanmean(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")


# ------------------------------------------------------------------- 4. the Averaged subject

@dataclass
class TrueLayer:
    """True test features of one layer, z-scored, with what every ROI's scoring reuses.

    Attributes
    ----------
    z : ndarray of shape (n_test, n_units), float32
        True values of the test images (group test-image order), z-scored with the mean and
        SD (ddof=1) over the reference images; 0 for constant units.
    mu, sd : ndarray of shape (n_units,), float64
        The reference statistics (sd is 1 for constant units).
    const : ndarray of shape (n_units,), bool
        Units constant over the reference images (scored NaN, as in the participant level).
    """

    z: np.ndarray
    mu: np.ndarray
    sd: np.ndarray
    const: np.ndarray


def reference_rows(ff: FeatureFile, test_rows: np.ndarray) -> tuple[np.ndarray, str]:
    """Rows whose statistics z-score the features: every image that is not a test image.

    The participant level z-scores with its training samples; the group level does not know
    them and uses the features file's non-test images instead (the training images, when the
    file holds the stimulus set of the experiment). Falls back to the test images when the file
    holds nothing else.
    """
    ref = np.setdiff1d(np.arange(len(ff.names)), test_rows)
    if ref.size >= 2:
        return ref, f"the {ref.size} non-test images of the features file"
    return np.unique(test_rows), "the test images (the features file holds no other images)"


def read_true_layer(ff: FeatureFile, layer: str, test_rows: np.ndarray, ref_rows: np.ndarray,
                    mem_gb: float) -> TrueLayer:
    """Stream one layer of the features file into a :class:`TrueLayer`."""
    n_units = ff.n_units(layer)
    n_img, n_test = len(ff.names), len(test_rows)
    chunk = int(max(256, min(1 << 22, mem_gb * 2**30 * 0.2 / (8 * n_img))))
    z = np.empty((n_test, n_units), dtype=np.float32)
    mu, sd = np.empty(n_units), np.empty(n_units)
    const = np.empty(n_units, dtype=bool)
    for s, e, Y in ff.iter_unit_chunks(layer, np.arange(n_img), chunk):
        m, d, c = evaluation.unit_stats(Y[ref_rows])
        t = (Y[test_rows] - m) / d
        t[:, c] = 0.0
        mu[s:e], sd[s:e], const[s:e] = m, d, c
        z[:, s:e] = t
    return TrueLayer(z, mu, sd, const)


def _slice_step(shape: tuple[int, ...], max_units: int) -> tuple[int, int]:
    """(units per index of the first unit axis, indices per chunk)."""
    per = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return per, max(1, max_units // per)


def average_layer(sources: list[tuple[h5py.Dataset, np.ndarray]], truth: TrueLayer,
                  out, mem_gb: float) -> tuple[np.ndarray, np.ndarray]:
    """Average the subjects' decoded features of one layer, write them, score them.

    Scores are those of the participant level (:func:`bids_decode.evaluation.
    profile_correlation` and :class:`~bids_decode.evaluation.PatternAccumulator`), with the
    true side z-scored once per layer in ``truth``.

    Parameters
    ----------
    sources : list of (dataset of shape (n_test, *unit_shape), row order)
        Each subject's ``/<layer>/decoded`` and the index of each group test image in it.
    truth : TrueLayer
    out : h5py.Dataset or ndarray of shape (n_test, *unit_shape)
        Receives the averaged decoded features (features' own units).
    mem_gb : float
        Memory budget; about a fifth of it is used per chunk of units.

    Returns
    -------
    accuracy : ndarray of shape (n_units,), float64
        Profile correlation per unit (NaN for units constant over the reference images).
    corr : ndarray of shape (n_test, n_test)
        Decoded-by-true pattern correlation matrix (features z-scored with the reference
        statistics).
    """
    shape = tuple(out.shape[1:])
    n_test = out.shape[0]
    n_units = int(np.prod(shape))
    per, step = _slice_step(shape, int(max(1, mem_gb * 2**30 * 0.2 / (8 * n_test * 4))))
    acc = np.full(n_units, np.nan)
    pattern = evaluation.PatternAccumulator(n_test)
    identity = [np.array_equal(order, np.arange(n_test)) for _, order in sources]
    for a in range(0, shape[0], step):
        b = min(shape[0], a + step)
        s, e = a * per, b * per
        zd = np.zeros((n_test, e - s))
        for (ds, order), same in zip(sources, identity):
            slab = ds[:, a:b].reshape(n_test, -1)
            zd += slab if same else slab[order]
        zd /= len(sources)
        out[:, a:b] = zd.reshape((n_test, b - a, *shape[1:])).astype(np.float32)
        # z-score with the reference statistics (in place: zd is the averaged decoded)
        const = truth.const[s:e]
        zd -= truth.mu[s:e]
        zd /= truth.sd[s:e]
        if const.any():
            zd[:, const] = 0.0
        zt = truth.z[:, s:e].astype(np.float64)
        acc[s:e] = np.where(const, np.nan, evaluation.profile_correlation(zd, zt))
        pattern.update(zd, zt)
    return acc, pattern.correlation_matrix()


# ----------------------------------------------------------------------------- 5. writers

def group_dir(output_dir: Path) -> Path:
    return Path(output_dir) / GROUP_DIR


def group_path(output_dir: Path, task: str, desc: str, suffix: str, ext: str) -> Path:
    """``OUTPUT_DIR/group/task-<T>_desc-<D>_<suffix><ext>``."""
    name = derivatives.bids_name("x", task, desc=desc, suffix=suffix, ext=ext)
    return group_dir(output_dir) / name.split("_", 1)[1]


def averaged_dir(output_dir: Path) -> Path:
    """Where the Averaged subject lives: ``OUTPUT_DIR/group/`` (kept out of the sub-* globs
    of tools and of the BIDS validator, which ignores ``group/``)."""
    return group_dir(output_dir)


def _write_table(path: Path, rows: list[dict], columns: list[str], sidecar: dict) -> Path:
    derivatives.write_tsv(path, pd.DataFrame(rows, columns=columns))
    derivatives.write_json(path.with_suffix(".json"), sidecar)
    return path


# ------------------------------------------------------------------------- 6. orchestration

@dataclass
class LayerResult:
    """What the figures and the report need of one (ROI, layer)."""

    pairs: list[dict]
    overlap: list[dict]
    subject_means: dict[str, float]
    distributions: dict[str, dict]
    scatter: tuple[np.ndarray, np.ndarray] | None
    averaged: dict | None
    decodable_all: float = float("nan")


def run_group(config: RunConfig) -> int:
    """Group level of one task: read participant outputs, write ``OUTPUT_DIR/group/``.

    Returns
    -------
    int
        Exit code (0).
    """
    t0 = time.time()
    out_dir = Path(config.output_dir)
    task = config.task
    # 1. find the participant outputs (all unit shards done), 2. check that they can be compared
    from .shards import check_shards_complete

    check_shards_complete(out_dir, task, config.participant_label)
    subjects = find_outputs(out_dir, task, config.participant_label)
    plan = check_consistent(out_dir, task, subjects)
    labels = [s.label for s in plan.subjects]
    LOGGER.info("group: %d subjects (%s), ROIs %s, layers %s", len(labels),
                ", ".join(f"sub-{x}" for x in labels), plan.rois, plan.layers)
    with derivatives.lock(out_dir, "group"):
        results = _compute(config, plan)
        # 6. tables
        pair_rows, overlap_rows, summary_rows = [], [], []
        for (roi, layer), res in results.items():
            pair_rows += [{"roi": roi, "layer": layer, **p} for p in res.pairs]
            overlap_rows += [{"roi": roi, "layer": layer, **o} for o in res.overlap]
            summary_rows.append(_summary_row(roi, layer, len(labels), plan.shapes[layer], res))
        _write_table(group_path(out_dir, task, "crosssubject", "correlation", ".tsv"),
                     pair_rows, PAIR_COLUMNS, PAIR_SIDECAR)
        summary_path = _write_table(group_path(out_dir, task, "crosssubject", "summary", ".tsv"),
                                    summary_rows, SUMMARY_COLUMNS, SUMMARY_SIDECAR)
        _write_table(group_path(out_dir, task, "rankconsistency", "overlap", ".tsv"),
                     overlap_rows, OVERLAP_COLUMNS, OVERLAP_SIDECAR)
        # 7. figures and report
        from . import report

        figs = group_figures(plan, results, task)
        if all(res.averaged for res in results.values()):
            figs += _averaged_decoded_figure(out_dir, task, plan.rois[0])
        fig_dir = group_dir(out_dir) / "figures"
        for fig in figs:
            with derivatives.atomic_path(fig_dir / fig.name) as tmp:
                tmp.write_bytes(fig.png)
        report.write_group_report(out_dir, task, plan=plan,
                                  summary=pd.read_csv(summary_path, sep="\t", na_values="n/a",
                                                      keep_default_na=False),
                                  figures=figs)
    LOGGER.info("group: done in %.1f s; outputs in %s", time.time() - t0, group_dir(out_dir))
    print(f"Group level ({len(labels)} subjects): mean between-subject r of unit accuracies")
    for row in summary_rows:
        print(f"  {row['roi']:<6} {row['layer']:<12} r = {row['r_mean']:.3f} "
              f"[{row['r_min']:.3f}, {row['r_max']:.3f}]")
    print(f"Report: {group_dir(out_dir) / 'report.html'}")
    return 0


def _averaged_decoded_figure(out_dir: Path, task: str, roi: str) -> list:
    """Decoded vs true values of the Averaged subject's best and median units (one ROI).

    The full subject report of the Averaged subject (every ROI) is
    ``report.write_subject_report(OUTPUT_DIR / "group", "Averaged", task)``; the group level
    draws one ROI to stay fast.
    """
    from . import report

    sf = report.SubjectFiles.find(averaged_dir(out_dir), AVERAGED, task)
    figs, _ = report.decoded_true_figures(sf, rois=[roi])
    for f in figs:
        f.name = f"task-{task}_desc-{roi}_averageddecoded.png"
        f.title = f"Averaged subject: decoded vs true values, {roi}"
    return figs


def _summary_row(roi, layer, n_subjects, shape, res: LayerResult) -> dict:
    r = np.array([p["r"] for p in res.pairs], dtype=np.float64)
    sr = np.array([p["spearman_r"] for p in res.pairs], dtype=np.float64)
    top10 = [o["overlap"] for o in res.overlap if o["top_percent"] == 10]
    means = np.array(list(res.subject_means.values()), dtype=np.float64)
    av = res.averaged or {}

    def stat(fn, a):
        return float(fn(a[np.isfinite(a)])) if np.isfinite(a).any() else float("nan")

    return {
        "roi": roi, "layer": layer, "n_subjects": n_subjects, "n_pairs": len(res.pairs),
        "n_units": int(np.prod(shape)),
        "r_mean": stat(np.mean, r), "r_min": stat(np.min, r), "r_max": stat(np.max, r),
        "spearman_r_mean": stat(np.mean, sr), "spearman_r_min": stat(np.min, sr),
        "spearman_r_max": stat(np.max, sr), "top10_overlap_mean": _nanmean(top10),
        "profile_r_mean": stat(np.mean, means), "profile_r_min": stat(np.min, means),
        "profile_r_max": stat(np.max, means),
        "averaged_profile_r_mean": av.get("profile_r_mean", float("nan")),
        "averaged_pattern_r_mean": av.get("pattern_r_mean", float("nan")),
        "averaged_identification_accuracy": av.get("identification_accuracy", float("nan")),
        "r_disattenuated_mean": _nanmean([p["r_disattenuated"] for p in res.pairs]),
        "fraction_decodable_all": res.decodable_all,
    }


def _open_features(plan: GroupPlan) -> FeatureFile | None:
    if not plan.features_file.is_file():
        note = (f"The features file {plan.features_file} named in the participant outputs is not "
                "there, so the Averaged subject was not computed (its accuracy needs the true "
                "features). Restore the file at that path and rerun the group level.")
        LOGGER.warning(note)
        plan.notes.append(note)
        return None
    return FeatureFile(plan.features_file)


def _compute(config: RunConfig, plan: GroupPlan) -> dict[tuple[str, str], LayerResult]:
    """Steps 3-5: statistics and the Averaged subject, streamed layer by layer."""
    out_dir = Path(config.output_dir)
    results: dict[tuple[str, str], LayerResult] = {}
    ff = _open_features(plan)
    with contextlib.ExitStack() as stack:
        # The products here are (n_test x units) @ (units x n_test): memory-bound, and a
        # multi-threaded BLAS on busy cores is up to 30x slower than one thread.
        from threadpoolctl import threadpool_limits

        stack.enter_context(threadpool_limits(limits=1, user_api="blas"))
        handles = {(s.label, roi): stack.enter_context(h5py.File(s.h5[roi], "r"))
                   for s in plan.subjects for roi in plan.rois}
        avg = None
        if ff is not None:
            stack.enter_context(ff)
            kind, groups = ff.test_targets(plan.test_names)
            if kind != "layers" or any(len(g) != 1 for g in groups):
                LOGGER.warning(
                    "The test labels of task %s name categories, not images (e.g. %s): the "
                    "Averaged subject is scored against image features only, so it is skipped.",
                    config.task, plan.test_names[0])
                ff = None
        if ff is not None:
            test_rows = np.array([g[0] for g in groups])
            ref_rows, ref_desc = reference_rows(ff, test_rows)
            avg = _open_averaged(stack, out_dir, config.task, plan, ref_desc)
        orders = {s.label: _row_order(plan.test_names, s.test_names) for s in plan.subjects}
        first, second = plan.subjects[0].label, plan.subjects[1].label
        for layer in plan.layers:
            t1 = time.time()
            truth = None
            if ff is not None:
                truth = read_true_layer(ff, layer, test_rows, ref_rows, config.mem_gb)
            for roi in plan.rois:
                acc = {s.label: handles[s.label, roi][layer]["accuracy"][()].astype(
                    np.float64).ravel() for s in plan.subjects}
                averaged = None
                if avg is not None:
                    averaged = _average_roi_layer(handles, plan, roi, layer, truth, orders,
                                                  avg[roi], config.mem_gb)
                dists = {f"sub-{k}": figures.distribution(v) for k, v in acc.items()}
                if averaged is not None:
                    dists[AVERAGED] = figures.distribution(averaged.pop("accuracy"))
                pairs, overlap = pair_statistics(acc)
                decodable_all = _reliability_columns(
                    pairs, {s.label: handles[s.label, roi][layer] for s in plan.subjects})
                results[roi, layer] = LayerResult(
                    pairs=pairs, overlap=overlap,
                    subject_means={k: _nanmean(v) for k, v in acc.items()},
                    distributions=dists,
                    scatter=(acc[first], acc[second]) if roi == plan.rois[0] else None,
                    averaged=averaged, decodable_all=decodable_all,
                )
            LOGGER.info("group: %s done for %d ROIs in %.1f s", layer, len(plan.rois),
                        time.time() - t1)
        results = {(roi, layer): results[roi, layer] for roi in plan.rois
                   for layer in plan.layers}
        if avg is not None:
            _finish_averaged(out_dir, config.task, plan, results, ref_desc)
    return results


def _reliability_columns(pairs: list[dict], groups: dict) -> float:
    """Add reliability_a/b and r_disattenuated to each pair; return the fraction of units
    decodable (q < 0.05) in every subject (NaN when a subject lacks q-values).

    Parameters
    ----------
    pairs : list of dict
        Rows of :func:`pair_statistics` (changed in place).
    groups : dict subject -> h5py.Group of the layer in that subject's output
    """
    rel, decodable = {}, []
    for label, g in groups.items():
        rel[label] = float("nan")
        if "accuracy_halves" in g:
            halves = g["accuracy_halves"][()].reshape(2, -1)
            rel[label] = statistics.split_half_reliability(halves[0], halves[1])
        if "q_value" in g:
            decodable.append(g["q_value"][()].ravel() < statistics.FDR_LEVEL)
    for p in pairs:
        ra, rb = rel[p["subject_a"]], rel[p["subject_b"]]
        p.update(reliability_a=ra, reliability_b=rb,
                 r_disattenuated=statistics.disattenuate(p["r"], ra, rb))
    if len(decodable) < len(groups) or decodable[0].size == 0:
        return float("nan")
    return float(np.logical_and.reduce(decodable).mean())


def _row_order(names: list[str], subject_names: list[str]) -> np.ndarray:
    index = {n: i for i, n in enumerate(subject_names)}
    return np.array([index[n] for n in names], dtype=np.int64)


def _open_averaged(stack: contextlib.ExitStack, out_dir: Path, task: str, plan: GroupPlan,
                   ref_desc: str) -> dict[str, h5py.File]:
    """One temporary HDF5 per ROI for the Averaged subject, renamed when all layers are done."""
    files = {}
    for roi in plan.rois:
        path = derivatives.func_path(averaged_dir(out_dir), AVERAGED, task, desc=roi,
                                     suffix="decoding", ext=".h5")
        tmp = stack.enter_context(derivatives.atomic_path(path))
        h5 = stack.enter_context(h5py.File(tmp, "w"))
        h5.create_dataset("stimulus_name", data=np.array(plan.test_names, dtype=object),
                          dtype=h5py.string_dtype("utf-8"))
        side = plan.subjects[0].sidecars[roi]
        h5.attrs.update({
            "roi": roi, "subject": AVERAGED, "task": task,
            "alpha": side.get("Alpha", float("nan")),
            "features_file": str(plan.features_file),
            "subjects": np.array([s.label for s in plan.subjects], dtype=object),
            "zscore_reference": ref_desc,
        })
        files[roi] = h5
    return files


def _average_roi_layer(handles, plan: GroupPlan, roi: str, layer: str, truth: TrueLayer,
                       orders: dict, h5: h5py.File, mem_gb: float) -> dict:
    shape = plan.shapes[layer]
    n_test = len(plan.test_names)
    g = h5.create_group(layer)
    dec = g.create_dataset("decoded", (n_test, *shape), dtype="f4", chunks=True)
    sources = [(handles[s.label, roi][layer]["decoded"], orders[s.label]) for s in plan.subjects]
    acc, corr = average_layer(sources, truth, dec, mem_gb)
    pattern_r = evaluation.pattern_correlation(corr)
    ident = evaluation.pairwise_identification(corr)
    g.create_dataset("accuracy", data=acc.astype(np.float32).reshape(shape))
    g.create_dataset("rank", data=evaluation.rank_units(acc).reshape(shape))
    g.create_dataset("pattern_r", data=pattern_r)
    g.create_dataset("identification", data=ident)
    stats = {
        "n_units": int(acc.size), "n_constant_units": int(truth.const.sum()),
        "profile_r_mean": _nanmean(acc), "pattern_r_mean": _nanmean(pattern_r),
        "identification_accuracy": _nanmean(ident),
    }
    g.attrs.update(stats)
    return {**stats, "profile_r_median": float(np.nanmedian(acc)) if np.isfinite(acc).any()
            else float("nan"), "accuracy": acc}


def _finish_averaged(out_dir: Path, task: str, plan: GroupPlan, results: dict,
                     ref_desc: str) -> None:
    """Summary TSV and sidecars of the Averaged subject (its HDF5 files close with the stack)."""
    from .participant import SUMMARY_COLUMNS as SUB_COLUMNS
    from .participant import SUMMARY_SIDECAR as SUB_SIDECAR

    rows = []
    for roi in plan.rois:
        for layer in plan.layers:
            av = results[roi, layer].averaged
            rows.append({"roi": roi, "layer": layer, "n_units": av["n_units"],
                         "n_constant_units": av["n_constant_units"],
                         "profile_r_mean": av["profile_r_mean"],
                         "profile_r_median": av["profile_r_median"],
                         "pattern_r_mean": av["pattern_r_mean"],
                         "identification_accuracy": av["identification_accuracy"],
                         "n_test_images": len(plan.test_names)})
        side = plan.subjects[0].sidecars[roi]
        derivatives.write_json(
            derivatives.func_path(averaged_dir(out_dir), AVERAGED, task, desc=roi,
                                  suffix="decoding", ext=".json"),
            {"Description": "Decoded features averaged over subjects, scored like one subject "
                            "(bids_decode group level).",
             "ROI": roi, "Subjects": [s.label for s in plan.subjects],
             "SourceFiles": [str(s.h5[roi].relative_to(out_dir)) for s in plan.subjects],
             "FeaturesFile": str(plan.features_file),
             "FeaturesAttributes": side.get("FeaturesAttributes", {}),
             "Layers": plan.layers, "Alpha": side.get("Alpha"),
             "ZScoreReference": f"Pattern correlation and identification z-score true and "
                                f"decoded features with the mean and SD over {ref_desc}."})
    path = derivatives.func_path(averaged_dir(out_dir), AVERAGED, task, suffix="decoding",
                                 ext=".tsv")
    derivatives.write_tsv(path, pd.DataFrame(rows, columns=SUB_COLUMNS))
    derivatives.write_json(path.with_suffix(".json"), SUB_SIDECAR)


# ------------------------------------------------------------------------------- 7. figures

@dataclass
class GroupFigure:
    name: str
    title: str
    caption: str
    png: bytes


def group_figures(plan: GroupPlan, results: dict[tuple[str, str], LayerResult], task: str
                  ) -> list[GroupFigure]:
    """The group figures: distributions per ROI, a subject-pair scatter, pair r, heat map."""
    figs = []
    for roi in plan.rois:
        fig = figures.accuracy_violins(
            {layer: results[roi, layer].distributions for layer in plan.layers},
            title=f"Unit accuracy, ROI {roi}")
        figs.append(GroupFigure(
            f"task-{task}_desc-{roi}_accuracy.png", f"Distribution of unit accuracy: {roi}",
            "Per layer, the distribution over units of the decoding accuracy (Pearson r of "
            "decoded and true values over the test images) for each subject and for the "
            "Averaged subject, over every unit with a finite accuracy. Violins: smoothed "
            "density; boxes: median and quartiles, whiskers to the furthest unit within 1.5 "
            "interquartile ranges.",
            figures.to_png(fig)))
    a, b = plan.subjects[0].label, plan.subjects[1].label
    roi0 = plan.rois[0]
    fig = figures.accuracy_scatter({layer: results[roi0, layer].scatter for layer in plan.layers},
                                   xlabel=f"sub-{a} accuracy", ylabel=f"sub-{b} accuracy",
                                   title=f"Unit accuracies of sub-{a} and sub-{b}, ROI {roi0}")
    figs.append(GroupFigure(
        f"task-{task}_desc-{roi0}_pairscatter.png", f"Unit accuracies of two subjects: {roi0}",
        f"Each point is a unit: its accuracy in sub-{a} (x) and sub-{b} (y); r is the Pearson "
        f"correlation over every unit finite in both (a random subset of at most "
        f"{figures.MAX_SCATTER_POINTS} units is drawn).", figures.to_png(fig)))
    fig = figures.pair_bars({roi: {layer: [p["r"] for p in results[roi, layer].pairs]
                                   for layer in plan.layers} for roi in plan.rois},
                            title="Between-subject correlation of unit accuracies")
    figs.append(GroupFigure(
        f"task-{task}_desc-crosssubject_bars.png", "Between-subject consistency per layer",
        "Bars: mean over subject pairs of the Pearson r between two subjects' unit accuracies; "
        "points: the individual pairs.", figures.to_png(fig)))
    mean_acc = np.array([[np.nanmean(list(results[r, la].subject_means.values()))
                          for la in plan.layers] for r in plan.rois])
    mean_r = np.array([[_nanmean([p["r"] for p in results[r, la].pairs]) for la in plan.layers]
                       for r in plan.rois])
    panels = {"mean unit accuracy": (mean_acc, plan.rois, plan.layers),
              "mean between-subject r": (mean_r, plan.rois, plan.layers)}
    mean_dis = np.array([[_nanmean([p.get("r_disattenuated", np.nan)
                                    for p in results[r, la].pairs]) for la in plan.layers]
                         for r in plan.rois])
    if np.isfinite(mean_dis).any():
        panels["disattenuated between-subject r"] = (mean_dis, plan.rois, plan.layers)
    if all(results[r, la].averaged for r in plan.rois for la in plan.layers):
        panels["Averaged subject accuracy"] = (
            np.array([[results[r, la].averaged["profile_r_mean"] for la in plan.layers]
                      for r in plan.rois]), plan.rois, plan.layers)
    fig = figures.heatmaps(panels, title="ROI x layer")
    figs.append(GroupFigure(
        f"task-{task}_desc-roilayer_heatmap.png", "ROI x layer summary",
        "Mean unit accuracy (averaged over subjects), mean between-subject r, the same "
        "corrected for the subjects' split-half reliabilities (r_disattenuated) and, when "
        "computed, the mean unit accuracy of the Averaged subject.", figures.to_png(fig)))
    return figs
