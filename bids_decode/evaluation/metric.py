"""The metric interface: a score streamed over unit chunks, and what it gives for a layer.

A :class:`Metric` covers units ``lo:hi`` of a layer and is filled chunk by chunk, merged over
chunks and shards, kept in work files between jobs and finalized into a :class:`Result`; each
of its datasets is declared as an :class:`Output`. The scores themselves are in
:mod:`bids_decode.evaluation.metrics` and :mod:`bids_decode.evaluation.unit_statistics`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Output:
    """A dataset of each layer group of ``*_decoding.h5``.

    Attributes
    ----------
    description : str
    per : {"unit", "image"}
        Last axis: the layer's units (stored in the layer's unit shape) or the test images.
    """

    description: str
    per: str = "unit"


@dataclass
class Result:
    """What a metric gives for one layer.

    Attributes
    ----------
    datasets : dict name -> ndarray
        Unit datasets flat over units (last axis ``n_units``), image datasets ``(n_images,)``.
    columns : dict name -> float
        Summary columns of ``*_decoding.tsv``.
    attrs : dict name -> value
        Attributes of the layer group.
    """

    datasets: dict = field(default_factory=dict)
    columns: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)


class Metric:
    """A score streamed over unit chunks: ``update`` / ``merge`` / ``finalize``.

    A metric covers units ``lo:hi`` of a layer (a shard, or the whole layer). :meth:`update`
    adds a chunk of units; :meth:`merge` folds in another metric of the same kind whose units
    lie inside this one's (any order gives the same bits); :meth:`save` / :meth:`load` keep
    the state in a work file between the decoding jobs; :meth:`finalize` gives the layer's
    datasets, summary columns and attributes.

    Subclasses declare ``DATASETS`` (name -> :class:`Output`), ``COLUMNS`` (summary column
    -> description) and ``ATTRS`` (the summary columns also stored as layer attributes);
    :mod:`bids_decode.outputs.schema` builds the output schema from these declarations. A new score
    is one subclass (declarations, :meth:`build`, :meth:`update`, :meth:`merge`,
    :meth:`spawn`, :meth:`save`, ``_read``, :meth:`finalize`) listed in
    :data:`bids_decode.outputs.schema.METRICS`, whose order is the order of finalization.

    Parameters
    ----------
    lo, hi : int
        Units of the layer this metric covers.
    """

    DATASETS: dict[str, Output] = {}
    COLUMNS: dict[str, str] = {}
    ATTRS: tuple[str, ...] = ()

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = int(lo), int(hi)

    @classmethod
    def build(cls, lo: int, hi: int, *, n_images: int, config, halves: bool,
              **settings) -> Metric:
        """The participant level's instance for units ``lo:hi`` (see
        :func:`bids_decode.participant.layer_metrics`).

        Parameters
        ----------
        n_images : int
            Test images.
        config : RunConfig
        halves : bool
            Whether split-half decoded values will be given to :meth:`update`.
        settings
            ``device``, ``n_jobs``, ``mem_bytes`` for metrics that compute heavily.
        """
        raise NotImplementedError

    def update(self, start: int, stop: int, pred, true, *, constant=None,
               halves=None) -> None:
        """Add units ``start:stop`` of the layer.

        Parameters
        ----------
        start, stop : int
            Layer positions of the chunk (inside ``lo:hi``).
        pred, true : ndarray of shape (n_images, stop - start), float64
            Decoded and true values, z-scored with the same unit statistics.
        constant : ndarray of shape (stop - start,), bool, optional
            Units constant over the reference samples.
        halves : ndarray of shape (2, n_images, stop - start), optional
            Decoded values of the odd and of the even presentations.
        """
        raise NotImplementedError

    def merge(self, other: Metric) -> None:
        raise NotImplementedError

    def spawn(self, lo: int, hi: int) -> Metric:
        """An empty metric of the same kind and settings over units ``lo:hi``."""
        raise NotImplementedError

    def save(self, work) -> None:
        """Store the state into an open work file (h5py group)."""
        raise NotImplementedError

    def _read(self, work) -> None:
        raise NotImplementedError

    def load(self, work, lo: int, hi: int) -> None:
        """Merge the state that :meth:`save` stored for units ``lo:hi``."""
        part = self.spawn(lo, hi)
        part._read(work)
        self.merge(part)

    def finalize(self, done: dict) -> Result:
        """The layer's outputs; ``done`` holds the datasets of the metrics finalized before."""
        raise NotImplementedError

    def _local(self, start: int, stop: int) -> slice:
        if not self.lo <= start <= stop <= self.hi:
            raise ValueError(f"units {start}:{stop} lie outside {self.lo}:{self.hi}")
        return slice(start - self.lo, stop - self.lo)


def finalize_all(metrics: list[Metric]) -> Result:
    """Finalize metrics in order; one :class:`Result` with all their outputs."""
    out = Result()
    for m in metrics:
        r = m.finalize(out.datasets)
        out.datasets.update(r.datasets)
        out.columns.update(r.columns)
        out.attrs.update(r.attrs)
    return out
