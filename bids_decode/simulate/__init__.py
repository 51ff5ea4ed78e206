"""Simulated ds001246- and ds001506-shaped datasets with a planted ground truth (demo and tests)."""

from bids_decode.simulate.dataset import simulate_dataset

__all__ = ["simulate_dataset"]
