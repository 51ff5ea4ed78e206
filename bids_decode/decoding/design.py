"""The training design of a fit: what every unit batch shares, and the checks of X and Y.

:func:`prepare_design` builds the :class:`Design` once per fit (X with a bias column, the
Gram matrix ``X'X + alpha I`` on first use, the centred unit-norm voxels used for
correlations, and the backend the batches run on); :func:`check_y` checks each batch's
targets against it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from bids_decode.backends import Backend, resolve_backend
from bids_decode.errors import DataError, UsageError
from bids_decode.utils.docs import fill_doc

LOGGER = logging.getLogger(__name__)

#: Variance below which a voxel counts as constant (fastl2lir's threshold).
CONSTANT_VAR = 1e-8

#: The error for targets with NaN or infinite values (found on the host or on the device).
NONFINITE_Y = "Y contains NaN or infinite values; remove those units or samples."


@dataclass(frozen=True, eq=False)
class Design:
    """Training design shared by every unit batch of one fit (hashable by identity, so a
    backend can keep its device state per design).

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_voxels + 1)
        Training data with a bias column appended, in ``dtype``.
    gram : ndarray of shape (n_voxels + 1, n_voxels + 1)
        ``X' X + alpha * I`` in ``dtype``.
    xz : ndarray of shape (n_samples, n_voxels), float64
        Training data centred and scaled to unit norm per voxel (for correlations);
        constant voxels are all zero, so they are never selected first.
    alpha : float
    mean : ndarray of shape (n_voxels,), float64
        Voxel means.
    norm : ndarray of shape (n_voxels,), float64
        Norms of the centred voxels (0 for constant voxels).
    backend : Backend
        Where the batches are solved (:func:`~bids_decode.backends.resolve_backend`).
    """

    X: np.ndarray
    xz: np.ndarray
    alpha: float
    mean: np.ndarray
    norm: np.ndarray
    backend: Backend = field(default_factory=lambda: resolve_backend("cpu"))
    #: host arrays derived on first use (the Gram matrices, their factor, float64 X)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def device(self) -> str:
        """The backend's ``--device`` string."""
        return self.backend.name

    @property
    def gram(self) -> np.ndarray:
        """``X' X + alpha I`` in ``dtype``, computed on first use (the all-voxel dual path
        never needs it)."""
        if "gram" not in self._cache:
            g = self.X.T @ self.X
            g[np.diag_indices_from(g)] += self.alpha
            self._cache["gram"] = g
        return self._cache["gram"]

    @property
    def dtype(self) -> np.dtype:
        return self.X.dtype

    @property
    def n_voxels(self) -> int:
        return self.X.shape[1] - 1

    def gram_as(self, dtype) -> np.ndarray:
        """The Gram matrix in another dtype (float64 is recomputed, not upcast)."""
        dtype = np.dtype(dtype)
        if dtype == self.X.dtype:
            return self.gram
        key = ("gram", dtype)
        if key not in self._cache:
            Xb = self.X.astype(dtype) if dtype != np.float64 else with_bias(self._x64())
            g = Xb.T @ Xb
            g[np.diag_indices_from(g)] += self.alpha
            self._cache[key] = g
        return self._cache[key]

    def gram_factor(self):
        """Cholesky factor of ``G`` (primal, ``scipy.linalg.cho_factor``, lower), cached."""
        if "chol" not in self._cache:
            import scipy.linalg

            self._cache["chol"] = scipy.linalg.cho_factor(self.gram, lower=True)
        return self._cache["chol"]

    def _x64(self) -> np.ndarray:
        return self._cache.get("x64", self.X[:, :-1])


def with_bias(X: np.ndarray) -> np.ndarray:
    """``X`` of shape (n, p) with a column of ones appended: shape (n, p + 1)."""
    return np.hstack([X, np.ones((X.shape[0], 1), dtype=X.dtype)])


@fill_doc
def prepare_design(X, alpha, *, dtype=np.float64, device="cpu") -> Design:
    """Precompute what every unit batch of a fit shares.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_voxels)
        Training data.
    alpha : float
        Ridge penalty (on the weights and the bias).
    dtype : numpy dtype, default float64
        Precision of the Gram matrix and the solves (float32 or float64).
    %(device)s

    Returns
    -------
    Design
    """
    backend = resolve_backend(device)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise UsageError(f"dtype must be float32 or float64; got {dtype}.")
    X64 = np.asarray(X, dtype=np.float64)
    if X64.ndim != 2:
        raise UsageError(f"X must be 2-D (n_samples, n_voxels); got shape {X64.shape}.")
    if not np.isfinite(X64).all():
        raise DataError("X contains NaN or infinite values; clean or mask them before decoding.")
    Xb = with_bias(X64.astype(dtype))
    mean = X64.mean(axis=0)
    xc = X64 - mean
    norm = np.sqrt((xc**2).sum(axis=0))
    const = norm <= np.sqrt(CONSTANT_VAR * X64.shape[0])
    norm[const] = 0.0
    xz = np.divide(xc, norm, out=np.zeros_like(xc), where=~const)
    design = Design(X=Xb, xz=xz, alpha=float(alpha), mean=mean, norm=norm,
                    backend=backend)
    if dtype != np.float64:
        design._cache["x64"] = X64
    return design


def check_y(design: Design, Y) -> np.ndarray:
    """Y as a 2-D array of shape (n_samples, n_units); finiteness is checked here on the CPU,
    on the device otherwise."""
    Y = np.asarray(Y)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != design.X.shape[0]:
        raise UsageError(
            f"Y must have shape (n_samples={design.X.shape[0]}, n_units); got {Y.shape}.")
    if design.backend.host_finite_check and not np.isfinite(Y).all():
        raise DataError(NONFINITE_Y)
    return Y
