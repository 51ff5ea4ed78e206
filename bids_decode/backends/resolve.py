"""``--device`` to a backend object: one shared, validated object per device string."""

from __future__ import annotations

import functools
import logging
import re

from bids_decode.backends.base import Backend
from bids_decode.backends.cpu import CPUBackend
from bids_decode.backends.torch import TorchBackend
from bids_decode.errors import UsageError

LOGGER = logging.getLogger(__name__)

#: the accepted ``--device`` strings
DEVICE_PATTERN = re.compile(r"^(cpu|torch-cpu|cuda(:\d+)?)$")


def resolve_backend(device="cpu") -> Backend:
    """The backend of a ``--device`` value (a backend object passes through).

    Parameters
    ----------
    device : str or Backend
        ``"cpu"``, ``"torch-cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns
    -------
    Backend
        One object per device string and process, so its device state is shared.

    Raises
    ------
    UsageError
        For any other string.
    """
    if isinstance(device, Backend):
        return device
    return _resolve(str(device))


@functools.cache
def _resolve(device: str) -> Backend:
    if not DEVICE_PATTERN.match(device):
        raise UsageError(f"--device must be cpu, cuda or cuda:N; got {device!r}.")
    return CPUBackend() if device == "cpu" else TorchBackend(device)
