"""A network's weights: loading them (random, a state_dict file, torchvision's cache) and
identifying them by SHA-256.

:func:`load_network` builds a network of the registry (:func:`bids_decode.features.networks.
get_network`) in eval mode with its weights and returns a :class:`WeightsInfo` that the
features file records (name, hash, seed), so that a file says which weights made it and a
rerun reuses it only with the same weights.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bids_decode.errors import DataError, MissingInputError, UsageError
from bids_decode.features.networks import NetworkSpec, get_network

LOGGER = logging.getLogger(__name__)

RANDOM_WEIGHTS = "random"
"""``--weights`` value (and ``WeightsInfo.name``) of torch's default initialisation, seeded."""
BUILT_WEIGHTS = "as-built"
"""``WeightsInfo.name`` of a callable's model used with the weights it was built with."""


@dataclass(frozen=True)
class WeightsInfo:
    """Where a network's weights came from (recorded in the features file).

    Attributes
    ----------
    name : str
        ``"random"``, or the weights file's name.
    sha256 : str
        SHA-256 of the weights file; for random weights, of the state_dict's tensors
        (names and bytes in key order), so the draw is identifiable too.
    seed : int or None
        The seed of random weights; None for pretrained weights.
    path : Path or None
    """

    name: str
    sha256: str
    seed: int | None = None
    path: Path | None = None


def file_sha256(path: Path, chunk_bytes: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def state_dict_sha256(model: nn.Module) -> str:
    """SHA-256 over a model's state_dict (key names and float tensor bytes, in order)."""
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy())  # buffer, no copy
    return digest.hexdigest()


def torchvision_cache_path(spec: NetworkSpec) -> Path | None:
    """Where torchvision caches ``spec``'s pretrained weights (follows ``TORCH_HOME``)."""
    if spec.cache_file is None:
        return None
    return Path(torch.hub.get_dir()) / "checkpoints" / spec.cache_file


def _missing_weights_message(spec: NetworkSpec) -> str:
    if spec.cache_file is None:
        return (
            f"No weights for network {spec.name!r}: --weights was not given and torchvision "
            "distributes none for this architecture. Convert the Caffe bvlc_alexnet weights "
            "to a PyTorch state_dict with keys conv1.weight, conv1.bias, ..., fc8.bias (Caffe "
            "blob shapes are kept; see docs/features.md) and pass it as --weights FILE, or "
            "pass --weights random for untrained, seeded weights (tests and demos only)."
        )
    cache = torchvision_cache_path(spec)
    if os.environ.get("BIDS_DECODE_CONTAINER"):
        torch_home = os.environ.get("TORCH_HOME", "/opt/torch")
        return (
            f"No weights for network {spec.name!r}: this container image was built without "
            f"them ({cache} is missing) and the image is read-only. On a machine with internet "
            f"access run `python -c \"import torchvision; {spec.weights_hint}\"`, then mount "
            f"the folder holding hub/checkpoints/{spec.cache_file} at {torch_home} (docker: "
            f"-v DIR:{torch_home}:ro; apptainer: -B DIR:{torch_home}:ro), or mount the file "
            "and pass it as --weights FILE."
        )
    return (
        f"No weights for network {spec.name!r}: --weights was not given and torchvision's "
        f"cache has no {cache}. On a machine with internet access run "
        f"`python -c \"import torchvision; {spec.weights_hint}\"` and copy "
        f"{spec.cache_file} into {cache.parent} here (set TORCH_HOME to use another cache "
        "folder), or pass the file as --weights FILE; --weights random gives untrained, "
        "seeded weights for tests and demos only."
    )


def _read_state_dict(path: Path, spec: NetworkSpec) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file it cannot read
        raise DataError(
            f"Cannot read weights file {path} for network {spec.name!r} "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            "Expected a PyTorch state_dict saved with torch.save(model.state_dict(), FILE); "
            "re-save it that way or pass another --weights FILE."
        ) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(
            f"Weights file {path} holds a {type(state).__name__}, expected a state_dict (a dict "
            "of tensors). Save it with torch.save(model.state_dict(), FILE)."
        )
    return state


