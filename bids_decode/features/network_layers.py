"""A network's layers: their names, their order, their unit shapes, and capturing them.

A layer name is a paper name of the registry (``conv1`` ... ``fc8``), a graph node name, or
the path of a module whose output is wanted (:mod:`bids_decode.features.graphs`); a
TorchScript network's layers are its named outputs. :func:`resolve_layers` checks requested
names and puts them in forward order, :func:`unit_shapes` and :func:`list_layers` give the
shape of each layer without computing anything (PyTorch's ``meta`` device), and
:func:`make_capture` hands each layer of a forward pass on as soon as it is computed.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from bids_decode.errors import UsageError
from bids_decode.features import graphs
from bids_decode.features.networks import NetworkSpec, get_network

LOGGER = logging.getLogger(__name__)


def node_of(spec: NetworkSpec, layer: str) -> str:
    """The node or module path that layer name ``layer`` stands for (paper names mapped)."""
    return spec.layers.get(layer, layer)


def default_layer_names(spec: NetworkSpec) -> list[str]:
    """The layers extracted when ``--layers`` is not given."""
    if spec.default_layers is None:
        return list(spec.layers)
    model, _ = _shape_model(spec) if spec.source != "torchscript" else (spec.build(), None)
    return list(spec.default_layers(model))


def resolve_layers(spec: NetworkSpec, layers: Iterable[str] | None) -> list[str]:
    """Validate requested layer names; return them in forward order (the defaults when None).

    A name is a paper layer name of ``spec.layers``, a graph node name, or the path of a
    module whose output is wanted (see :mod:`bids_decode.features.graphs`); a TorchScript network's
    names are its outputs.

    Parameters
    ----------
    spec : NetworkSpec
    layers : iterable of str or None

    Returns
    -------
    list of str
        Unique layer names, in the network's forward order.
    """
    if layers is None:
        return default_layer_names(spec)
    requested = list(dict.fromkeys(layers))
    if not requested:
        raise UsageError(f"--layers names no layer for network {spec.name!r}. Give layer names, "
                         "or leave --layers out for the default layers.")
    if all(name in spec.layers for name in requested):  # paper names only: paper order
        return [name for name in spec.layers if name in set(requested)]
    if spec.source == "torchscript":
        outputs = default_layer_names(spec)
        unknown = [n for n in requested if n not in outputs]
        if unknown:
            raise UsageError(
                f"Unknown layer(s) {', '.join(map(repr, unknown))} for the TorchScript network "
                f"{spec.name}: its outputs are {', '.join(outputs)}. Fix --layers."
            )
        return [n for n in outputs if n in set(requested)]
    names, modules = _node_names(spec)
    names = list(names)
    unknown = [n for n in requested if graphs.resolve_node(node_of(spec, n), names) is None]
    if unknown:
        paper = (f"expected a non-empty subset of {', '.join(spec.layers)}, or graph node names. "
                 if spec.layers else "not a graph node or module of the network. ")
        raise UsageError(
            f"Unknown layer(s) {', '.join(map(repr, unknown))} for network {spec.name!r}: "
            + paper + graphs.near_names_hint(unknown, names, modules)
        )
    order = graphs.layer_order([node_of(spec, n) for n in requested], names)
    return sorted(requested, key=lambda n: order[node_of(spec, n)])


def make_capture(spec: NetworkSpec, model: nn.Module, layers: list[str]):
    """A capture of ``layers`` of ``model`` (:class:`bids_decode.features.graphs.GraphCapture`, or
    :class:`~bids_decode.features.graphs.ScriptCapture` for TorchScript)."""
    nodes = {name: node_of(spec, name) for name in layers}
    if spec.source == "torchscript":
        return graphs.ScriptCapture(model, nodes)
    return graphs.GraphCapture(model, nodes)


def run_layers(
    model: nn.Module,
    x: torch.Tensor,
    nodes: dict[str, str],
    callback: Callable[[str, torch.Tensor], None],
) -> None:
    """Run ``model`` on ``x`` once and hand each requested layer's output to ``callback``.

    Each layer goes to ``callback(layer_name, output)`` as soon as it is computed, so the
    caller can write it out before the next layer runs; the pass stops after the last
    requested layer (:class:`bids_decode.features.graphs.GraphCapture`, which traces ``model`` on
    each call: keep a capture to run many batches). ``output`` may be modified in place later (ReLU
    runs in place): the callback must copy what it keeps.

    Parameters
    ----------
    model : torch.nn.Module
    x : tensor of shape (n_images, 3, height, width)
    nodes : dict of str to str
        Layer name -> node name or module path (``NetworkSpec.layers`` restricted to the
        requested ones).
    callback : callable (str, tensor of shape (n_images, *unit_shape)) -> None
    """
    graphs.GraphCapture(model, dict(nodes)).run(x, callback)


def unit_shapes(spec: NetworkSpec, layers: Iterable[str] | None = None,
                size: tuple[int, int] | None = None) -> dict[str, tuple]:
    """Shape of one image's units in each layer.

    The network is built on PyTorch's ``meta`` device, which propagates shapes only (on the
    CPU with random weights where it cannot be built there).

    Parameters
    ----------
    spec : NetworkSpec
    layers : iterable of str or None
        Default: the default layers.
    size : (height, width), optional
        Input size; default that of ``spec.preprocessing``.

    Returns
    -------
    dict of str to tuple of int
        Layer name -> ``unit_shape``: ``(C, H, W)`` for conv layers, ``(T, D)`` for token
        sequences, ``(n_units,)`` for vectors.
    """
    names = resolve_layers(spec, layers)
    height, width = size or spec.preprocessing.size
    if spec.source == "torchscript":
        shapes = graphs.script_shapes(spec.build(), (height, width))
        return {name: shapes[name] for name in names}
    model, device = _shape_model(spec)
    shapes: dict[str, tuple] = {}
    graphs.GraphCapture(model, {name: node_of(spec, name) for name in names}).run(
        torch.zeros(1, 3, height, width, device=device),
        lambda name, out: shapes.__setitem__(name, graphs.unit_shape_of(out)),
    )
    return {name: shapes[name] for name in names}


@dataclass(frozen=True)
class LayerRow:
    """One line of ``bids_decode features --list-layers``.

    Attributes
    ----------
    name : str
        Node name, module path (output of a module: ``of`` is its last node) or paper name.
    unit_shape : tuple of int or None
        None where the node's value is not a tensor (shapes, sizes): not a layer.
    of : str
        The node a module path or paper name stands for ("" for a node).
    default : bool
        Extracted when ``--layers`` is not given.
    """

    name: str
    unit_shape: tuple | None
    of: str = ""
    default: bool = False

    @property
    def n_units(self) -> int | None:
        return None if self.unit_shape is None else int(math.prod(self.unit_shape))


def list_layers(spec: NetworkSpec, size: tuple[int, int] | None = None) -> list[LayerRow]:
    """Every layer name of ``spec`` with its unit shape, in execution order.

    One forward pass of a dummy image at ``size`` (default: the default preprocessing's),
    on the meta device where possible, else on the CPU with random weights.

    Returns
    -------
    list of LayerRow
        Paper names first (registry networks), then each graph node, each non-leaf module's
        path right after its last node (TorchScript: the outputs).
    """
    height, width = size or spec.preprocessing.size
    defaults = set(default_layer_names(spec))
    if spec.source == "torchscript":
        shapes = graphs.script_shapes(spec.build(), (height, width))
        return [LayerRow(n, s, default=n in defaults) for n, s in shapes.items()]
    model, device = _shape_model(spec)
    names = list(_node_names(spec)[0])
    shapes: dict[str, tuple | None] = {}
    capture = graphs.GraphCapture(model, {n: n for n in names})
    capture.run(torch.zeros(1, 3, height, width, device=device),
                lambda name, out: shapes.__setitem__(name, graphs.unit_shape_of(out)))
    modules = graphs.module_outputs(names, (m for m, _ in model.named_modules()))
    after: dict[str, list[str]] = {}
    for module, last in modules.items():
        after.setdefault(last, []).append(module)
    rows = [LayerRow(p, shapes.get(node), node, p in defaults) for p, node in spec.layers.items()]
    for name in names:
        rows.append(LayerRow(name, shapes.get(name), "", name in defaults))
        for module in sorted(after.get(name, []), key=lambda m: -m.count(".")):
            rows.append(LayerRow(module, shapes.get(name), name, module in defaults))
    return rows


def _shape_model(spec: NetworkSpec) -> tuple[nn.Module, torch.device]:
    """``spec``'s network for shape inference: on the meta device where it can be built there
    (no memory, no arithmetic), else on the CPU with seeded random weights."""
    try:
        with torch.device("meta"):
            model = spec.build()
        return model.eval(), torch.device("meta")
    except UsageError:
        raise
    except Exception:  # noqa: BLE001 - some builders compute values at init (regnet)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = spec.build()
        return model.eval(), torch.device("cpu")


def _node_names(spec: NetworkSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(node names in execution order, module paths) of a traced network."""
    return _node_names_of(spec.name)


@functools.lru_cache(maxsize=8)
def _node_names_of(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    model, _ = _shape_model(get_network(name))
    _, names = graphs.trace(model)
    return tuple(names.values()), tuple(m for m, _ in model.named_modules())
