"""Brain maps of the encoding models: NIfTI statistical maps in the space of the ROI masks.

Files, beside each ROI's encoding file (``docs/outputs.md`` explains them for users)::

    sub-<L>/func/sub-<L>_task-<T>_net-<N>_desc-<ROI>_stat-r_statmap.nii.gz (+ .json)
        4-D, one volume per layer (sidecar "Layers", in order): each voxel's encoding
        accuracy, Pearson r over the test images
    sub-<L>/func/sub-<L>_task-<T>_net-<N>_desc-<ROI>_stat-bestdepth_statmap.nii.gz (+ .json)
        3-D: relative depth (0 = first layer, 1 = last) of each voxel's best layer, for the
        voxels whose best accuracy is significant (:func:`significant_voxels`)

Names: BIDS 1.11 has no derivative suffix for a statistical map of a functional run (the
validator's schema allows ``bold``, ``cbv``, ``sbref``, ``mask``, ``dseg`` and ``probseg``
there, none of which holds a correlation), and this app's ``net-`` entity is not in the
schema either. The maps are therefore named as the statistical-maps proposal (BEP041) names
them, as nilearn's ``save_glm_to_bids`` and FitLins do (``stat-<S>_statmap``), and listed in
``.bidsignore`` (:data:`~bids_decode.outputs.paths.BIDSIGNORE`) like the app's other files.

Background: voxels outside the ROI (and, in the depth map, voxels without a significant best
accuracy) hold NaN, SPM's convention: 0 is a value of both maps (r = 0; depth 0 is the first
layer). nilearn's plotting and maskers read NaN as empty (``plot_stat_map`` shows it as 0,
under any threshold).
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_decode.evaluation.bhscore import ALPHA, best_and_kept
from bids_decode.outputs.encoding import EncodingOutputs, read_encoding, relative_depth
from bids_decode.outputs.paths import func_path
from bids_decode.outputs.schema import network_label, read_json
from bids_decode.utils.files import atomic_path, write_json

LOGGER = logging.getLogger(__name__)

#: The maps of one ROI (``stat-<key>``) and what each voxel holds.
BRAIN_MAPS = {
    "r": "Encoding accuracy of each voxel: Pearson r over the test images between the "
         "predicted and the measured response; one volume per layer (Layers, in order)",
    "bestdepth": "Relative depth of the layer that predicts the voxel best, best_layer / "
                 "(number of layers - 1): 0 = first layer, 1 = last (LayerDepth); only voxels "
                 "whose best accuracy is significant (SignificanceRule), NaN elsewhere",
}
#: Units of each map (the sidecar's ``Units``).
UNITS = {"r": "Pearson correlation coefficient (unitless)",
         "bestdepth": "relative layer depth (unitless, 0 to 1)"}

#: (subject, network) pairs whose grid without an affine was already reported.
_NO_GRID_LOGGED: set[tuple[str, str]] = set()


def brain_map_path(output_dir: Path, subject: str, task: str, roi: str, stat: str, *,
                   network: str) -> Path:
    """``sub-<L>/func/sub-<L>_task-<T>_net-<N>_desc-<ROI>_stat-<stat>_statmap.nii.gz``."""
    if stat not in BRAIN_MAPS:
        raise ValueError(f"undeclared brain map stat-{stat}; declared: {sorted(BRAIN_MAPS)}")
    return func_path(output_dir, subject, task, net=network_label(network), desc=roi,
                     stat=stat, suffix="statmap", ext=".nii.gz")


def sidecar_path(map_path: Path) -> Path:
    """The JSON sidecar of a ``.nii.gz`` map."""
    return Path(map_path).with_name(Path(map_path).name.removesuffix(".nii.gz") + ".json")


def significant_voxels(enc: EncodingOutputs, bh_test: str = "permutation"
                       ) -> tuple[np.ndarray, str]:
    """Voxels whose best accuracy is significant, and the rule in words.

    The encoding BH score's rule (:func:`~bids_decode.evaluation.bhscore.best_and_kept`, the
    layers as the family): ``permutation`` when the file has permutation p-values
    (Bonferroni over the layers); ``paper``, or no permutations: the parametric test as coded,
    over the test images.

    Returns
    -------
    keep : ndarray of shape (n_voxels,), bool
    rule : str
    """
    n_layers, n_test = len(enc.layers), int(enc.attrs.get("n_test_images", 0))
    test = "permutation" if bh_test == "permutation" and np.isfinite(enc.p_value).any() \
        else "paper"
    _, keep = best_and_kept(enc.accuracy, enc.p_value, test, n_test)
    if test == "permutation":
        return keep, (f"one-sided permutation p-value of the best layer's accuracy, "
                      f"Bonferroni-corrected over the {n_layers} layers, below {ALPHA}, and "
                      "accuracy > 0 (bids_decode.evaluation.bhscore.permutation_keep)")
    why = "--bh-test paper" if bh_test == "paper" else "no permutation p-values in the file"
    return keep, (
        f"KamitaniLab/BHscore's parametric test as coded ({why}): t = r sqrt((n - 2)(1 - "
        f"r^2)), two-sided p from Student's t with n - 2 degrees of freedom below {ALPHA}, "
        f"and r > 0, with n = {n_test} test images "
        "(bids_decode.evaluation.bhscore.paper_keep)")


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, *,
                intent: tuple = ("none", ())) -> Path:
    """A float32 NIfTI-1 (mm units), gzip-compressed with a fixed time stamp so the same
    values give the same bytes; written atomically."""
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.asarray(affine, float))
    img.header.set_xyzt_units("mm")
    img.header.set_intent(intent[0], intent[1])
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(img.to_bytes(), mtime=0))
    return Path(path)


def write_brain_maps(encoding_path: Path, *, bh_test: str = "permutation") -> list[Path]:
    """Write the brain maps (:data:`BRAIN_MAPS`) of one ROI's encoding file beside it.

    Parameters
    ----------
    encoding_path : Path
        ``sub-<L>/func/sub-<L>_task-<T>_net-<N>_desc-<ROI>_encoding.h5``.
    bh_test : {"permutation", "paper"}
        ``--bh-test``: the significance rule of the best-layer map (:func:`significant_voxels`).

    Returns
    -------
    list of Path
        The maps written (their JSON sidecars beside them); empty when the masks' grid is not
        an image (BData columns: ``grid_shape`` is not 3-D), which is logged once per subject
        and network.
    """
    enc = read_encoding(encoding_path)
    a = enc.attrs
    subject, task, network = str(a["subject"]), str(a["task"]), str(a["network"])
    if len(enc.grid_shape) != 3:
        if (subject, network) not in _NO_GRID_LOGGED:
            _NO_GRID_LOGGED.add((subject, network))
            LOGGER.info("sub-%s %s: the ROI voxels are not on an image grid (grid shape %s, "
                        "e.g. BData columns), so no brain maps are written", subject, network,
                        enc.grid_shape)
        return []
    out_dir = Path(encoding_path).parents[2]
    paths = {s: brain_map_path(out_dir, subject, task, enc.roi, s, network=network)
             for s in BRAIN_MAPS}
    keep, rule = significant_voxels(enc, bh_test)
    n_test = int(a.get("n_test_images", 0))
    common = {"Subject": subject, "Task": task, "Network": network, "ROI": enc.roi,
              "Layers": enc.layers, "NumberOfVoxels": len(enc.voxel_index),
              "NumberOfTestImages": n_test, "BackgroundValue": "NaN",
              "Sources": [f"bids::{Path(encoding_path).relative_to(out_dir).as_posix()}"]}
    acc = np.stack([enc.volume(r) for r in enc.accuracy], axis=-1)
    write_nifti(paths["r"], acc, enc.grid_affine, intent=("correlation", (max(n_test - 2, 1),)))
    write_json(sidecar_path(paths["r"]), {
        **common, "Description": BRAIN_MAPS["r"], "Statistic": "r", "Units": UNITS["r"]})
    depth = enc.volume(np.where(keep, enc.best_depth, np.nan))
    write_nifti(paths["bestdepth"], depth, enc.grid_affine)
    write_json(sidecar_path(paths["bestdepth"]), {
        **common, "Description": BRAIN_MAPS["bestdepth"], "Statistic": "bestdepth",
        "Units": UNITS["bestdepth"], "SignificanceRule": rule, "BHTest": bh_test,
        "NumberOfSignificantVoxels": int(keep.sum()),
        "LayerDepth": {la: float(relative_depth(i, len(enc.layers)))
                       for i, la in enumerate(enc.layers)}})
    LOGGER.info("sub-%s %s: brain maps of %s written (%d of %d voxels with a significant best "
                "layer)", subject, network, enc.roi, int(keep.sum()), len(keep))
    return [paths["r"], paths["bestdepth"]]


def read_brain_map(path: Path) -> tuple[nib.Nifti1Image, dict]:
    """A map and its sidecar (the report reads them)."""
    return nib.load(path), read_json(sidecar_path(path))
