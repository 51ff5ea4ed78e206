"""Stimulus images -> features HDF5, streamed (``bids_decode features``).

Steps of :func:`extract_features`:

1. check the arguments (network, layers, preprocessing, names, device);
2. build the network with its weights (:func:`bids_decode.features.networks.load_network`);
3. reuse ``out_path`` if it is a complete file made with the same network, weights,
   preprocessing, layers and images;
4. trace the network once (:mod:`bids_decode.features.graphs`) and open a temporary file next to
   ``out_path``;
5. for each batch of images: preprocess, run the network once, and write each requested
   layer's batch into its chunked float32 dataset (created at the first batch) as soon as
   the layer is computed, in slabs of its first unit axis; the pass stops after the last
   requested layer;
6. set ``complete`` and rename the temporary file to ``out_path``.

Memory is O(batch_size x largest layer) plus the network, whatever the number of images
or layers: a single pass per batch computes all layers once (a pass per layer would
recompute the early layers for every later one), no layer is kept after it is written, and
a layer on the GPU comes to the CPU one slab (at most :data:`MAX_CHUNK_BYTES` per image) at
a time.

The file follows ``docs/formats.md``; see ``docs/features.md`` for networks, layers and
weights.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import PIL
import torch
import torchvision
from PIL import Image, UnidentifiedImageError

from bids_decode._version import __version__
from bids_decode.backends import resolve_backend
from bids_decode.errors import DataError, MissingInputError, UsageError
from bids_decode.features.networks import (
    PREPROCESSING_CHOICES,
    NetworkSpec,
    Preprocessing,
    TorchvisionPreprocessing,
    WeightsInfo,
    get_network,
    get_preprocessing,
    list_layers,
    load_network,
    make_capture,
    node_of,
    resolve_layers,
)
from bids_decode.utils.files import atomic_path
from bids_decode.utils.progress import progress_bar

LOGGER = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm")
"""File extensions taken as images (compared case-insensitively)."""

NAME_COLUMNS = ("stim_file", "stimulus_name", "stim_id", "stimulus", "image_file", "image")
"""Columns of a ``--names-from`` table that name images, in order of preference."""

MAX_CHUNK_BYTES = 8 << 20
"""Upper bound of one HDF5 chunk: whole images (rows) of one layer while one image fits,
else one image and a slab of the layer's first unit axis."""

# --------------------------------------------------------------------------- images
def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _strip_image_suffix(name: str) -> str:
    path = Path(name)
    return str(path.with_suffix("")) if path.suffix.lower() in IMAGE_EXTENSIONS else name


def _stimulus_folder(stimuli_dir, hint: str) -> Path:
    """``stimuli_dir`` as a Path, or a MissingInputError (``hint`` says which folder)."""
    stimuli_dir = Path(stimuli_dir)
    if not stimuli_dir.is_dir():
        raise MissingInputError(
            f"Stimulus folder {stimuli_dir} does not exist or is not a folder. Pass the "
            f"folder holding the stimulus images ({hint})."
        )
    return stimuli_dir


def _images_under(folder: Path) -> list[Path]:
    """Every image file below ``folder`` (recursively), sorted."""
    return sorted(p for p in folder.rglob("*") if _is_image(p))


def discover_images(stimuli_dir: Path) -> tuple[list[Path], list[str]]:
    """Every image under ``stimuli_dir`` (recursively), sorted, with its name.

    Returns
    -------
    paths : list of Path
    names : list of str
        The path relative to ``stimuli_dir`` without its extension, POSIX style
        (the file's stem when the folder is flat).
    """
    stimuli_dir = _stimulus_folder(stimuli_dir, "for ds001246: the 1,250 ImageNet images")
    paths = _images_under(stimuli_dir)
    if not paths:
        raise MissingInputError(
            f"No images in {stimuli_dir}: expected files ending in "
            f"{' '.join(IMAGE_EXTENSIONS)} (any case). Put the stimulus images there."
        )
    names = [p.relative_to(stimuli_dir).with_suffix("").as_posix() for p in paths]
    return paths, names


