"""Voxel-selecting L2-regularised linear regression (the decoder of Horikawa & Kamitani).

For each target unit, the ``n_voxels`` voxels whose training correlation with the unit is
highest in absolute value are selected, a bias column is appended, and ridge regression
``(Xs' Xs + alpha I) w = Xs' y`` is solved on them (the bias is penalised too, as in
fastl2lir). The pure functions below do the work; :class:`VoxelSelectionRidge` is a thin
sklearn-style wrapper.

Reference implementation (simple, correct); the fast batched solver replaces its inside
behind the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from .errors import UsageError


@dataclass(frozen=True)
class Design:
    """Training design shared by every unit batch of one fit.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_voxels + 1)
        Training data with a bias column appended.
    gram : ndarray of shape (n_voxels + 1, n_voxels + 1)
        ``X' X + alpha * I``.
    xz : ndarray of shape (n_samples, n_voxels)
        Training data centred and scaled to unit norm per voxel (for correlations);
        constant voxels are all zero, so they are never selected first.
    alpha : float
    """

    X: np.ndarray
    gram: np.ndarray
    xz: np.ndarray
    alpha: float


def prepare_design(X, alpha, *, dtype=np.float64) -> Design:
    """Precompute what every unit batch of a fit shares.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_voxels)
    alpha : float
    dtype : numpy dtype

    Returns
    -------
    Design
    """
    X = np.asarray(X, dtype=dtype)
    Xb = np.hstack([X, np.ones((X.shape[0], 1), dtype=dtype)])
    gram = Xb.T @ Xb
    gram[np.diag_indices_from(gram)] += alpha
    xc = X - X.mean(axis=0)
    norm = np.sqrt((xc**2).sum(axis=0))
    xz = np.divide(xc, norm, out=np.zeros_like(xc), where=norm > np.sqrt(1e-8 * X.shape[0]))
    return Design(X=Xb, gram=gram, xz=xz, alpha=float(alpha))


def select_voxels(design: Design, Y, n_voxels: int) -> np.ndarray:
    """Indices of the voxels most correlated (in absolute value) with each unit.

    Parameters
    ----------
    design : Design
    Y : ndarray of shape (n_samples, n_units)
    n_voxels : int

    Returns
    -------
    ndarray of shape (n_units, n_voxels), int64
        Sorted by decreasing absolute correlation.
    """
    Y = np.asarray(Y, dtype=design.X.dtype)
    yc = Y - Y.mean(axis=0)
    corr = np.abs(design.xz.T @ yc)  # (n_vox, n_units); scale per unit is irrelevant
    order = np.argsort(-corr, axis=0, kind="stable")[:n_voxels]
    return np.ascontiguousarray(order.T)


def fit_chunk(design: Design, Y, n_voxels: int):
    """Fit the selected-voxel ridge for a batch of units.

    Parameters
    ----------
    design : Design
    Y : ndarray of shape (n_samples, n_units)
    n_voxels : int
        Voxels per unit; 0 or >= the number of voxels means all voxels.

    Returns
    -------
    coef : ndarray of shape (n_units, k)
        Weights of the selected voxels (k = n_voxels, or all voxels).
    index : ndarray of shape (n_units, k) or None
        Selected voxel indices; None when every voxel is used.
    intercept : ndarray of shape (n_units,)
    """
    Y = np.asarray(Y, dtype=design.X.dtype)
    n_vox = design.X.shape[1] - 1
    rhs = design.X.T @ Y  # (n_vox + 1, n_units)
    if n_voxels == 0 or n_voxels >= n_vox:
        sol = np.linalg.solve(design.gram, rhs)
        return np.ascontiguousarray(sol[:-1].T), None, sol[-1].copy()
    index = select_voxels(design, Y, n_voxels)
    n_units = Y.shape[1]
    coef = np.empty((n_units, n_voxels), dtype=design.X.dtype)
    intercept = np.empty(n_units, dtype=design.X.dtype)
    for u in range(n_units):
        sel = np.append(index[u], n_vox)
        sub = design.gram[np.ix_(sel, sel)]
        w = np.linalg.solve(sub, rhs[sel, u])
        coef[u] = w[:-1]
        intercept[u] = w[-1]
    return coef, index, intercept


def predict_sparse(X, coef, index, intercept) -> np.ndarray:
    """Predict from sparse (selected-voxel) weights.

    Parameters
    ----------
    X : ndarray of shape (n_test, n_voxels)
    coef : ndarray of shape (n_units, k)
    index : ndarray of shape (n_units, k) or None
    intercept : ndarray of shape (n_units,)

    Returns
    -------
    ndarray of shape (n_test, n_units)
    """
    X = np.asarray(X, dtype=coef.dtype)
    if index is None:
        return X @ coef.T + intercept
    # (n_test, n_units, k) gathered in unit blocks to bound memory
    out = np.empty((X.shape[0], coef.shape[0]), dtype=coef.dtype)
    step = max(1, 2**22 // max(1, X.shape[0] * coef.shape[1]))
    for s in range(0, coef.shape[0], step):
        e = min(s + step, coef.shape[0])
        out[:, s:e] = np.einsum("tuk,uk->tu", X[:, index[s:e]], coef[s:e]) + intercept[s:e]
    return out


def predict_chunk(design: Design, Y, X_test, n_voxels: int) -> np.ndarray:
    """Fit a batch of units and predict the test samples.

    Parameters
    ----------
    design : Design
    Y : ndarray of shape (n_samples, n_units)
    X_test : ndarray of shape (n_test, n_voxels)
    n_voxels : int

    Returns
    -------
    ndarray of shape (n_test, n_units)
    """
    coef, index, intercept = fit_chunk(design, Y, n_voxels)
    return predict_sparse(X_test, coef, index, intercept)


class VoxelSelectionRidge(RegressorMixin, BaseEstimator):
    """Ridge regression on the voxels most correlated with each target.

    Parameters
    ----------
    alpha : float, default 100.0
        L2 penalty (applied to the weights and the bias, as in fastl2lir).
    n_voxels : int, default 500
        Voxels selected per target by absolute Pearson correlation; 0 = all voxels.
    dtype : {"float32", "float64"}, default "float64"

    Attributes
    ----------
    coef_ : ndarray of shape (n_targets, k)
    voxel_index_ : ndarray of shape (n_targets, k) or None
    intercept_ : ndarray of shape (n_targets,)
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.standard_normal((40, 30)), rng.standard_normal((40, 3))
    >>> VoxelSelectionRidge(alpha=1.0, n_voxels=5).fit(X, Y).predict(X).shape
    (40, 3)
    """

    def __init__(self, alpha=100.0, n_voxels=500, dtype="float64"):
        self.alpha = alpha
        self.n_voxels = n_voxels
        self.dtype = dtype

    def _check(self, X, Y=None):
        X = np.asarray(X)
        if X.ndim != 2:
            raise UsageError(f"X must be 2-D (n_samples, n_voxels); got shape {X.shape}.")
        if Y is not None:
            Y = np.asarray(Y)
            if Y.ndim == 1:
                Y = Y[:, None]
            if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
                raise UsageError(
                    f"Y must have shape (n_samples={X.shape[0]}, n_targets); got {Y.shape}."
                )
        if self.alpha < 0:
            raise UsageError(f"alpha must be >= 0; got {self.alpha}.")
        if int(self.n_voxels) < 0:
            raise UsageError(f"n_voxels must be >= 0; got {self.n_voxels}.")
        return X, Y

    def fit(self, X, Y):
        X, Y = self._check(X, Y)
        design = prepare_design(X, self.alpha, dtype=np.dtype(self.dtype))
        self.coef_, self.voxel_index_, self.intercept_ = fit_chunk(design, Y, int(self.n_voxels))
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        X, _ = self._check(X)
        if X.shape[1] != self.n_features_in_:
            raise UsageError(
                f"X has {X.shape[1]} voxels; the decoder was fitted on {self.n_features_in_}."
            )
        return predict_sparse(X, self.coef_, self.voxel_index_, self.intercept_)
