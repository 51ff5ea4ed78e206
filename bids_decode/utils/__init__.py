"""Shared utilities of every stage: docstring fragments, progress bars, the unit grid, file
helpers (atomic writes, folders, free space, the shared lock)."""
