"""Stage 6, reports: self-contained HTML reports and their figures, read from the outputs only."""
