"""The ``bids_decode features`` subcommand: its arguments, and running it.

:func:`add_arguments` and :func:`run_from_args` are what :mod:`bids_decode.cli` calls; the
work is :func:`bids_decode.features.extract.extract_features` on the images of
:mod:`bids_decode.features.stimuli`, or, with ``--list-layers``, :func:`print_layers`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bids_decode.backends import resolve_backend
from bids_decode.errors import UsageError
from bids_decode.features.extract import extract_features
from bids_decode.features.image_preprocessing import PREPROCESSING_CHOICES
from bids_decode.features.network_layers import list_layers, resolve_layers
from bids_decode.features.networks import get_network, get_preprocessing
from bids_decode.features.stimuli import discover_images, find_images, read_names

LOGGER = logging.getLogger(__name__)


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


def print_layers(network: str, preprocessing: str = "default", file=None) -> None:
    """Print every layer name of ``network`` with its unit count (``--list-layers``).

    One line per name: name, number of units, unit shape, then ``*`` for a default layer
    and ``= NODE`` where the name stands for another node (a module's output, a paper name).
    Names whose value is no tensor show ``-``.
    """
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
