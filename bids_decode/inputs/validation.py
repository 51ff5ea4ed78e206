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


def validate_bids(bids_dir: Path) -> None:
    """Raise :class:`ValidationError` if the validator finds errors in ``bids_dir``."""
    exe = find_validator()
    if exe is None:
        LOGGER.warning("bids-validator-deno, a dependency of bids_decode, is not installed: "
                       "the input dataset is not validated (reinstall bids_decode, or 'pip "
                       "install bids-validator-deno').")
        return
    LOGGER.info("validating %s with the BIDS validator", bids_dir)
    errors = [i for i in validator_issues(bids_dir, exe) if i.get("severity") == "error"]
    if errors:
        lines = "; ".join(f"{e.get('code')} at {e.get('location', '?')}" for e in errors[:5])
        raise ValidationError(
            f"The BIDS validator found {len(errors)} error(s) in {bids_dir}: {lines}"
            f"{' ...' if len(errors) > 5 else ''}. Fix the dataset (run 'bids-validator-deno "
            f"{bids_dir}' for details), or pass --skip-bids-validation to run anyway."
        )
