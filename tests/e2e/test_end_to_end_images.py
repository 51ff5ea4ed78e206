"""Stimulus images -> features (random-weight AlexNet) -> participant -> group, end to end.

The stimuli are real photographs (scikit-image's samples) with a smooth colour pattern driven
by each image's latent vector blended in; the simulated brain responds to the latent vector,
so the network's features of the images are decodable. No precomputed features file is given.
"""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from bids_decode.cli import main

pytestmark = pytest.mark.slow  # images -> features -> participant -> group through the CLI


@pytest.fixture(scope="module")
def with_images(tmp_path_factory):
    """Real photographs (scikit-image's samples) with the latent pattern blended in."""
    data = pytest.importorskip("skimage.data")
    from bids_decode.simulate import simulate_dataset

    photos = [getattr(data, n)() for n in ("astronaut", "coffee", "chelsea", "rocket",
                                           "hubble_deep_field", "immunohistochemistry")]
    return simulate_dataset(tmp_path_factory.mktemp("img") / "ds", n_subjects=2,
                            n_train_runs=8, n_test_runs=2, stimulus_images=True,
                            photos=photos, seed=4)


def test_images_to_group(with_images, tmp_path):
    ds = with_images["bids_dir"]
    out = tmp_path / "out"
    args = [str(ds), str(out), "participant", "--network", "alexnet", "--weights", "random",
            "--layers", "fc6", "fc8", "--n-voxels", "100", "--roi", "VC"]
    assert main(args) == 0
    feats = list((out / ".bids_decode_work" / "features").glob("*.h5"))
    assert len(feats) == 1, "one features file shared by both subjects"
    with h5py.File(feats[0]) as f:
        assert f.attrs["weights"] == "random" and f.attrs["network"] == "alexnet"
        assert f["layers/fc6"].shape == (len(with_images["images"]), 4096)
    for sub in ("01", "02"):
        tsv = pd.read_csv(out / f"sub-{sub}" / "func" / f"sub-{sub}_task-perception"
            f"_net-alexnet_decoding.tsv",
                          sep="\t")
        # the network's features carry the latent the brain encodes: well above chance
        assert (tsv.identification_accuracy > 0.75).all(), tsv
        assert (tsv.profile_r_mean > 0.1).all(), tsv
        side = (out / f"sub-{sub}" / "func" /
                f"sub-{sub}_task-perception_net-alexnet_desc-VC_decoding.json").read_text()
        assert '"weights": "random"' in side
    assert main([str(ds), str(out), "group"]) == 0
    corr = pd.read_csv(out / "group" / "task-perception"
        "_net-alexnet_desc-crosssubject_correlation.tsv",
                       sep="\t")
    assert set(corr.layer) == {"fc6", "fc8"}
    assert (corr.r > 0.3).all(), corr
    with h5py.File(out / "sub-01" / "func" / "sub-01_task-perception"
        "_net-alexnet_desc-VC_decoding.h5") as a:
        assert np.isfinite(a["fc8"]["accuracy"][()]).sum() > 900
