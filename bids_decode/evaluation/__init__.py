"""Stage 4, evaluation: every score of decoded features, behind one streaming metric interface."""
