"""git-annex content: which of the run's files are annexed without their content.

OpenNeuro's datasets reach most users as DataLad (git-annex) clones: ``datalad install`` or
``git clone https://github.com/OpenNeuroDatasets/ds001246`` gives the events, sidecars and
``dataset_description.json`` as real files, and every NIfTI as a git-annex file whose content
is fetched later (``datalad get``). Such a file is either

- a symbolic link into ``.git/annex/objects/`` whose target is absent (the default, "locked"),
- or, in an unlocked or adjusted clone, a small *pointer file* holding ``/annex/objects/KEY``.

The key names the content, and most keys carry its size: ``MD5E-s49910870--be70...nii.gz`` is
49,910,870 bytes (git-annex's ``-s<bytes>`` field). The check (:func:`absent_files`, run by
``cli._check_inputs``) comes before the validator and before any image is opened, so a clone
without content stops at once (exit 66) with the count, the size and the ``datalad get``
command (:func:`missing_content_error`), instead of an error about unreadable
NIfTI headers.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from bids_decode.errors import MissingInputError

LOGGER = logging.getLogger(__name__)

#: Where git-annex keeps content; the marker of annex links and pointer files.
ANNEX_OBJECTS = "annex/objects/"
#: A pointer file is one line; larger files are content.
POINTER_MAX_BYTES = 1024
#: Files named inline in the ``datalad get`` command of the message (more: read from the list).
INLINE_PATHS = 5


@dataclass(frozen=True)
class AbsentFile:
    """A file the run reads whose content is not there.

    Attributes
    ----------
    path : Path
    key : str or None
        The git-annex key (None: a broken link that is not git-annex's).
    """

    path: Path
    key: str | None

    @property
    def size(self) -> int | None:
        """Bytes of the content, from the key's ``-s<bytes>`` field (None: not in the key)."""
        return key_size(self.key) if self.key else None


def key_size(key: str) -> int | None:
    """The size field of a git-annex key (``BACKEND-s<bytes>[-m<mtime>]...--NAME``).

    >>> key_size("MD5E-s49910870--be70fd14350f28c0d9cb5c15ff9dc36a.nii.gz")
    49910870
    """
    fields = key.split("--", 1)[0].split("-")[1:]
    for f in fields:
        if f[:1] == "s" and f[1:].isdigit():
            return int(f[1:])
    return None


def absent(path: Path) -> AbsentFile | None:
    """Whether ``path`` lacks its content: an annex link with no target, an unlocked annex
    pointer file, or another broken link (None: the content is there, or nothing is)."""
    if path.is_symlink():
        if path.exists():
            return None
        target = os.readlink(path)
        return AbsentFile(path, Path(target).name if ANNEX_OBJECTS in target else None)
    try:
        if not path.is_file() or path.stat().st_size > POINTER_MAX_BYTES:
            return None
        head = path.read_bytes()
    except OSError:
        return None
    text = head.decode("utf-8", "replace").strip()
    if text.startswith("/" + ANNEX_OBJECTS) and "\n" not in text:
        return AbsentFile(path, text.rsplit("/", 1)[-1])
    return None


def listed(path: Path) -> bool:
    """Whether the dataset has the file, with or without its content (annex links count)."""
    return path.is_file() or (path.is_symlink() and not path.is_dir())


def matching(folder: Path, pattern: str) -> list[Path]:
    """The entries of ``folder`` whose names match the glob ``pattern``, annex links
    included, sorted.

    ``Path.glob`` drops links without a target when the pattern has no wildcard (Python up to
    3.11), so a DataLad clone's files would vanish from some searches and not others.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(folder / n for n in fnmatch.filter(names, pattern))


def human_size(n: int) -> str:
    """Bytes in decimal units, 3 significant digits (``49910870`` -> ``'49.9 MB'``)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def shown(path: Path, bids_dir: Path) -> str:
    """A path as the listings give it: relative to BIDS_DIR when inside it, else absolute."""
    path = Path(os.path.abspath(path))
    for base in (os.path.abspath(bids_dir), os.path.realpath(bids_dir)):
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            pass
    return str(path)


def absent_files(paths) -> list[AbsentFile]:
    """The files of ``paths`` whose content is absent (:func:`absent`), in order."""
    return [a for a in map(absent, paths) if a is not None]


def missing_content_error(missing: list[AbsentFile], n_files: int, bids_dir: Path,
                          listing: Path, what: str) -> MissingInputError:
    """The one-paragraph error of a run whose files lack content (exit 66).

    Parameters
    ----------
    missing : list of AbsentFile
        From :func:`absent_files` over the files the run reads.
    n_files : int
        How many files the run reads.
    bids_dir : Path
    listing : Path
        The file listing all of ``missing`` (``OUTPUT_DIR/logs/...``), written by the caller.
    what : str
        The run (e.g. ``sub-01``).

    Returns
    -------
    MissingInputError
        How many files lack content, their total size (from the annex keys), the
        ``datalad get`` command and the list's path.
    """
    rel = [shown(a.path, bids_dir) for a in missing]
    sizes = [a.size for a in missing]
    known = sum(s for s in sizes if s is not None)
    unknown = sum(s is None for s in sizes)
    size_txt = human_size(known) + (f" plus {unknown} of unknown size" if unknown else "")
    annexed = sum(a.key is not None for a in missing)
    kinds = ("git-annex files whose content is not fetched (a DataLad or git clone of an "
             "OpenNeuro dataset)" if annexed == len(missing) else
             f"{annexed} git-annex files whose content is not fetched and "
             f"{len(missing) - annexed} links to missing files")
    args = " ".join(map(shlex.quote, rel)) if len(rel) <= INLINE_PATHS else \
        f"$(cat {shlex.quote(os.path.abspath(listing))})"
    return MissingInputError(
        f"{len(missing)} of the {n_files} files this run reads ({what}) have no content "
        f"in {bids_dir}: they are {kinds}; {size_txt} in all (e.g. {rel[0]}). Fetch them with "
        f"'cd {shlex.quote(os.path.abspath(bids_dir))} && datalad get {args}' (the list of "
        f"all {len(missing)} is in {listing}; 'bids_decode ... --list-inputs' prints every "
        "file the run reads), then rerun."
    )
