"""``bids_decode export OUTPUT_DIR DEST --format bdpy``: decoded features for the lab's tools.

Writes the participant outputs in the layouts of the Kamitani lab's code (docs/formats.md):

- bdpy's ``DecodedFeatures`` (``bdpy.dataform.DecodedFeatures(DEST/<network>)``), read by
  their image reconstruction code::

      DEST/<network>/<layer>/sub-<L>/<roi>/<image>.mat      variable feat, float32,
                                                           shape (1, *unit_shape)

- the decoding accuracies as ``KamitaniLab/BHscore`` reads them::

      DEST/decoding_accuracy/<network>/<layer>/sub-<L>/<roi>/accuracy.mat
                                                           variable accuracy, float32,
                                                           shape (1, *unit_shape)

- the per-voxel encoding accuracies (``--encoding`` outputs), BHscore's encoding layout::

      DEST/encoding/<network>/<layer>/sub-<L>/<roi>/accuracy.mat
                                                           variable accuracy, float32,
                                                           shape (1, n_voxels), the voxels in
                                                           the order of the ROI mask

``<network>`` is the outputs' ``net-`` label (letters and digits, so it never collides with
``decoding_accuracy``; a network labelled ``encoding`` is refused); ``<image>`` the test
image's name without extension. With
``--units-per-layer``, ``unit_shape`` is ``(N,)`` and
``DEST/<network>/<layer>/unit_index.mat`` (variable ``index``, int64, 0-based flat C-order
indices into the layer) says which units they are. Files are MATLAB 5 ``.mat`` files (what
``scipy.io.savemat`` writes and bdpy's loader reads first), each written to a temporary name
and renamed.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import h5py
import numpy as np

from bids_decode.errors import DataError, MissingInputError, UsageError
from bids_decode.features.store import stimulus_key
from bids_decode.outputs import schema as outputs
from bids_decode.outputs.encoding import find_encoding_files, read_encoding
from bids_decode.utils.files import atomic_path

LOGGER = logging.getLogger(__name__)

FORMATS = ("bdpy",)
#: Folder of the accuracies under DEST (not a network label: it has an underscore).
ACCURACY_DIR = "decoding_accuracy"
#: Folder of the encoding accuracies under DEST (a network labelled so is refused).
ENCODING_DIR = "encoding"


def save_mat(path: Path, key: str, array: np.ndarray) -> None:
    """One variable in a MATLAB 5 ``.mat`` file (atomic)."""
    from scipy.io import savemat

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        savemat(fh, {key: array}, do_compression=False)


def export_bdpy(output_dir: Path, dest: Path, task: str = "perception",
                labels=()) -> dict[str, int]:
    """Write every network's decoded features and accuracies in bdpy/BHscore layouts.

    Parameters
    ----------
    output_dir : Path
        The participant level's OUTPUT_DIR.
    dest : Path
        Destination folder (created; files of an earlier export are replaced).
    task : str
    labels : sequence of str
        Subjects to export (with or without ``sub-``); all when empty.

    Returns
    -------
    dict
        ``{"networks", "subjects", "files"}`` counts.
    """
    output_dir, dest = Path(output_dir), Path(dest)
    found = outputs.find_networks(output_dir, task)
    encoded = _encoding_networks(output_dir, task)
    wanted = {str(x).removeprefix("sub-") for x in labels}
    if not found and not encoded:
        raise MissingInputError(
            f"No participant outputs of task '{task}' in {output_dir} (files "
            f"sub-<L>/func/sub-<L>_task-{task}_net-<N>_desc-<ROI>_decoding.h5 or "
            "..._encoding.h5). Run the participant level first, or fix --task.")
    if ENCODING_DIR in found:
        raise UsageError(
            f"The outputs in {output_dir} hold a network labelled '{ENCODING_DIR}', whose "
            f"decoded features would go to DEST/{ENCODING_DIR}/, the folder of the encoding "
            "accuracies. Export cannot keep them apart: give the network another name "
            "(--network, or the features file's name) and rerun the participant level.")
    n_files, subjects = 0, set()
    for kind, per_net in (("decoding", found), ("encoding", encoded)):
        for net, per_sub in per_net.items():
            for sub, rois in per_sub.items():
                if wanted and sub not in wanted:
                    continue
                subjects.add(sub)
                for roi, path in rois.items():
                    n_files += (_export_file(path, dest, net, sub, roi) if kind == "decoding"
                                else _export_encoding(path, dest, net, sub, roi))
    n_nets = len(set(found) | set(encoded))
    LOGGER.info("export: %d networks, %d subjects, %d files in %s", n_nets, len(subjects),
                n_files, dest)
    return {"networks": n_nets, "subjects": len(subjects), "files": n_files}


def _encoding_networks(output_dir: Path, task: str) -> dict[str, dict[str, dict[str, Path]]]:
    """``{network label: {subject: {roi: path}}}`` of every ``*_encoding.h5`` of ``task``."""
    labels = {p.name.split("_net-", 1)[1].split("_", 1)[0] for p in Path(output_dir).glob(
        f"sub-*/func/sub-*_task-{task}_net-*_desc-*_encoding.h5")}
    return {la: find_encoding_files(output_dir, task, la) for la in sorted(labels)}


def _export_encoding(path: Path, dest: Path, net: str, sub: str, roi: str) -> int:
    """The per-voxel encoding accuracies of one ROI output, one file per layer.

    The voxels of an encoding file are in ascending flat index on the masks' grid, which is
    the order of the ROI mask (``np.flatnonzero``; BData: column order); checked here.
    """
    enc = read_encoding(path)
    if not np.all(np.diff(enc.voxel_index) > 0):
        raise DataError(
            f"{path}: its voxels (dataset voxel_index) are not in ascending order on the masks' "
            "grid, the order of the ROI mask that BHscore's layout needs. The file is damaged "
            "or was not written by bids_decode: rerun the participant level with --encoding "
            "for this subject.")
    for i, layer in enumerate(enc.layers):
        save_mat(dest / ENCODING_DIR / net / layer / f"sub-{sub}" / roi / "accuracy.mat",
                 "accuracy", enc.accuracy[i].astype(np.float32)[None])
    return len(enc.layers)


def _export_file(path: Path, dest: Path, net: str, sub: str, roi: str) -> int:
    """The decoded features and accuracies of one ROI output; returns the files written."""
    n = 0
    with h5py.File(path, "r") as f:
        names = [stimulus_key(outputs.as_str(v)) for v in f["stimulus_name"][()]]
        if len(set(names)) != len(names):
            raise UsageError(f"{path} has test images whose names differ only in folder or "
                             "extension; bdpy names each file after its image, so they cannot "
                             "be exported apart.")
        for layer in (k for k in f if isinstance(f[k], h5py.Group)):
            g = f[layer]
            folder = dest / net / layer / f"sub-{sub}" / roi
            for i, name in enumerate(names):  # one image at a time: memory ~ one image row
                save_mat(folder / f"{name}.mat", "feat", g["decoded"][i][None].astype(np.float32))
                n += 1
            acc = g["accuracy"][()].astype(np.float32)[None]
            save_mat(dest / ACCURACY_DIR / net / layer / f"sub-{sub}" / roi / "accuracy.mat",
                     "accuracy", acc)
            n += 1
            if "unit_index" in g:
                save_mat(dest / net / layer / "unit_index.mat", "index",
                         g["unit_index"][()].astype(np.int64)[None])
                n += 1
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output_dir", type=Path, help="OUTPUT_DIR of the participant level")
    parser.add_argument("dest", type=Path, help="destination folder")
    parser.add_argument("--format", choices=FORMATS, default="bdpy",
                        help="bdpy: DecodedFeatures and BHscore accuracy layouts "
                             "(docs/formats.md)")
    parser.add_argument("--task", default="perception", help="task label (default perception)")
    parser.add_argument("--participant-label", "--participant_label", nargs="+", default=(),
                        metavar="LABEL", help="subjects to export (default: all)")


def run_from_args(args: argparse.Namespace) -> int:
    if Path(args.output_dir).resolve() == Path(args.dest).resolve():
        raise UsageError("DEST must be another folder than OUTPUT_DIR.")
    res = export_bdpy(args.output_dir, args.dest, args.task, args.participant_label)
    print(f"Exported {res['files']} files ({res['networks']} networks, {res['subjects']} "
          f"subjects) to {args.dest} (bdpy DecodedFeatures: {args.dest}/<network>)")
    return 0