def _load_state_dict(model: nn.Module, state: dict, path: Path, spec: NetworkSpec) -> None:
    if spec.fix_state_dict is not None:
        state = spec.fix_state_dict(state)
    expected = model.state_dict()
    # old checkpoints (torchvision's ResNet, DenseNet ...) have no BatchNorm step counters;
    # BatchNorm fills them in when it loads
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong_shape:
        def few(items):
            return ", ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")

        problems = []
        if missing:
            problems.append(f"missing keys {few(missing)}")
        if unexpected:
            problems.append(f"unexpected keys {few(unexpected)}")
        if wrong_shape:
            problems.append(f"wrong shapes {few(wrong_shape)}")
        raise DataError(
            f"Weights file {path} does not fit network {spec.name!r}: {'; '.join(problems)}. "
            f"Expected the keys {few(list(expected))}. Check that --network matches the "
            "weights, or convert the weights to this architecture's names."
        )
    model.load_state_dict(state, strict=True)


def load_network(
    name: str, weights: str | os.PathLike | None = None, *, seed: int = 0
) -> tuple[nn.Module, WeightsInfo]:
    """Build network ``name`` in eval mode with its weights.

    Parameters
    ----------
    name : str
        A network accepted by :func:`get_network`.
    weights : str, path or None
        ``"random"``: torch's default initialisation drawn with ``seed`` (tests, demos);
        a path: a state_dict file; None: torchvision's cache under ``TORCH_HOME`` (the
        weights a callable's model is built with; those in a TorchScript file).
    seed : int
        Seed of random weights; ignored otherwise.

    Returns
    -------
    model : torch.nn.Module
        On the CPU, in eval mode, gradients off.
    info : WeightsInfo

    Raises
    ------
    MissingInputError
        The weights file, or torchvision's cached file, is not there.
    DataError
        The file cannot be read or does not fit the architecture.
    """
    spec = get_network(name)
    if isinstance(weights, str) and weights == RANDOM_WEIGHTS:
        if spec.source == "torchscript":
            raise UsageError(
                f"--weights random cannot be used with the TorchScript network {name}: its "
                "weights are in the file. Leave --weights out, or pass a state_dict FILE."
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = spec.build()
        info = WeightsInfo(RANDOM_WEIGHTS, state_dict_sha256(model), seed=int(seed))
        LOGGER.warning(
            "Network %s uses RANDOM weights (seed %d): features are for tests and demos only.",
            name,
            seed,
        )
    elif weights is None and spec.source in ("callable", "torchscript"):
        model = spec.build()
        if spec.source == "torchscript":
            path = Path(spec.name)
            info = WeightsInfo(path.name, file_sha256(path), path=path.resolve())
        else:
            info = WeightsInfo(BUILT_WEIGHTS, state_dict_sha256(model))
        LOGGER.info("Network %s: the weights it is built with (sha256 %s)", name,
                    info.sha256[:12])
    else:
        if weights is None:
            path = torchvision_cache_path(spec)
            if path is None or not path.is_file():
                raise MissingInputError(_missing_weights_message(spec))
        else:
            path = Path(weights)
            if not path.is_file():
                raise MissingInputError(
                    f"Weights file {path} for network {name!r} does not exist. Pass an "
                    "existing state_dict file with --weights FILE (in a container: mount it "
                    "and pass the path inside), leave --weights out to use torchvision's "
                    "cache, or pass --weights random (tests and demos only)."
                )
        model = spec.build()
        _load_state_dict(model, _read_state_dict(path, spec), path, spec)
        info = WeightsInfo(path.name, file_sha256(path), path=path.resolve())
        LOGGER.info("Network %s: weights %s (sha256 %s)", name, path, info.sha256[:12])
    model.eval()
    for parameter in model.parameters():  # (ScriptModules have no requires_grad_)
        parameter.requires_grad_(False)
    return model, info
