"""bids_decode: decode deep-network features from human fMRI, as a BIDS App."""

from bids_decode._version import __version__
from bids_decode.decoding import VoxelSelectionRidge

__all__ = ["VoxelSelectionRidge", "__version__"]
