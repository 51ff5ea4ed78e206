#!/usr/bin/env python3
"""Container entry point: ``run.py BIDS_DIR OUTPUT_DIR participant|group [options]``."""
import sys

from bids_decode.cli import main

if __name__ == "__main__":
    sys.exit(main())
