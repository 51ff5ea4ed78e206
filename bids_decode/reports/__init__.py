"""Stage 8, reports: self-contained HTML reports and their figures, read from the outputs only.

Both reports open offline in any browser (figures embedded as PNG, inline CSS, no scripts);
what each part shows: docs/outputs.md.

Modules
-------
html
    The page, tables and embedded figures every report is built from.
figures
    The report figures (matplotlib, drawn off-screen): :class:`ReportFigure` and the plots.
methods
    The methods paragraphs: a subject's parameters and versions, the group's analyses.
subject
    :func:`write_subject_report`: ``OUTPUT_DIR/sub-<L>_net-<N>.html`` from one subject's
    outputs of one network.
group
    :func:`write_group_report`: ``OUTPUT_DIR/group/net-<N>_report.html`` from a network's group
    tables and figures; :func:`write_networks_report`: ``group/report.html``, the networks
    compared.
"""

from bids_decode.reports.figures import ReportFigure
from bids_decode.reports.group import write_group_report, write_networks_report
from bids_decode.reports.subject import write_subject_report

__all__ = ["ReportFigure", "write_group_report", "write_networks_report",
           "write_subject_report"]
