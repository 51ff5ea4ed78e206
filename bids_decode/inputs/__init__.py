"""Stage 1, inputs: the BIDS dataset's runs, events, ROI masks and validation, turned into samples.

Every input kind lives here: the ``--bold-source`` registry (:mod:`.sources`), the ROI registry
(:mod:`.rois`), events (:mod:`.events`), pybids indexing (:mod:`.layout`), alignment and fMRIPrep
transforms, the authors' BData files, and the samples (:mod:`.samples`).
"""
