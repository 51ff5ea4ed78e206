"""Error classes with fix-it messages and the exit codes of the BIDS execution spec draft.

Every error the app raises on purpose is a :class:`BidsDecodeError`; the CLI prints its
message as one paragraph (no traceback) and exits with its ``exit_code``.

Exit codes
----------
0   success
1   unexpected failure (a bug: the traceback is written to the log)
16  the input dataset failed BIDS validation
64  usage error (bad command-line arguments)
65  bad input data (events, images, masks, features that cannot be used)
66  missing input (BIDS_DIR, participant, runs, features file, weights)
73  cannot create or write the output
"""

from __future__ import annotations

import contextlib

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_VALIDATION = 16
EXIT_USAGE = 64
EXIT_DATAERR = 65
EXIT_NOINPUT = 66
EXIT_CANTCREAT = 73


class BidsDecodeError(Exception):
    """Base class: an error the user can fix; ``str(err)`` says what, where and how."""

    exit_code = EXIT_FAILURE


class UsageError(BidsDecodeError, ValueError):
    """Bad command-line arguments or parameter values."""

    exit_code = EXIT_USAGE


class DataError(BidsDecodeError, ValueError):
    """Input data exist but cannot be used as they are."""

    exit_code = EXIT_DATAERR


class MissingInputError(BidsDecodeError, FileNotFoundError):
    """An input (dataset, participant, run, file) is not there."""

    exit_code = EXIT_NOINPUT


class OutputError(BidsDecodeError, OSError):
    """The output directory cannot be created or written."""

    exit_code = EXIT_CANTCREAT


class ValidationError(BidsDecodeError):
    """The BIDS validator reported errors in the input dataset."""

    exit_code = EXIT_VALIDATION


@contextlib.contextmanager
def reading_bold(path):
    """Turn whatever nibabel, gzip or zlib raise on a damaged BOLD run into a :class:`DataError`
    naming the file (a DataError raised inside passes through)."""
    try:
        yield
    except DataError:
        raise
    except Exception as err:  # nibabel/gzip/zlib raise many types for damaged files
        raise DataError(
            f"The BOLD run {path} cannot be read ({type(err).__name__}: {err}); it is "
            "truncated or corrupt. Download or copy it again."
        ) from err
