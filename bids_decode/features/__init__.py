"""Stage 2, features: DNN unit activations of the stimulus images, and the store they are read from.

The true features come from a store (no torch needed, imported here):

- :mod:`.store`: the :class:`FeatureStore` interface (rows of the training stimuli, the
  targets of the test labels, values streamed in unit chunks);
- :mod:`.h5file`: the HDF5 features file (docs/formats.md): :class:`FeatureFile`, the HDF5
  :class:`FeatureStore`, and :class:`~.h5file.FeatureFileWriter`, which writes it.

The features are computed from the images by ``bids_decode features`` (or the participant
level without ``--features``); these modules (all but :mod:`.stimuli` need torch) are
imported where used:

- :mod:`.stimuli`: finding and naming the stimulus images;
- :mod:`.image_preprocessing`: image -> input tensor;
- :mod:`.networks`: the registry ``NETWORKS`` and :func:`~.networks.get_network` (torchvision
  models, callables, TorchScript files), with :mod:`.zoo` (torchvision's families and default
  layers) and :mod:`.caffe_alexnet` (the paper's network);
- :mod:`.network_weights`: loading and hashing a network's weights;
- :mod:`.network_layers`: layer names, order and unit shapes; :mod:`.graphs`: capturing them in one
  streamed forward pass (torch.fx);
- :mod:`.extract`: images -> features file; :mod:`.command`: the ``bids_decode features``
  subcommand.
"""

from bids_decode.features.h5file import FeatureFile
from bids_decode.features.store import CATEGORIES, IMAGES, FeatureStore, TestTargets, stimulus_key

__all__ = ["CATEGORIES", "IMAGES", "FeatureFile", "FeatureStore", "TestTargets", "stimulus_key"]
