"""Stage 7, outputs: every file the app writes, declared once, and where it goes.

- ``schema``: every derivative file, its datasets and columns, the format version; the one
  writer and the one reader (participant, group and reports use them);
- ``paths``: BIDS names and paths, the output folder's checks, ``dataset_description.json``
  and ``.bidsignore``;
- ``provenance``: package versions, platform, CPU and LAPACK, the container;
- ``work_files``: the per-shard work files of the participant level (names, layout version,
  merging) and the unit shards still missing.

The generic file helpers (atomic writes, the shared lock) are in :mod:`bids_decode.utils.files`.
"""
