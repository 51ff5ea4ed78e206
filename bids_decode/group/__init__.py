"""Stage 12, group level: reads the participant outputs only, never refits.

:func:`run_group` runs the steps in order (``bids_decode group``); outputs: docs/outputs.md.

Modules
-------
steps
    The orchestrator: :func:`run_group` and the entries that must agree across subjects.
io
    Steps 1-2: find the participant outputs and check that they can be compared.
stats
    Step 3: between-subject correlation and top-k% overlap of unit accuracies, reliabilities,
    the summary rows.
averaged
    Step 4: the Averaged subject, the subjects' decoded features averaged and scored like one.
figures
    Step 7: the figures of the group report.
"""

from bids_decode.group.averaged import average_layer, read_true_layer, reference_rows
from bids_decode.group.io import check_consistent, find_outputs
from bids_decode.group.stats import pair_correlations, pair_statistics, top_overlap
from bids_decode.group.steps import CONFIG_KEYS, SIDECAR_KEYS, run_group

__all__ = ["CONFIG_KEYS", "SIDECAR_KEYS", "average_layer", "check_consistent", "find_outputs",
           "pair_correlations", "pair_statistics", "read_true_layer", "reference_rows",
           "run_group", "top_overlap"]
