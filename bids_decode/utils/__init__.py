"""Shared utilities of every stage: docstring fragments, progress bars, the unit grid."""
