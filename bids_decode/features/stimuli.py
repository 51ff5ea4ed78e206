"""The stimulus images: finding them in a folder, naming them, hashing them.

A stimulus is named by its path relative to the stimulus folder without extension
(:func:`discover_images`), or by a name from an events file or a one-column table
(:func:`read_names`) matched to an image file (:func:`find_images`). The names are the
``/stimulus_name`` of the features file, which the participant level matches to the events'.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

from bids_decode.errors import DataError, MissingInputError

LOGGER = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm")
"""File extensions taken as images (compared case-insensitively)."""

NAME_COLUMNS = ("stim_file", "stimulus_name", "stim_id", "stimulus", "image_file", "image")
"""Columns of a ``--names-from`` table that name images, in order of preference."""


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _strip_image_suffix(name: str) -> str:
    path = Path(name)
    return str(path.with_suffix("")) if path.suffix.lower() in IMAGE_EXTENSIONS else name


def _stimulus_folder(stimuli_dir, hint: str) -> Path:
    """``stimuli_dir`` as a Path, or a MissingInputError (``hint`` says which folder)."""
    stimuli_dir = Path(stimuli_dir)
    if not stimuli_dir.is_dir():
        raise MissingInputError(
            f"Stimulus folder {stimuli_dir} does not exist or is not a folder. Pass the "
            f"folder holding the stimulus images ({hint})."
        )
    return stimuli_dir


def _images_under(folder: Path) -> list[Path]:
    """Every image file below ``folder`` (recursively), sorted."""
    return sorted(p for p in folder.rglob("*") if _is_image(p))


def discover_images(stimuli_dir: Path) -> tuple[list[Path], list[str]]:
    """Every image under ``stimuli_dir`` (recursively), sorted, with its name.

    Returns
    -------
    paths : list of Path
    names : list of str
        The path relative to ``stimuli_dir`` without its extension, POSIX style
        (the file's stem when the folder is flat).
    """
    stimuli_dir = _stimulus_folder(stimuli_dir, "for ds001246: the 1,250 ImageNet images")
    paths = _images_under(stimuli_dir)
    if not paths:
        raise MissingInputError(
            f"No images in {stimuli_dir}: expected files ending in "
            f"{' '.join(IMAGE_EXTENSIONS)} (any case). Put the stimulus images there."
        )
    names = [p.relative_to(stimuli_dir).with_suffix("").as_posix() for p in paths]
    return paths, names


def find_images(stimuli_dir: Path, names: list[str]) -> list[Path]:
    """The image file of each stimulus name.

    A name matches, in this order: the file ``stimuli_dir / name`` itself; a file named
    ``name`` plus any image extension (``name`` may carry an extension and directories,
    as BIDS ``stim_file`` values relative to ``stimuli/`` do); the one image anywhere under
    ``stimuli_dir`` whose file name without extension equals that of ``name``.

    Parameters
    ----------
    stimuli_dir : Path
    names : list of str

    Returns
    -------
    list of Path
        One per name, in the order of ``names``.

    Raises
    ------
    MissingInputError
        The folder or some images are missing (a few missing names are listed).
    DataError
        A name matches several images by file name only.
    """
    stimuli_dir = _stimulus_folder(stimuli_dir,
                                   "default for the participant level: BIDS_DIR/stimuli")
    images = _images_under(stimuli_dir)
    by_relative: dict[str, list[Path]] = {}
    by_stem: dict[str, list[Path]] = {}
    for path in images:
        relative = path.relative_to(stimuli_dir).with_suffix("").as_posix()
        by_relative.setdefault(relative, []).append(path)
        by_stem.setdefault(path.stem, []).append(path)

    found: list[Path] = []
    missing: list[str] = []
    for name in names:
        exact = stimuli_dir / name
        key = _strip_image_suffix(Path(name).as_posix())
        stem = Path(key).name
        if _is_image(exact):
            found.append(exact)
        elif len(by_relative.get(key, [])) == 1:
            found.append(by_relative[key][0])
        elif len(by_stem.get(stem, [])) == 1:
            found.append(by_stem[stem][0])
        elif len(by_relative.get(key, by_stem.get(stem, []))) > 1:
            candidates = by_relative.get(key) or by_stem[stem]
            raise DataError(
                f"Stimulus name {name!r} matches {len(candidates)} images in {stimuli_dir} "
                f"({', '.join(str(p.relative_to(stimuli_dir)) for p in sorted(candidates)[:4])}). "
                "Keep one image per name, or name images by their path relative to the folder."
            )
        else:
            missing.append(name)
    if missing:
        shown = ", ".join(repr(n) for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise MissingInputError(
            f"{len(missing)} of {len(names)} stimulus images are missing from {stimuli_dir}: "
            f"{shown}{more}. Expected an image of each name with one of the extensions "
            f"{' '.join(IMAGE_EXTENSIONS)} (any case); copy the images there (for ds001246 "
            "the ImageNet images are not in the dataset) or pass the right folder."
        )
    return found


def read_names(table: Path) -> list[str]:
    """Stimulus names of an events file or a one-column TSV, unique, in first-seen order.

    The column is the first of :data:`NAME_COLUMNS` present, or the only column of a
    one-column table (its first line is a header). Empty and ``n/a`` cells are skipped.
    """
    table = Path(table)
    if not table.is_file():
        raise MissingInputError(
            f"Names table {table} does not exist. Pass an events.tsv or a one-column TSV "
            "of image names with --names-from, or leave it out to use every image."
        )
    with open(table, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    header = rows[0] if rows else []
    columns = [c for c in NAME_COLUMNS if c in header]
    if columns:
        index = header.index(columns[0])
    elif len(header) == 1:
        index = 0
    else:
        raise DataError(
            f"Names table {table} has columns {header}, expected one of "
            f"{', '.join(NAME_COLUMNS)} or a single column. Rename the column that names "
            "the images."
        )
    names: dict[str, None] = {}
    for row in rows[1:]:
        value = row[index].strip() if index < len(row) else ""
        if value and value.lower() != "n/a":
            names.setdefault(value, None)
    if not names:
        raise DataError(
            f"Names table {table} names no images in column {header[index]!r} (only empty "
            "or n/a cells). Pass a table whose column holds the stimulus names."
        )
    return list(names)


def images_sha256(paths: Sequence[Path], names: Sequence[str]) -> str:
    """SHA-256 over each name and its image file's bytes, in order (reuse check)."""
    digest = hashlib.sha256()
    for name, path in zip(names, paths, strict=True):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()
