"""numba, optional, and the disk cache of the compiled CPU kernels.

numba is imported here once (:func:`have_numba`; without it the CPU backend falls back to
torch). Compiled kernels are cached in :func:`numba_cache_dir`, which the LAPACK calibration
(:mod:`bids_decode.backends.lapack`) shares.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import tempfile
from pathlib import Path

try:  # numba is optional: the torch path is the fallback
    import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

LOGGER = logging.getLogger(__name__)

#: environment variable naming the folder of compiled kernels (default: the user's cache)
CACHE_ENV = "BIDS_DECODE_CACHE_DIR"


def have_numba() -> bool:
    """Whether the compiled CPU kernel is available."""
    return numba is not None


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


@functools.cache
def numba_cache_dir() -> str | None:
    """Where compiled kernels are cached on disk, or None where no folder can be written.

    ``NUMBA_CACHE_DIR`` if set (numba's own variable); else ``$BIDS_DECODE_CACHE_DIR``, or
    ``$XDG_CACHE_HOME/bids_decode`` (``~/.cache/bids_decode``). A cache that exists but cannot
    be written (a read-only container image that ships its kernels compiled) is copied once
    per user and content to the temporary folder and used from there (:func:`_private_copy`).
    numba keys each cached kernel by the source file, the signature and the CPU name and
    features it was compiled for, and the kernels take the LAPACK and BLAS routines' addresses
    as arguments, so a cache never serves the wrong CPU or LAPACK.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "bids_decode")
    path = Path(base) / f"numba-{numba.__version__}"
    if not _writable(path):
        if not path.is_dir():
            LOGGER.info("no writable folder for compiled kernels (%s): compiling each run", path)
            return None
        path = _private_copy(path)
    numba.config.CACHE_DIR = str(path)
    return str(path)


def _private_copy(src: Path) -> Path:
    """A writable copy of the read-only kernel cache ``src``, made once per user and content.

    The copy lives in the temporary folder under a name keyed by the user and by the files of
    ``src`` (names, sizes, times), so later runs reuse it instead of leaving a copy each. It is
    used only if this user owns it and nobody else can write to it (compiled code is loaded
    from it); otherwise a fresh private copy is made.
    """
    import hashlib

    listing = sorted((str(f.relative_to(src)), f.stat().st_size, f.stat().st_mtime_ns)
                     for f in src.rglob("*") if f.is_file())
    key = hashlib.sha1(repr((str(src), listing)).encode()).hexdigest()[:16]
    copy = Path(tempfile.gettempdir()) / f"bids_decode-numba-{os.getuid()}-{key}"
    with contextlib.suppress(OSError):
        st = copy.lstat()
        if copy.is_dir() and not copy.is_symlink() and st.st_uid == os.getuid() \
                and not st.st_mode & 0o022:
            return copy
    fresh = Path(tempfile.mkdtemp(prefix="bids_decode-numba-"))  # mode 0700
    shutil.copytree(src, fresh, dirs_exist_ok=True)
    try:
        os.rename(fresh, copy)  # atomic; fails if another process made it first
    except OSError:
        return fresh
    return copy
