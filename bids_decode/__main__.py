import sys

from bids_decode.cli import main

sys.exit(main())
