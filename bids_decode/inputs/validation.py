"""Run the official BIDS validator (``bids-validator-deno``) on the input dataset."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from bids_decode.errors import ValidationError

LOGGER = logging.getLogger(__name__)

#: Locations kept per kind of finding in the run's provenance.
WARNING_LOCATIONS = 20


def find_validator() -> str | None:
    """Path of the ``bids-validator-deno`` executable (PATH or beside this Python)."""
    exe = shutil.which("bids-validator-deno")
    if exe:
        return exe
    cand = Path(sys.executable).with_name("bids-validator-deno")
    return str(cand) if cand.exists() else None


def validator_issues(path: Path, exe: str, *, timeout: float = 600) -> list[dict]:
    """All issues the validator reports for ``path`` (each a dict with severity, code...)."""
    proc = subprocess.run([exe, str(path), "--format", "json", "--ignoreWarnings"],
                          capture_output=True, text=True, timeout=timeout, check=False)
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        LOGGER.warning("The BIDS validator gave no JSON (exit %s): %s", proc.returncode,
                       proc.stderr.strip()[:500])
        return []
    return data.get("issues", {}).get("issues", [])


def _where(issue: dict) -> str:
    """An issue's file relative to the dataset ('' for dataset-wide findings)."""
    return str(issue.get("location") or "").lstrip("/")


def validate_bids(bids_dir: Path, inputs=None, *, strict: bool = False) -> dict:
    """Run the validator; stop for errors in the files the run reads.

    Parameters
    ----------
    bids_dir : Path
    inputs : iterable of str, optional
        The files the run reads, relative to ``bids_dir`` (:func:`input_list.run_inputs`).
        None: every error stops.
    strict : bool
        ``--strict-validation``: every error stops (fMRIPrep's rule).

    Returns
    -------
    dict
        The findings that did not stop the run (``warnings``: code, count and up to
        :data:`WARNING_LOCATIONS` locations of each kind), for the run's provenance; empty
        where the validator is missing.

    Raises
    ------
    ValidationError
        Errors in the run's files (any error with ``strict`` or without ``inputs``).
    """
    exe = find_validator()
    if exe is None:
        LOGGER.warning("bids-validator-deno, a dependency of bids_decode, is not installed: "
                       "the input dataset is not validated (reinstall bids_decode, or 'pip "
                       "install bids-validator-deno').")
        return {}
    LOGGER.info("validating %s with the BIDS validator", bids_dir)
    errors = [i for i in validator_issues(bids_dir, exe) if i.get("severity") == "error"]
    read = None if strict or inputs is None else set(inputs)
    stop = [e for e in errors if read is None or _where(e) in read]
    if stop:
        lines = "; ".join(f"{e.get('code')} at {e.get('location', '?')}" for e in stop[:5])
        which = "" if read is None else " in files this run reads"
        raise ValidationError(
            f"The BIDS validator found {len(stop)} error(s){which} in {bids_dir}: {lines}"
            f"{' ...' if len(stop) > 5 else ''}. Fix the dataset (run 'bids-validator-deno "
            f"{bids_dir}' for details), or pass --skip-bids-validation to run anyway."
        )
    found: dict[str, list[str]] = {}
    for e in errors:
        code = e.get("code", "?") + (f" ({e['subCode']})" if e.get("subCode") else "")
        found.setdefault(code, []).append(e.get("location") or "-")
    for code, where in found.items():
        LOGGER.warning("BIDS validator: %d x %s (e.g. %s), outside the files this run reads: a "
                       "warning (--strict-validation stops for it)", len(where), code,
                       ", ".join(where[:3]))
    return {"validator": Path(exe).name, "strict": strict,
            "warnings": [{"code": c, "count": len(w), "locations": w[:WARNING_LOCATIONS]}
                         for c, w in found.items()]}
