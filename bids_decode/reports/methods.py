"""The methods paragraphs of the reports: what was done, with the parameters and versions used.

:func:`citation` writes a subject's paragraph from its run configuration and sidecar (with
:func:`statistics_sentence` for the permutation tests and reliabilities); :func:`group_methods`
adds the group level's between-subject analyses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from bids_decode.config import quoted  # parameters: the sidecar's entry, else the run config's

LOGGER = logging.getLogger(__name__)


def citation(config: Mapping, sidecar: Mapping, layers: Sequence[str], rois: Sequence[str],
             n_units: int | None = None) -> str:
    """The methods paragraph (plain text), with the parameters and package versions used."""
    vers = (config.get("provenance") or {}).get("versions", {})
    samples = sidecar.get("Samples") or (config.get("provenance") or {}).get("samples", {})
    fattrs = sidecar.get("FeaturesAttributes", {})

    def v(name):
        return vers.get(name, "?")

    libs = ", ".join(f"{n} {vers[k]}" for k, n in (
        ("numpy", "NumPy"), ("scipy", "SciPy"), ("nibabel", "NiBabel"), ("nilearn", "Nilearn"),
        ("h5py", "h5py"), ("scikit-learn", "scikit-learn"), ("pandas", "pandas"),
        ("pybids", "PyBIDS"), ("torch", "PyTorch")) if k in vers)
    network = fattrs.get("network") or config.get("network", "a deep neural network")
    weights = fattrs.get("weights") or config.get("weights") or "default weights"
    nvox = config.get("n_voxels", sidecar.get("VoxelsSelectedPerUnit", "?"))
    nvox_txt = "all voxels of the ROI" if nvox == 0 else f"the {nvox} voxels of the ROI"
    units_txt = f" ({n_units} units in all)" if n_units else ""
    return (
        f"Decoding analyses were performed with bids_decode {v('bids_decode')} (Python "
        f"{v('python')}; {libs}), which implements the feature decoding analysis of Horikawa "
        "and Kamitani (2017, Nat Commun 8:15037) and Horikawa et al. (2019, Sci Data "
        f"6:190012). Unit activations of layers {', '.join(layers)} of {network} ({weights}) "
        "were computed for every stimulus image. The BOLD time series of each run were "
        "linearly detrended and z-scored per voxel, shifted by "
        f"{quoted(config, sidecar, 'hrf_shift')} s to account for "
        "the haemodynamic delay and averaged within each stimulus block; blocks repeating the "
        "preceding image (one-back task) were discarded. For each unit of each layer"
        f"{units_txt}, an L2-regularised linear regression "
        f"(alpha = {quoted(config, sidecar, 'alpha')}, bias penalised as in "
        f"fastl2lir) was trained on {samples.get('n_train_samples', '?')} training samples "
        f"from {samples.get('n_train_runs', '?')} runs, using {nvox_txt} whose responses "
        "correlated most strongly (in absolute value) with the unit over the training samples; "
        "voxels and units were z-scored with training statistics. ROIs: "
        f"{', '.join(rois)}. The decoders were tested on {samples.get('n_test_images', '?')} "
        f"test images, whose responses were averaged over their "
        f"{samples.get('n_test_blocks', '?')} blocks from {samples.get('n_test_runs', '?')} "
        "runs. The decoding accuracy of a unit was the Pearson correlation between its decoded "
        "and true values over the test images (profile correlation); pattern correlation was "
        "the Pearson correlation over the units of a layer between the decoded and true "
        "pattern of each image, and identification accuracy the fraction of other test images "
        "whose true pattern correlated less with the decoded pattern than the correct one."
    ) + statistics_sentence(config, samples)


def statistics_sentence(config: Mapping, samples: Mapping) -> str:
    """Methods text for the permutation tests and the split-half reliability ('' when off).

    The reliability sentence needs a run of this version (``n_permutations`` in the config)
    with at least two test blocks per image on average (``samples``: the sidecar's counts).
    """
    n = int(config.get("n_permutations", 0) or 0)
    text = ""
    if n:
        text += (
            " Each unit's accuracy was tested with a one-sided permutation test (H0: r <= 0): "
            f"the test-image labels were permuted {n} times (the same permutations for every "
            f"unit; seed {config.get('permutation_seed', 0)}) and p = (1 + #{{r_perm >= r}}) / "
            f"(1 + {n}). p-values were corrected over the units of each layer by the "
            "Benjamini-Hochberg procedure (units with q < 0.05 are called decodable) and, for "
            "the family-wise error rate, by the max-statistic method (Westfall and Young 1993).")
    blocks, images = samples.get("n_test_blocks", 0), samples.get("n_test_images", 0)
    if "n_permutations" in config and images and blocks >= 2 * images:
        text += (
            " The reliability of each unit's decoded values was the Spearman-Brown-corrected "
            "correlation, across test images, of the values decoded from the odd and from the "
            "even presentations of each image; its square root is the accuracy's noise "
            "ceiling.")
    return text


def group_methods(plan) -> str:
    """The methods paragraph of the group report: the subjects' methods, then the group's."""
    ref = plan.subjects[0]
    return (
        citation(ref.config, ref.sidecars[plan.rois[0]], plan.layers, plan.rois)
        + f" Between-subject consistency was assessed as the Pearson correlation of unit "
        f"accuracies between each pair of the {len(plan.subjects)} subjects (Horikawa et al. "
        "2019), and an averaged subject was formed by averaging the decoded features across "
        "subjects." + (" Between-subject correlations were corrected for attenuation by "
                       "dividing them by the square root of the product of the two subjects' "
                       "reliabilities (the Spearman-Brown-corrected correlation, across units, "
                       "of the accuracies decoded from the odd and from the even presentations)."
                       if "n_permutations" in ref.config else ""))
