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
    import shutil

    from tqdm.auto import tqdm

    # a terminal that reports no size (0 x 0, e.g. a bare pseudo-terminal) would make tqdm
    # draw an empty bar and hide it as "below the screen": fall back to 100 x 20
    size = shutil.get_terminal_size((100, 20))
    return tqdm(iterable, disable=not progress_enabled(), file=sys.stderr,
                ncols=size.columns or 100, nrows=size.lines or 20, mininterval=0.5, **kw)
