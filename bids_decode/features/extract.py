"""Stimulus images -> features HDF5, streamed (``bids_decode features``).

Steps of :func:`extract_features`:

1. check the arguments (network, layers, preprocessing, names, device);
2. build the network with its weights (:func:`bids_decode.features.network_weights.load_network`);
3. reuse ``out_path`` if it is a complete file made with the same network, weights,
   preprocessing, layers and images (:func:`bids_decode.features.h5file.reuse_mismatch`);
4. trace the network once (:mod:`bids_decode.features.graphs`) and open a temporary file next to
   ``out_path`` (:class:`bids_decode.features.h5file.FeatureFileWriter`);
5. for each batch of images: preprocess, run the network once, and write each requested
   layer's batch into its chunked float32 dataset (created at the first batch) as soon as
   the layer is computed, in slabs of its first unit axis; the pass stops after the last
   requested layer;
6. set ``complete`` and rename the temporary file to ``out_path``.

Memory is O(batch_size x largest layer) plus the network, whatever the number of images
or layers: a single pass per batch computes all layers once (a pass per layer would
recompute the early layers for every later one), no layer is kept after it is written, and
a layer on the GPU comes to the CPU one slab (at most
:data:`~bids_decode.features.h5file.MAX_CHUNK_BYTES` per image) at a time.

The file follows ``docs/formats.md``; see ``docs/features.md`` for networks, layers and
weights.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import PIL
import torch
import torchvision

from bids_decode._version import __version__
from bids_decode.backends import resolve_backend
from bids_decode.errors import MissingInputError, UsageError
from bids_decode.features.h5file import FeatureFileWriter, reuse_mismatch
from bids_decode.features.image_preprocessing import (
    Preprocessing,
    TorchvisionPreprocessing,
    preprocess_image,
)
from bids_decode.features.network_layers import make_capture, node_of, resolve_layers
from bids_decode.features.network_weights import WeightsInfo, load_network
from bids_decode.features.networks import NetworkSpec, get_network, get_preprocessing
from bids_decode.features.stimuli import images_sha256
from bids_decode.utils.files import atomic_path
from bids_decode.utils.progress import progress_bar

LOGGER = logging.getLogger(__name__)


def extract_features(
    image_paths: list[Path],
    names: list[str],
    out_path: Path,
    *,
    network: str,
    layers: list[str] | None,
    weights: str | Path | None,
    device: str = "cpu",
    batch_size: int = 16,
    seed: int = 0,
    preprocessing: str = "default",
) -> Path:
    """Compute every unit of the requested layers for each image into a features file.

    Parameters
    ----------
    image_paths : list of Path, length n_images
    names : list of str, length n_images
        Unique stimulus names, written to ``/stimulus_name`` in this order.
    out_path : Path
        The HDF5 file to write (``docs/formats.md``); its folder is created.
    network : str
        A network of :func:`bids_decode.features.networks.get_network`: a key of
        :data:`~bids_decode.features.networks.NETWORKS`, a torchvision model name,
        ``package.module:function`` or a TorchScript file.
    layers : list of str or None
        Paper layer names, graph node names or module paths; None for the network's
        default layers. Written in the network's forward order, under the names given.
    weights : str, Path or None
        ``"random"`` (seeded; tests and demos), a state_dict file, or None for
        torchvision's cache under ``TORCH_HOME``.
    device : str or Backend
        ``cpu``, ``cuda``, ``cuda:N`` (``torch-cpu`` runs on the CPU), as resolved by
        :func:`bids_decode.backends.resolve_backend`; the decoder's ``--device``.
    batch_size : int
        Images per forward pass; memory grows with it, not with ``n_images``.
    seed : int
        Seed of random weights.
    preprocessing : {"default", "torchvision"}
        ``default``: the whole image resized (no crop), ImageNet mean/std;
        ``torchvision``: the transforms of the network's torchvision weights.

    Returns
    -------
    Path
        ``out_path``, holding ``/stimulus_name`` of shape (n_images,) and
        ``/layers/<layer>`` of shape (n_images, *unit_shape), float32.
    """
    # 1. arguments
    spec = get_network(network)
    prep = get_preprocessing(spec, preprocessing)
    layer_names = resolve_layers(spec, layers)
    image_paths, names = _check_images_and_batch(image_paths, names, batch_size)
    batch_size = int(batch_size)
    torch_device = resolve_backend(device).torch_device()  # usage errors for bad devices
    missing = [p for p in image_paths if not p.is_file()]
    if missing:
        raise MissingInputError(
            f"{len(missing)} image files do not exist: "
            f"{', '.join(str(p) for p in missing[:5])}. Check the stimulus folder."
        )
    out_path = Path(out_path)

    # 2. network and weights
    model, info = load_network(network, weights, seed=seed)
    attrs = _file_attrs(spec, info, layer_names, images_sha256(image_paths, names), prep,
                        preprocessing)

    # 3. reuse a complete file made the same way
    if out_path.exists():
        reason = reuse_mismatch(out_path, attrs, names)
        if reason is None:
            LOGGER.info("Reusing complete features file %s (same network, weights, "
                        "preprocessing, layers and images).", out_path)
            return out_path
        LOGGER.warning("Features file %s exists but %s: recomputing it.", out_path, reason)

    # 4.-6. stream into a temporary file, then rename (nothing half-written is left behind)
    model.to(torch_device)
    capture = make_capture(spec, model, layer_names)
    with atomic_path(out_path) as tmp_path:
        _write_features(tmp_path, capture, spec, prep, layer_names, image_paths, names, attrs,
                        torch_device, batch_size)
    LOGGER.info("Wrote %s: %d images x %d layers of %s.", out_path, len(names),
                len(layer_names), network)
    return out_path


def _check_images_and_batch(image_paths, names, batch_size) -> tuple[list[Path], list[str]]:
    """The paths and names as lists (UsageError unless one unique name per image and a
    positive batch size)."""
    image_paths = [Path(p) for p in image_paths]
    names = [str(n) for n in names]
    if len(image_paths) != len(names):
        raise UsageError(
            f"Got {len(image_paths)} image paths but {len(names)} names: expected one name "
            "per image."
        )
    if not names:
        raise UsageError("No images to extract features from: expected at least one image.")
    duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicates:
        raise UsageError(
            f"Stimulus names must be unique, but {', '.join(map(repr, duplicates[:5]))} "
            "occur more than once. Pass each image once."
        )
    if int(batch_size) < 1:
        raise UsageError(f"--batch-size must be a positive integer, got {batch_size}.")
    return image_paths, names


def _file_attrs(
    spec: NetworkSpec, info: WeightsInfo, layers: list[str], stimuli_sha256: str,
    preprocessing: Preprocessing | TorchvisionPreprocessing, choice: str,
) -> dict:
    """Root attributes of the features file (docs/formats.md): what made it, for provenance
    and for :func:`~bids_decode.features.h5file.reuse_mismatch`."""
    attrs = {
        "network": spec.name,
        "weights": info.name,
        "weights_sha256": info.sha256,
        "preprocessing": preprocessing.describe(),
        "preprocessing_choice": choice,
        "layers": json.dumps(layers),
        "stimuli_sha256": stimuli_sha256,
        "bids_decode_version": __version__,
        "torch_version": str(torch.__version__),
        "torchvision_version": str(torchvision.__version__),
        "h5py_version": str(h5py.__version__),
        "numpy_version": str(np.__version__),
        "pillow_version": str(PIL.__version__),
    }
    if info.seed is not None:
        attrs["seed"] = info.seed
    return attrs


def _write_features(
    path: Path,
    capture,
    spec: NetworkSpec,
    prep: Preprocessing | TorchvisionPreprocessing,
    layer_names: list[str],
    image_paths: list[Path],
    names: list[str],
    attrs: dict,
    device: torch.device,
    batch_size: int,
) -> None:
    """Steps 4-6 of :func:`extract_features` into ``path``."""
    n_images = len(names)
    modules = {layer: node_of(spec, layer) for layer in layer_names}
    with FeatureFileWriter(path, names, attrs, batch_size, modules, _cpu_float32) as out:
        start = 0

        def write(layer: str, output) -> None:
            if not isinstance(output, torch.Tensor) or output.ndim < 2:
                what = (f"a tensor of shape {tuple(output.shape)}"
                        if isinstance(output, torch.Tensor) else f"a {type(output).__name__}")
                raise UsageError(
                    f"Layer {layer!r} of network {spec.name!r} is {what}, not a tensor of "
                    "shape (n_images, *unit_shape). Choose another layer (see "
                    "'bids_decode features --network NAME --list-layers')."
                )
            out.write(layer, start, output)

        progress = progress_bar(total=n_images, unit="img", desc=f"{spec.name} features")
        with progress:
            for start in range(0, n_images, batch_size):
                batch = image_paths[start : start + batch_size]
                x = torch.stack([preprocess_image(p, prep) for p in batch])
                capture.run(x.to(device), write)
                progress.update(len(batch))
        out.finish()


def _cpu_float32(values: torch.Tensor) -> np.ndarray:
    """A layer's values (or a slab of them) as a float32 array in memory."""
    return values.detach().to("cpu", torch.float32).numpy()
