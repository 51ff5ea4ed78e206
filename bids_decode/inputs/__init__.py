"""Stage 2, inputs: a subject's BIDS runs, events, ROI masks and confounds, turned into samples.

Every input kind lives here, in the order one participant run uses them:

- :mod:`.annex`: git-annex files without their content (a DataLad clone), checked first.
- :mod:`.input_list`: the files a run reads (``--list-inputs``, the annex check, the
  validator's rule), from the sources' own searches.
- :mod:`.validation`: the BIDS validator, run before any work; it stops only for errors in
  the run's files.
- :mod:`.bids_names`: BIDS file names (entities) and the sidecars a file inherits.
- :mod:`.layout`: subjects, the pybids index, events files, TR and volume counts (:class:`Run`).
- :mod:`.sources`: the ``--bold-source`` registry (:data:`BOLD_SOURCES`: raw, preproc-spm,
  fMRIPrep, BData), ``auto`` resolved once; each kind finds its own runs and gives
  :class:`SubjectInputs`.
- :mod:`.fmriprep`: fMRIPrep's runs and transforms (full or minimal outputs).
- :mod:`.alignment`: are the runs in the masks' space; the reference grid.
- :mod:`.rois`: the ``--roi`` registry (:data:`ROI_SOURCES`: mask files, atlas labels,
  ds001246's names) and the masks on the reference grid.
- :mod:`.events`: which rows of an events file are samples (event conventions, blocks).
- :mod:`.bold`: a run's BOLD time series at the mask voxels (the one 4-D opener, resampling).
- :mod:`.confounds`: confound regressors (fMRIPrep's tables, or motion from its transforms).
- :mod:`.samples`: cleaned, block-averaged samples (:class:`Samples`, :class:`SubjectInputs`).
- :mod:`.bdata`: the authors' preprocessed BData files as a BOLD source.

Nothing here imports a later stage: the QC file of the report is written by
:func:`bids_decode.outputs.qc.write_qc` from the :class:`InputQc` the sources return.
"""

from bids_decode.inputs.layout import Run
from bids_decode.inputs.rois import ROI_SOURCES, RoiSpec
from bids_decode.inputs.samples import InputQc, Samples, SubjectInputs
from bids_decode.inputs.sources import BOLD_SOURCES, BidsRuns, BoldSource

__all__ = ["BOLD_SOURCES", "ROI_SOURCES", "BidsRuns", "BoldSource", "InputQc", "RoiSpec", "Run",
           "Samples", "SubjectInputs"]
