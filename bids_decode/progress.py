"""Progress bars on a terminal, silence in logs and CI."""

from __future__ import annotations

import os
import sys


def progress_enabled() -> bool:
    """True when stderr is a terminal and BIDS_DECODE_PROGRESS is not 0."""
    env = os.environ.get("BIDS_DECODE_PROGRESS")
    if env is not None:
        return env not in ("0", "", "false", "no")
    return sys.stderr.isatty()


def progress_bar(iterable=None, **kw):
    """A tqdm bar with an ETA on a terminal; a no-op wrapper otherwise."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not progress_enabled(), file=sys.stderr, dynamic_ncols=True,
                **kw)
