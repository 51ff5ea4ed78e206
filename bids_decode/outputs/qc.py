"""The sample-quality file of the subject report (``*_qc.h5``): ROI time courses of one run,
sample counts and the run's warnings, written from what the inputs stage returns
(:class:`bids_decode.inputs.samples.SubjectInputs`, with its ``InputQc``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

from bids_decode.config import RunConfig
from bids_decode.inputs.bold import load_run_timeseries
from bids_decode.inputs.events import EventSpec, read_blocks
from bids_decode.inputs.samples import SubjectInputs
from bids_decode.outputs import schema as outputs
from bids_decode.utils.files import atomic_path

LOGGER = logging.getLogger(__name__)


def write_qc(config: RunConfig, subject: str, inputs: SubjectInputs,
             warnings: list[str]) -> Path:
    """Small QC file for the report: ROI time courses of one run, sample counts, warnings.

    Parameters
    ----------
    config : RunConfig
    subject : str
        Label without ``sub-``.
    inputs : SubjectInputs
        With ``inputs.qc`` set (its run is None for samples without runs: no time course).
    warnings : list of str
        The warnings logged during the run.

    Returns
    -------
    Path
        The file written (:func:`bids_decode.outputs.schema.qc_h5`).
    """
    qc, samples = inputs.qc, inputs.samples
    path = outputs.qc_h5(config.output_dir, subject, config.task, network=config.network)
    str_dt = h5py.string_dtype("utf-8")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        outputs.stamp(h5)
        h5.attrs["network"] = config.network
        if qc.run is not None:  # None: samples without runs (BData), no time course
            _write_qc_run(config, h5, qc.run, qc.union, inputs.masks, qc.ref_shape)
        names, counts = np.unique(np.array(samples.train_labels, dtype=object).astype(str),
                                  return_counts=True)
        h5.create_dataset("train_counts/name", data=names.astype(object), dtype=str_dt)
        h5.create_dataset("train_counts/count", data=counts)
        h5.create_dataset("test_counts/name", data=np.array(samples.test_labels, dtype=object),
                          dtype=str_dt)
        h5.create_dataset("test_counts/count", data=samples.test_counts)
        h5.create_dataset("warnings", data=np.array(warnings, dtype=object), dtype=str_dt)
    return path


def _write_qc_run(config: RunConfig, h5, run, union, masks, ref_shape) -> None:
    ts = load_run_timeseries(run, union, ref_shape)
    union_flat = np.flatnonzero(union.ravel())
    blocks = read_blocks(run.events, EventSpec.for_task(
        config.train_task, config.stimulus_column, config.sample_events_for("train")))
    h5.attrs.update({"tr": run.tr, "run": run.label, "volume_offset": run.volume_offset})
    for name, m in masks.items():
        cols = np.isin(union_flat, np.flatnonzero(m.ravel()))
        h5.create_dataset(f"timecourse/{name}", data=ts[:, cols].mean(axis=1))
    h5.create_dataset("blocks/onset", data=blocks.onsets)
    h5.create_dataset("blocks/duration", data=blocks.durations)
    h5.create_dataset("blocks/label", data=np.array(blocks.labels, dtype=object),
                      dtype=h5py.string_dtype("utf-8"))