def find_images(stimuli_dir: Path, names: list[str]) -> list[Path]:
    """The image file of each stimulus name.

    A name matches, in this order: the file ``stimuli_dir / name`` itself; a file named
    ``name`` plus any image extension (``name`` may carry an extension and directories,
    as BIDS ``stim_file`` values relative to ``stimuli/`` do); the one image anywhere under
    ``stimuli_dir`` whose file name without extension equals that of ``name``.

    Parameters
    ----------
    stimuli_dir : Path
    names : list of str

    Returns
    -------
    list of Path
        One per name, in the order of ``names``.

    Raises
    ------
    MissingInputError
        The folder or some images are missing (a few missing names are listed).
    DataError
        A name matches several images by file name only.
    """
    stimuli_dir = _stimulus_folder(stimuli_dir,
                                   "default for the participant level: BIDS_DIR/stimuli")
    images = _images_under(stimuli_dir)
    by_relative: dict[str, list[Path]] = {}
    by_stem: dict[str, list[Path]] = {}
    for path in images:
        relative = path.relative_to(stimuli_dir).with_suffix("").as_posix()
        by_relative.setdefault(relative, []).append(path)
        by_stem.setdefault(path.stem, []).append(path)

    found: list[Path] = []
    missing: list[str] = []
    for name in names:
        exact = stimuli_dir / name
        key = _strip_image_suffix(Path(name).as_posix())
        stem = Path(key).name
        if _is_image(exact):
            found.append(exact)
        elif len(by_relative.get(key, [])) == 1:
            found.append(by_relative[key][0])
        elif len(by_stem.get(stem, [])) == 1:
            found.append(by_stem[stem][0])
        elif len(by_relative.get(key, by_stem.get(stem, []))) > 1:
            candidates = by_relative.get(key) or by_stem[stem]
            raise DataError(
                f"Stimulus name {name!r} matches {len(candidates)} images in {stimuli_dir} "
                f"({', '.join(str(p.relative_to(stimuli_dir)) for p in sorted(candidates)[:4])}). "
                "Keep one image per name, or name images by their path relative to the folder."
            )
        else:
            missing.append(name)
    if missing:
        shown = ", ".join(repr(n) for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise MissingInputError(
            f"{len(missing)} of {len(names)} stimulus images are missing from {stimuli_dir}: "
            f"{shown}{more}. Expected an image of each name with one of the extensions "
            f"{' '.join(IMAGE_EXTENSIONS)} (any case); copy the images there (for ds001246 "
            "the ImageNet images are not in the dataset) or pass the right folder."
        )
    return found


def read_names(table: Path) -> list[str]:
    """Stimulus names of an events file or a one-column TSV, unique, in first-seen order.

    The column is the first of :data:`NAME_COLUMNS` present, or the only column of a
    one-column table (its first line is a header). Empty and ``n/a`` cells are skipped.
    """
    table = Path(table)
    if not table.is_file():
        raise MissingInputError(
            f"Names table {table} does not exist. Pass an events.tsv or a one-column TSV "
            "of image names with --names-from, or leave it out to use every image."
        )
    with open(table, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    header = rows[0] if rows else []
    columns = [c for c in NAME_COLUMNS if c in header]
    if columns:
        index = header.index(columns[0])
    elif len(header) == 1:
        index = 0
    else:
        raise DataError(
            f"Names table {table} has columns {header}, expected one of "
            f"{', '.join(NAME_COLUMNS)} or a single column. Rename the column that names "
            "the images."
        )
    names: dict[str, None] = {}
    for row in rows[1:]:
        value = row[index].strip() if index < len(row) else ""
        if value and value.lower() != "n/a":
            names.setdefault(value, None)
    if not names:
        raise DataError(
            f"Names table {table} names no images in column {header[index]!r} (only empty "
            "or n/a cells). Pass a table whose column holds the stimulus names."
        )
    return list(names)


def preprocess_image(
    path: Path, preprocessing: Preprocessing | TorchvisionPreprocessing
) -> torch.Tensor:
    """Load one image as the network's input.

    :class:`~bids_decode.features.networks.Preprocessing`: the whole image is resized to
    ``preprocessing.size`` (no crop, PIL bilinear with antialiasing), converted to RGB,
    scaled, reordered and normalised.
    :class:`~bids_decode.features.networks.TorchvisionPreprocessing`: the RGB image goes through
    the torchvision weights' transforms.

    Returns
    -------
    tensor of shape (3, height, width), float32
    """
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if isinstance(preprocessing, TorchvisionPreprocessing):
                return preprocessing.transform(image).to(torch.float32).contiguous()
            height, width = preprocessing.size
            image = image.resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(
            f"Cannot read image {path} ({type(err).__name__}: {err}). Replace it with a "
            f"readable image ({' '.join(IMAGE_EXTENSIONS)}) or remove it from the stimuli."
        ) from err
    array = array * (preprocessing.scale / 255.0)
    if preprocessing.channel_order == "BGR":
        array = array[:, :, ::-1]
    mean = np.asarray(preprocessing.mean, dtype=np.float32)
    std = np.asarray(preprocessing.std, dtype=np.float32)
    array = (array - mean) / std
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def images_sha256(paths: Sequence[Path], names: Sequence[str]) -> str:
    """SHA-256 over each name and its image file's bytes, in order (reuse check)."""
    digest = hashlib.sha256()
    for name, path in zip(names, paths, strict=True):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- HDF5
def chunk_rows(batch_size: int, n_images: int, row_bytes: int) -> int:
    """Images per HDF5 chunk: a divisor of ``batch_size`` (batches write whole chunks),
    at most ``n_images``, and a chunk of at most :data:`MAX_CHUNK_BYTES` where one image
    fits (an image larger than that is one chunk)."""
    limit = max(1, min(batch_size, n_images, MAX_CHUNK_BYTES // max(row_bytes, 1)))
    return max(d for d in range(1, limit + 1) if batch_size % d == 0)


def chunk_shape(batch_size: int, n_images: int, unit_shape: tuple[int, ...]) -> tuple:
    """HDF5 chunk of a layer: :func:`chunk_rows` images, and where one image's layer is
    larger than :data:`MAX_CHUNK_BYTES`, one image and a slab of the first unit axis (so big
    layers are written, and read back by unit chunks, slab by slab).

    Returns
    -------
    tuple of int
        ``(rows, *unit_chunk)``, of length ``1 + len(unit_shape)``.
    """
    row_bytes = 4 * math.prod(unit_shape)
    rows = chunk_rows(batch_size, n_images, row_bytes)
    if row_bytes <= MAX_CHUNK_BYTES or not unit_shape:
        return (rows, *unit_shape)
    per_index = 4 * math.prod(unit_shape[1:])  # bytes of one index of the first unit axis
    first = max(1, min(unit_shape[0], MAX_CHUNK_BYTES // max(per_index, 1)))
    return (1, first, *unit_shape[1:])


def _file_attrs(
    spec: NetworkSpec, info: WeightsInfo, layers: list[str], stimuli_sha256: str,
    preprocessing: Preprocessing | TorchvisionPreprocessing, choice: str,
) -> dict:
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


REUSE_KEYS = ("network", "weights", "seed", "weights_sha256", "preprocessing", "layers",
              "stimuli_sha256")
"""Attributes that must be equal for an existing file to be reused (versions need not);
``preprocessing`` (JSON) differs between the ``preprocessing_choice`` values."""


def _reuse_mismatch(out_path: Path, attrs: dict, names: list[str]) -> str | None:
    """Why ``out_path`` cannot be reused (None when it can)."""
    try:
        with h5py.File(out_path, "r") as f:
            if not bool(f.attrs.get("complete", False)):
                return "it is incomplete (complete is not True)"
            for key in REUSE_KEYS:
                have = f.attrs.get(key)
                have = have.item() if isinstance(have, np.generic) else have
                if have != attrs.get(key):
                    return f"{key} differs (file: {have!r}, now: {attrs.get(key)!r})"
            stored = [s.decode() if isinstance(s, bytes) else s for s in f["stimulus_name"][()]]
            if stored != list(names):
                return "its stimulus names differ"
    except (OSError, KeyError) as err:
        return f"it cannot be read as a features file ({err})"
    return None


# --------------------------------------------------------------------------- extraction
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
        reason = _reuse_mismatch(out_path, attrs, names)
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
    with h5py.File(path, "w") as f:
        f.attrs.update(attrs)
        f.attrs["complete"] = False
        f.create_dataset("stimulus_name", data=names, dtype=h5py.string_dtype("utf-8"))
        group = f.create_group("layers")
        datasets: dict[str, h5py.Dataset] = {}
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
            if layer not in datasets:
                shape = tuple(output.shape[1:])
                datasets[layer] = group.create_dataset(
                    layer, shape=(n_images, *shape), dtype="float32",
                    chunks=chunk_shape(batch_size, n_images, shape))
                datasets[layer].attrs["module"] = node_of(spec, layer)
            ds = datasets[layer]
            stop = start + output.shape[0]
            step = ds.chunks[1] if len(ds.chunks) > 1 else 1
            if output.ndim == 2 or step >= output.shape[1]:
                ds[start:stop] = output.detach().to("cpu", torch.float32).numpy()
                return
            for a in range(0, output.shape[1], step):  # one slab of chunks at a time
                ds[start:stop, a:a + step] = (
                    output[:, a:a + step].detach().to("cpu", torch.float32).numpy())

        progress = progress_bar(total=n_images, unit="img", desc=f"{spec.name} features")
        with progress:
            for start in range(0, n_images, batch_size):
                batch = image_paths[start : start + batch_size]
                x = torch.stack([preprocess_image(p, prep) for p in batch])
                capture.run(x.to(device), write)
                progress.update(len(batch))
        f.attrs["complete"] = True


def print_layers(network: str, preprocessing: str = "default", file=None) -> None:
    """Print every layer name of ``network`` with its unit count (``--list-layers``).

    One line per name: name, number of units, unit shape, then ``*`` for a default layer
    and ``= NODE`` where the name stands for another node (a module's output, a paper name).
    Names whose value is no tensor show ``-``.
    """
    import sys

    file = file or sys.stdout
    spec = get_network(network)
    prep = get_preprocessing(spec, preprocessing)
    rows = list_layers(spec, prep.size)
    height, width = prep.size
    print(f"# {spec.name}: {len(rows)} layer names at input 3x{height}x{width} "
          f"(--preprocessing {preprocessing}); * = default layer", file=file)
    width_name = max(len(r.name) for r in rows)
    for r in rows:
        units = "-" if r.n_units is None else str(r.n_units)
        shape = "-" if r.unit_shape is None else "x".join(map(str, r.unit_shape)) or "scalar"
        note = " ".join(x for x in ("*" if r.default else "", f"= {r.of}" if r.of else "") if x)
        print(f"{r.name:<{width_name}}  {units:>10}  {shape:<14} {note}".rstrip(), file=file)


# --------------------------------------------------------------------------- CLI hook
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bids_decode features`` arguments to ``parser``."""
    parser.add_argument("stimuli_dir", metavar="STIMULI_DIR", type=Path, nargs="?",
                        help="folder of stimulus images (searched recursively)")
    parser.add_argument("out", metavar="OUT", type=Path, nargs="?",
                        help="features file to write (.h5); reused if complete and identical")
    parser.add_argument("--network", default="alexnet", metavar="NAME",
                        help="alexnet, vgg19, caffe-alexnet, any torchvision classification "
                             "model (resnet50, vit_b_16, ...), package.module:function "
                             "returning an nn.Module, or a TorchScript file (default: "
                             "%(default)s); see docs/features.md")
    parser.add_argument("--layers", nargs="+", metavar="NAME", default=None,
                        help="paper layer names (conv1 ... fc8) or graph node names "
                             "(--list-layers); default: the network's default layers")
    parser.add_argument("--list-layers", action="store_true",
                        help="print the network's layer names with their unit counts and exit "
                             "(STIMULI_DIR and OUT are not needed)")
    parser.add_argument("--preprocessing", choices=list(PREPROCESSING_CHOICES),
                        default="default",
                        help="default: whole image resized, ImageNet mean/std; torchvision: "
                             "the transforms of the network's torchvision weights "
                             "(default: %(default)s)")
    parser.add_argument("--weights", metavar="FILE|random", default=None,
                        help="state_dict file; default: torchvision's cache under TORCH_HOME; "
                             "'random': untrained seeded weights (tests and demos only)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of --weights random (default: %(default)s)")
    parser.add_argument("--device", default="cpu", metavar="cpu|cuda|cuda:N",
                        help="where the network runs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N",
                        help="images per forward pass; memory grows with it "
                             "(default: %(default)s)")
    parser.add_argument("--names-from", type=Path, default=None, metavar="EVENTS_OR_TSV",
                        help="events.tsv (stim_file or stimulus_name column) or a one-column "
                             "TSV naming the images to use; default: every image in "
                             "STIMULI_DIR, named by path without extension")


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``bids_decode features`` from parsed arguments; return the exit code (0)."""
    if getattr(args, "list_layers", False):
        print_layers(args.network, getattr(args, "preprocessing", "default"))
        return 0
    if args.stimuli_dir is None or args.out is None:
        raise UsageError("bids_decode features needs STIMULI_DIR and OUT (or --list-layers). "
                         "See 'bids_decode features --help'.")
    spec = get_network(args.network)  # usage errors before the images are listed
    get_preprocessing(spec, getattr(args, "preprocessing", "default"))
    resolve_layers(spec, args.layers)
    resolve_backend(args.device)
    if args.names_from is not None:
        names = read_names(args.names_from)
        paths = find_images(args.stimuli_dir, names)
    else:
        paths, names = discover_images(args.stimuli_dir)
    extract_features(
        paths,
        names,
        args.out,
        network=args.network,
        layers=args.layers,
        weights=args.weights,
        device=args.device,
        batch_size=args.batch_size,
        seed=args.seed,
        preprocessing=getattr(args, "preprocessing", "default"),
    )
    return 0
