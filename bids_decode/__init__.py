"""bids_decode: decode deep-network features from human fMRI, as a BIDS App."""

from ._version import __version__
from .decoding import VoxelSelectionRidge

__all__ = ["VoxelSelectionRidge", "__version__"]
