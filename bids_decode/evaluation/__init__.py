"""Stage 5, evaluation: every score of decoded features, behind one streaming metric interface.

A score is a :class:`Metric` (``update`` / ``merge`` / ``save`` / ``load`` / ``finalize``),
filled unit chunk by unit chunk and merged over the unit shards with the same bits however the
units were split; the list of metrics run on every layer is
:data:`bids_decode.outputs.schema.METRICS`.

Modules
-------
metric
    The interface: :class:`Metric`, the :class:`Output` declarations, :class:`Result`,
    :func:`finalize_all`.
correlation
    Profile and pattern correlation, pairwise identification, unit ranks, the NaN policy.
exact_sums
    Exact, order-independent sums over units (int64 limbs): :class:`PatternAccumulator`.
metrics
    The accuracy metrics :class:`ProfileCorrelation` and :class:`PatternIdentification`.
permutation
    Per-unit permutation tests: the fixed permutations, the null kernels (numba, torch),
    :class:`PermutationTest`.
pvalues
    Permutation p-values, Benjamini-Hochberg q-values, max-statistic family-wise p-values.
reliability
    Split-half reliability (Spearman-Brown), noise ceiling, disattenuation.
unit_statistics
    :class:`UnitStatistics`: the permutation tests and reliabilities of a layer, as a metric.
"""

from bids_decode.evaluation.correlation import nanstat, profile_correlation, rank_units
from bids_decode.evaluation.metric import Metric, Output, Result, finalize_all
from bids_decode.evaluation.metrics import PatternIdentification, ProfileCorrelation
from bids_decode.evaluation.unit_statistics import UnitStatistics

__all__ = ["Metric", "Output", "PatternIdentification", "ProfileCorrelation", "Result",
           "UnitStatistics", "finalize_all", "nanstat", "profile_correlation",
           "rank_units"]
