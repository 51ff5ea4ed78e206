"""BIDS file names: the entities of a name, and the JSON sidecars a file inherits.

One parser (:func:`entities_of`) and one resolver of the BIDS inheritance principle
(:func:`inherited_sidecars`), used for the BOLD sidecars (:func:`layout.inherited_metadata`:
``RepetitionTime``) and the events sidecars (:func:`events.sidecar_levels`: ``Levels``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from bids_decode.errors import DataError

LOGGER = logging.getLogger(__name__)

#: one ``key-value`` entity of a BIDS file name
ENTITY = re.compile(r"([a-zA-Z]+)-([a-zA-Z0-9]+)")
#: folders searched upwards for the dataset's top level when it is not given
MAX_LEVELS = 6


def entities_of(name: str) -> dict[str, str]:
    """BIDS entities of a file name, suffix and extension left out.

    ``sub-01_ses-x_task-y_run-01_bold.nii.gz`` -> ``{"sub": "01", "ses": "x", "task": "y",
    "run": "01"}``; a top-level ``task-y_bold.json`` -> ``{"task": "y"}``.
    """
    stem = name.split(".")[0]
    return dict(ENTITY.findall("_".join(stem.split("_")[:-1]) or stem))


def sidecar_folders(path: Path, root: Path | None = None) -> list[Path]:
    """The folders whose sidecars may apply to ``path``, from the dataset's top level down.

    Parameters
    ----------
    path : Path
        A data file (``*_bold.nii.gz``, ``*_events.tsv``).
    root : Path, optional
        The dataset's top folder. None: the nearest of the :data:`MAX_LEVELS` folders above
        ``path`` that holds ``dataset_description.json`` (else the highest of them).

    Returns
    -------
    list of Path
        ``root`` and each folder below it down to ``path``'s folder (``root`` and ``path``'s
        folder when ``path`` is not under ``root``).
    """
    if root is None:
        up = list(path.parents[:MAX_LEVELS])
        root = next((d for d in up if (d / "dataset_description.json").is_file()), up[-1])
    try:
        rel = path.parent.relative_to(root)
    except ValueError:
        return [root, path.parent]
    folders = [root]
    for part in rel.parts:
        folders.append(folders[-1] / part)
    return folders


def inherited_sidecars(path: Path, pattern: str, root: Path | None = None) -> list[Path]:
    """The sidecars of ``path`` by the BIDS inheritance principle, from the top level down.

    A sidecar applies when each of its entities has the same value in ``path``'s name
    (``task-x_bold.json`` applies to every run of task x); a later one overrides an earlier
    one.

    Parameters
    ----------
    path : Path
    pattern : str
        Glob of the sidecars' names (``*_bold.json``, ``*_events.json``).
    root : Path, optional
        The dataset's top folder (see :func:`sidecar_folders`).
    """
    ents = entities_of(path.name)
    return [js for d in sidecar_folders(path, root) for js in sorted(d.glob(pattern))
            if all(ents.get(k) == v for k, v in entities_of(js.name).items())]


def read_sidecar(path: Path, what: str = "sidecar"):
    """The JSON content of a sidecar; DataError naming it (as ``what``) when it is not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"The {what} {path} is not valid JSON ({err}). Fix it.") from err
