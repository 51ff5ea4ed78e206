"""Regenerate ``fastl2lir_golden.npz``: fastl2lir 0.11's own golden test data, 3-D targets.

The arrays are taken unchanged from ``tests/testdata_{basic,nfeat,wide}.npz`` of
https://github.com/KamitaniLab/PyFastL2LiR (version 0.11, commit 4b7c794, MIT licence),
which fastl2lir's own tests fit with ``alpha=1.0`` and ``n_feat`` 0 (basic, wide) or 20
(nfeat). Only the 3-D target variants are kept (``x_tr``, ``x_te``, ``y_2d`` of shape
(n_samples, 10, 10), weights ``w_2d`` (n_voxels, 10, 10), bias ``b_2d`` (1, 10, 10) and
predictions ``yp_2d`` (n_test, 10, 10)), stored as ``<case>_<name>``.

    python tests/data/make_fastl2lir_golden.py PATH/TO/PyFastL2LiR/tests
"""

import sys
from pathlib import Path

import numpy as np

CASES = {"basic": 0, "nfeat": 20, "wide": 0}  # case -> n_feat of fastl2lir's test
KEYS = ("x_tr", "x_te", "y_2d", "w_2d", "b_2d", "yp_2d")


def main(folder: str) -> None:
    out = {}
    for case in CASES:
        with np.load(Path(folder) / f"testdata_{case}.npz") as data:
            out.update({f"{case}_{key}": data[key] for key in KEYS})
    np.savez_compressed(Path(__file__).with_name("fastl2lir_golden.npz"), **out)


if __name__ == "__main__":
    main(sys.argv[1])
