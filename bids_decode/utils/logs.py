"""Logging helpers shared by the stages."""

from __future__ import annotations

import logging

LOGGER = logging.getLogger(__name__)


class WarningCollector(logging.Handler):
    """Keeps the warnings logged while it is attached (the participant level's report lists
    them): add it to a logger with ``logger.addHandler``, read :attr:`messages`."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())
