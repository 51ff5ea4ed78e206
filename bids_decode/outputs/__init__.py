"""Stage 5, outputs: the schema of every derivative file, paths, provenance and work files."""
