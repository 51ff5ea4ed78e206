"""Group level: reads participant outputs only (filled in by the group-level issue)."""

from __future__ import annotations

from .config import RunConfig
from .errors import UsageError


def run_group(config: RunConfig) -> int:
    raise UsageError("The group level is not implemented yet in this version.")
