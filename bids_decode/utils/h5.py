"""Reading HDF5 files: a read-only handle that turns a missing or unreadable file into the
package's errors, closed by ``with`` (used by the features file and the BData reader)."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py

from bids_decode.errors import DataError, MissingInputError

LOGGER = logging.getLogger(__name__)


class H5Reader:
    """A read-only HDF5 file held as ``self._h5``, closed by :meth:`close` or a ``with``."""

    def _open(self, path, missing: str, unreadable: str) -> h5py.File:
        """Open ``path``: MissingInputError(``missing``) if it is not a file, DataError
        (``unreadable``, its ``{err}`` replaced by the error) if HDF5 cannot read it."""
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingInputError(missing)
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as err:
            raise DataError(unreadable.replace("{err}", str(err))) from err
        return self._h5

    def close(self):
        try:
            self._h5.close()
        except Exception:  # noqa: BLE001 - closing an already-broken handle
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
