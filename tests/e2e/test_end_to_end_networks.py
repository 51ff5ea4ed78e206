"""Participant and group levels with layers named by graph node and units of any shape.

1. Features with (T, D) token layers, (C, H, W) maps and vectors, named like torchvision
   nodes, with a planted per-unit decodability: every unit is decoded, ranked, reported and
   compared between subjects in its own shape.
2. Stimulus images -> random-weight ResNet-18 (``--network resnet18``) -> participant ->
   group, end to end; figures are labelled by node name.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from bids_decode.cli import main
from bids_decode.reports import figures

SHAPED = {"layer3.1.relu_1": (4, 5, 3), "encoder.ln": (7, 6), "heads.head": (33,)}


def _figure_texts(monkeypatch) -> list[str]:
    """Collect every text drawn in the report figures (titles, tick labels)."""
    import matplotlib.text

    texts: list[str] = []
    real = figures.to_png

    def spy(fig, *args, **kwargs):
        texts.extend(t.get_text() for t in fig.findobj(matplotlib.text.Text))
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(figures, "to_png", spy)
    return texts


@pytest.mark.slow
def test_units_of_any_shape_are_decoded_ranked_reported_and_compared(
        tmp_path_factory, tmp_path, monkeypatch):
    from bids_decode.simulate import simulate_dataset

    sim = simulate_dataset(tmp_path_factory.mktemp("shapes") / "ds", n_subjects=2,
                           n_train_runs=12, n_test_runs=3, layers=SHAPED, seed=2)
    texts = _figure_texts(monkeypatch)
    out = tmp_path / "out"
    assert main([str(sim["bids_dir"]), str(out), "participant", "--features",
                 str(sim["features"]), "--roi", "VC", "--n-voxels", "100"]) == 0
    for sub in ("01", "02"):
        path = out / f"sub-{sub}" / "func" / (f"sub-{sub}_task-perception"
                                               f"_net-simulated_desc-VC_decoding.h5")
        with h5py.File(path) as h5:
            n_test = h5["stimulus_name"].shape[0]
            for layer, shape in SHAPED.items():
                acc, rank = h5[layer]["accuracy"][()], h5[layer]["rank"][()]
                assert acc.shape == rank.shape == shape, layer
                assert h5[layer]["decoded"].shape == (n_test, *shape), layer
                rho = sim["truth"][layer]
                live = ~np.isnan(rho)
                assert spearmanr(acc[live], rho[live])[0] > 0.5, layer
                # ranks follow accuracy over the whole unit array, whatever its shape
                ok = np.isfinite(acc)
                assert rank[np.unravel_index(np.nanargmax(acc), shape)] == 1, layer
                assert spearmanr(rank[ok], acc[ok])[0] == pytest.approx(-1.0), layer
    tsv = pd.read_csv(out / "sub-01" / "func" / "sub-01_task-perception_net-simulated_decoding.tsv",
                      sep="\t")
    assert dict(zip(tsv.layer, tsv.n_units)) == {k: int(np.prod(v)) for k, v in SHAPED.items()}
    assert main([str(sim["bids_dir"]), str(out), "group"]) == 0
    corr = pd.read_csv(out / "group" / "task-perception"
        "_net-simulated_desc-crosssubject_correlation.tsv",
                       sep="\t")
    assert set(corr.layer) == set(SHAPED) and (corr.r > 0.3).all(), corr
    assert set(SHAPED) <= set(texts)  # the figures name the layers by node name


@pytest.fixture(scope="module")
def with_images(tmp_path_factory):
    data = pytest.importorskip("skimage.data")
    from bids_decode.simulate import simulate_dataset

    photos = [getattr(data, n)() for n in ("astronaut", "coffee", "chelsea", "rocket")]
    return simulate_dataset(tmp_path_factory.mktemp("rn") / "ds", n_subjects=2,
                            n_train_runs=6, n_test_runs=2, stimulus_images=True,
                            photos=photos, seed=4)


@pytest.mark.slow
def test_resnet18_images_to_group(with_images, tmp_path, monkeypatch):
    ds = with_images["bids_dir"]
    texts = _figure_texts(monkeypatch)
    out = tmp_path / "out"
    layers = ["fc", "layer4.1.relu_1", "avgpool"]  # any order: decoded in forward order
    assert main([str(ds), str(out), "participant", "--network", "resnet18", "--weights",
                 "random", "--layers", *layers, "--n-voxels", "100", "--roi", "VC"]) == 0
    (feats,) = (out / ".bids_decode_work" / "features").glob("*.h5")
    with h5py.File(feats) as f:
        assert f.attrs["network"] == "resnet18" and f.attrs["weights"] == "random"
        assert json.loads(f.attrs["layers"]) == ["layer4.1.relu_1", "avgpool", "fc"]
        shapes = {k: f["layers"][k].shape[1:] for k in f["layers"]}
    assert shapes == {"layer4.1.relu_1": (512, 7, 7), "avgpool": (512, 1, 1), "fc": (1000,)}
    for sub in ("01", "02"):
        tsv = pd.read_csv(out / f"sub-{sub}" / "func" / f"sub-{sub}_task-perception"
            f"_net-resnet18_decoding.tsv",
                          sep="\t")
        assert list(tsv.layer) == layers  # the order asked for
        # random-weight conv features still carry the image content the brain encodes
        ident = dict(zip(tsv.layer, tsv.identification_accuracy))
        assert ident["layer4.1.relu_1"] > 0.85 and min(ident.values()) > 0.5, tsv
        with h5py.File(out / f"sub-{sub}" / "func" /
                       f"sub-{sub}_task-perception_net-resnet18_desc-VC_decoding.h5") as h5:
            assert h5["layer4.1.relu_1"]["accuracy"].shape == (512, 7, 7)
    assert main([str(ds), str(out), "group"]) == 0
    corr = pd.read_csv(out / "group" / "task-perception"
        "_net-resnet18_desc-crosssubject_correlation.tsv",
                       sep="\t")
    assert set(corr.layer) == set(layers)
    assert {"layer4.1.relu_1", "avgpool", "fc"} <= set(texts)
    html = (out / "sub-01_net-resnet18.html").read_text()
    assert "layer4.1.relu_1" in html and "resnet18" in html
