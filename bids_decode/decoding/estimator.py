"""The sklearn estimator of the voxel-selecting ridge decoder: a thin wrapper of the solvers.

``__init__`` only stores parameters; :meth:`VoxelSelectionRidge.fit` checks the inputs, builds
the design (:func:`bids_decode.decoding.design.prepare_design`) and fits every target on the same
streaming tasks as the participant level (:func:`bids_decode.decoding.streaming.fit_units`).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_array, check_is_fitted

from bids_decode.decoding.design import prepare_design
from bids_decode.decoding.solvers import predict_sparse
from bids_decode.decoding.streaming import fit_units
from bids_decode.errors import UsageError
from bids_decode.utils.docs import fill_doc


def _validate_data(estimator, X, *, reset: bool):
    """X checked as sklearn does (2-D, finite, numeric, dense), float32 or float64; the
    number of features is recorded (``reset``) or checked against the fit."""
    try:  # scikit-learn >= 1.6
        from sklearn.utils.validation import validate_data
    except ImportError:  # pragma: no cover - older scikit-learn
        return estimator._validate_data(X, reset=reset, dtype=(np.float64, np.float32))
    return validate_data(estimator, X, reset=reset, dtype=(np.float64, np.float32))


@fill_doc
class VoxelSelectionRidge(RegressorMixin, BaseEstimator):
    """Ridge regression on the voxels most correlated with each target.

    Targets may have any shape after the sample axis, ``(n_samples, *unit_shape)`` (a layer's
    units as ``(channels, height, width)``, as fastl2lir accepts them); predictions have the
    shape ``(n_test, *unit_shape)``. Each target is fitted on its own.

    Parameters
    ----------
    alpha : float, default 100.0
        L2 penalty (applied to the weights and the bias, as in fastl2lir).
    n_voxels : int, default 500
        Voxels selected per target by absolute Pearson correlation; 0 = all voxels.
    dtype : {"float32", "float64"}, default "float32"
        Precision of the Gram matrix and the solves, and of the predictions; the same
        default as the participant level (``--dtype``). float32 selects the float64
        ranking's voxels and redoes ill-conditioned units in float64; its predictions agree
        with float64 to about 1e-6 relative. Use float64 to reproduce a float64 reference
        to ~1e-12.
    %(device)s
    %(n_jobs)s
    %(batch_size)s

    Attributes
    ----------
    coef_ : ndarray of shape (n_targets, k)
        Weights of the selected voxels; ``n_targets = prod(unit_shape_)``, the targets in C
        order (``coef_.reshape(*unit_shape_, k)`` puts them in the target shape), and
        ``k = n_voxels`` (or every voxel).
    voxel_index_ : ndarray of shape (n_targets, k) or None
        Selected voxels per target, ascending; None when every voxel is used. The dense
        weights of target ``t`` are ``w = zeros(n_features_in_); w[voxel_index_[t]] =
        coef_[t]`` (fastl2lir's ``W[:, t]``).
    intercept_ : ndarray of shape (n_targets,)
        Bias per target (fastl2lir's ``b``, flattened).
    unit_shape_ : tuple of int
        The target shape after the sample axis: ``()`` for a 1-D ``y``.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.standard_normal((40, 30)), rng.standard_normal((40, 3, 2))
    >>> VoxelSelectionRidge(alpha=1.0, n_voxels=5).fit(X, Y).predict(X).shape
    (40, 3, 2)
    """

    def __init__(self, alpha=100.0, n_voxels=500, dtype="float32", device="cpu", n_jobs=None,
                 batch_size=None):
        self.alpha = alpha
        self.n_voxels = n_voxels
        self.dtype = dtype
        self.device = device
        self.n_jobs = n_jobs
        self.batch_size = batch_size

    def fit(self, X, y):
        """Fit one selected-voxel ridge per target.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_voxels)
        y : array-like of shape (n_samples,) or (n_samples, *unit_shape)

        Returns
        -------
        self
        """
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             "y is None.")
        if not self.alpha >= 0:
            raise UsageError(f"alpha must be >= 0; got {self.alpha}.")
        if int(self.n_voxels) < 0:
            raise UsageError(f"n_voxels must be >= 0; got {self.n_voxels}.")
        X = _validate_data(self, X, reset=True)
        y = check_array(y, ensure_2d=False, allow_nd=True, dtype=(np.float64, np.float32),
                        input_name="y")
        if y.shape[0] != X.shape[0]:
            raise UsageError(f"y must have shape (n_samples={X.shape[0]}, *unit_shape); got "
                             f"{y.shape}.")
        self.unit_shape_ = tuple(y.shape[1:])
        design = prepare_design(X, self.alpha, dtype=np.dtype(self.dtype), device=self.device)
        self.coef_, self.voxel_index_, self.intercept_ = fit_units(
            design, y.reshape(y.shape[0], -1), int(self.n_voxels), n_jobs=self.n_jobs,
            batch_size=self.batch_size)
        return self

    def predict(self, X):
        """Predict every target.

        Parameters
        ----------
        X : array-like of shape (n_test, n_voxels)

        Returns
        -------
        ndarray of shape (n_test, *unit_shape_)
            In ``dtype``.
        """
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False)
        pred = predict_sparse(X, self.coef_, self.voxel_index_, self.intercept_)
        return pred.reshape((X.shape[0], *self.unit_shape_))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
