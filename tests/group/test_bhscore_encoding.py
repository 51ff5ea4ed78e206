"""The group BH table's encoding columns, on synthetic encoding files of two networks.

The files are written with the participant level's own writer (outputs/encoding.py); one
network's voxels prefer a layer that rises with the ROI (hierarchical), the other's prefer any
layer (mixed); a third network has no encoding outputs. The encoding BH of each subject and of
the pooled subjects must equal the independent implementation of
tests/evaluation/test_bhscore_encoding.py on the files' accuracies and the same voxel draw.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from bids_decode.config import RunConfig
from bids_decode.evaluation import bhscore
from bids_decode.group import networks
from bids_decode.outputs import schema as outputs
from bids_decode.outputs.encoding import (
    encoding_h5,
    encoding_writer,
    read_encoding,
    write_best_layers,
    write_encoding_layer,
)
from tests.evaluation.test_bhscore_encoding import reference_encoding_bhscore

TASK = "perception"
LAYERS = ["conv1", "conv2", "conv3", "conv4", "fc6", "fc7"]
SUBJECTS = ["01", "02"]
N_VOXELS = {"V1": 1300, "V2": 600, "V3": 500, "V4": 400, "HVC": 1100}
N_IMAGES = 50
GRID = (40, 40, 40)


def write_network(out, network, hierarchical, rng, subjects=SUBJECTS, rois=tuple(N_VOXELS)):
    """Encoding files of one network: every subject x ROI, voxels in ascending mask order."""
    for sub in subjects:
        taken = rng.choice(np.prod(GRID), size=sum(N_VOXELS.values()), replace=False)
        start = 0
        for i, roi in enumerate(bhscore.BH_ROIS):
            n = N_VOXELS[roi]
            vox = np.sort(taken[start:start + n])
            start += n
            if roi not in rois:
                continue
            centre = i * (len(LAYERS) - 1) / 4
            planted = (np.clip(np.round(centre + rng.normal(0, 0.7, n)), 0, len(LAYERS) - 1)
                       if hierarchical else rng.integers(0, len(LAYERS), n)).astype(int)
            acc = rng.normal(0.05, 0.1, (len(LAYERS), n))
            acc[planted, np.arange(n)] += rng.uniform(0.0, 0.6, n)
            acc = np.clip(acc, -0.99, 0.99).astype(np.float32)
            p = 1 - stats.norm.cdf(acc.astype(np.float64) * np.sqrt(N_IMAGES - 3))
            path = encoding_h5(out, sub, TASK, roi, network=network)
            path.parent.mkdir(parents=True, exist_ok=True)
            attrs = {"subject": sub, "task": TASK, "roi": roi, "network": network}
            with encoding_writer(path, voxel_index=vox, grid_shape=GRID, grid_affine=np.eye(4),
                                 test_names=[f"im{k}.JPEG" for k in range(N_IMAGES)],
                                 attrs=attrs, n_layers=len(LAYERS)) as h5:
                for li, layer in enumerate(LAYERS):
                    write_encoding_layer(h5, layer, {"accuracy": acc[li], "p_value": p[li]},
                                         {"n_units": 100, "n_units_selected": 50})
                write_best_layers(h5, LAYERS)


def fake_decoding(network, subjects):
    """A decoding result per subject and pooled (the encoding columns do not depend on it)."""
    counts = np.zeros((len(LAYERS), 6), dtype=np.int64)
    res = networks.NetworkBH(network, LAYERS)
    for k, sub in enumerate([*subjects, networks.POOLED]):
        res.results[sub] = bhscore.BHResult(0.1 * (k + 1), 0.0, 0.5, counts)
    return res


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("enc_bh")
    rng = np.random.default_rng(7)
    write_network(out, "hierarchical", True, rng)
    write_network(out, "mixed", False, rng)
    write_network(out, "partial", True, rng, rois=("V1", "V2"))
    cfg = RunConfig(bids_dir="/d", output_dir=str(out), analysis_level="group", task=TASK)
    scores, notes = [], []
    for net in ("hierarchical", "mixed", "partial", "absent"):
        plan = SimpleNamespace(network=net, subjects=[SimpleNamespace(label=s)
                                                      for s in SUBJECTS])
        scores.append(fake_decoding(net, SUBJECTS))
        notes += networks.encoding_bhscore(cfg, plan, scores[-1])
    path = outputs.group_table(out, TASK, "bhscore", "summary")
    outputs.BH_SUMMARY.write(path, networks.bh_summary_rows(scores, cfg.bh_test))
    return SimpleNamespace(out=out, cfg=cfg, path=path, notes=notes,
                           table=outputs.Table.read(path))


def _reference(out, network, subjects, seed):
    data, draws = [], []
    for sub in subjects:
        rois, vox = [], []
        for roi in bhscore.BH_ROIS:
            enc = read_encoding(encoding_h5(out, sub, TASK, roi, network=network))
            rois.append((enc.accuracy.astype(np.float64), enc.p_value))
            vox.append(bhscore.voxel_draw(enc.accuracy.shape[1], 1000, seed))
        data.append(rois)
        draws.append(vox)
    return reference_encoding_bhscore(data, draws, test="permutation")


def test_encoding_columns_equal_the_independent_implementation(run):
    t = run.table.set_index(["network", "subject"])
    assert list(run.table.columns) == outputs.BH_SUMMARY.names
    assert list(run.table.columns)[-5:] == ["bh_encoding", "bh_encoding_ci_low",
                                            "bh_encoding_ci_high", "n_voxels_kept", "bh_score"]
    for net in ("hierarchical", "mixed"):
        for sub in [*SUBJECTS, "pooled"]:
            subs = SUBJECTS if sub == "pooled" else [sub]
            ref = _reference(run.out, net, subs, run.cfg.bh_seed)
            row = t.loc[(net, sub)]
            assert abs(row["bh_encoding"] - ref) < 1e-6, (net, sub, row["bh_encoding"], ref)
            assert row["bh_encoding_ci_low"] <= row["bh_encoding"] <= row["bh_encoding_ci_high"]
            assert abs(row["bh_score"] - (row["bh_decoding"] + row["bh_encoding"]) / 2) < 1e-6
    pooled_kept = t.loc[("hierarchical", "pooled"), "n_voxels_kept"]
    assert pooled_kept == sum(t.loc[("hierarchical", s), "n_voxels_kept"] for s in SUBJECTS)
    # at most 1000 voxels of V1 (1300) and HVC (1100) per subject: 3500 drawn per subject
    assert 0 < t.loc[("hierarchical", "01"), "n_voxels_kept"] <= 3500


def test_hierarchical_network_scores_higher_in_every_subject_and_pooled(run):
    wide = run.table.pivot(index="subject", columns="network", values="bh_encoding")
    assert (wide["hierarchical"] > 0.6).all() and (wide["mixed"].abs() < 0.15).all(), wide
    full = run.table.pivot(index="subject", columns="network", values="bh_score")
    assert (full["hierarchical"] > full["mixed"]).all(), full


def test_networks_without_encoding_outputs_get_na_and_a_note(run):
    t = run.table.set_index(["network", "subject"])
    for net in ("partial", "absent"):
        assert t.loc[net, ["bh_encoding", "bh_score", "n_voxels_kept"]].isna().all().all()
        assert t.loc[net, "bh_decoding"].notna().all()  # the decoding score is untouched
        assert any(f"network {net}" in n and "--encoding" in n for n in run.notes), run.notes
    assert "n/a" in run.path.read_text()
    sidecar = json.loads(run.path.with_suffix(".json").read_text())
    assert "bh_score" in sidecar and "(bh_decoding + bh_encoding) / 2" in str(sidecar["bh_score"])


def test_paper_test_and_voxel_count_follow_the_bh_options(run):
    cfg = RunConfig.from_dict({**run.cfg.to_dict(), "bh_test": "paper", "bh_units": 300})
    plan = SimpleNamespace(network="hierarchical",
                           subjects=[SimpleNamespace(label="01")])
    res = fake_decoding("hierarchical", ["01"])
    assert networks.encoding_bhscore(cfg, plan, res) == []
    counts = res.encoding["01"].counts
    assert counts.shape == (5, len(LAYERS) + 1)
    assert (counts.sum(axis=1) == 300).all()  # every ROI has >= 300 voxels: 300 drawn
    data, draws = [], []
    for roi in bhscore.BH_ROIS:
        enc = read_encoding(encoding_h5(run.out, "01", TASK, roi, network="hierarchical"))
        data.append((enc.accuracy.astype(np.float64), enc.p_value))
        draws.append(bhscore.voxel_draw(enc.accuracy.shape[1], 300, cfg.bh_seed))
    ref = reference_encoding_bhscore([data], [draws], test="paper")
    assert abs(res.encoding["01"].score - ref) < 1e-12
