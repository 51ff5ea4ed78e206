"""Layer capture by graph node name (torch.fx), streamed: one pass, each node handed on at once.

Node names are those of torchvision's feature extraction
(:func:`torchvision.models.feature_extraction.get_graph_node_names` in eval mode): the dotted
path of the module that runs an operation, plus the operation for functions (``flatten``,
``add``), with ``_1``, ``_2`` ... for repeats inside one module (``layer3.1.relu_1``). A name
may also be the path of a module that is not a leaf (``layer1``,
``encoder.layers.encoder_layer_2``): it stands for the last node run inside that module, its
output, as in :func:`~torchvision.models.feature_extraction.create_feature_extractor`.

:class:`GraphCapture` traces a model once (eval mode) and then runs the graph node by node
(:class:`torch.fx.Interpreter`): each requested node's value goes to a callback as soon as it
is computed (before any later in-place operation could change it), values are freed after
their last use, and the pass stops after the last requested node. :class:`ScriptCapture` does
the same for a TorchScript module, whose named outputs are its layers.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torchvision
from torch import fx, nn

from bids_decode.errors import UsageError

LOGGER = logging.getLogger(__name__)


class _Done(Exception):
    """Raised once every requested node has been handed on: the rest of the pass is skipped."""


def _leaf_modules() -> list[type]:
    """torchvision's operator modules (``torchvision.ops``): kept whole, as torchvision does."""
    return [obj for _, obj in inspect.getmembers(torchvision.ops)
            if inspect.isclass(obj) and issubclass(obj, nn.Module)]


def trace(model: nn.Module) -> tuple[fx.GraphModule, dict[fx.Node, str]]:
    """Trace ``model`` in eval mode; return the graph module and each node's name.

    Returns
    -------
    graph_module : torch.fx.GraphModule
    names : dict of torch.fx.Node to str
        Node -> torchvision feature-extraction node name, in execution order.

    Raises
    ------
    UsageError
        The model cannot be traced symbolically (data-dependent control flow).
    """
    from torchvision.models.feature_extraction import NodePathTracer

    training = model.training
    model.eval()
    tracer = NodePathTracer(autowrap_modules=(math, torchvision.ops),
                            leaf_modules=_leaf_modules())
    try:
        graph = tracer.trace(model)
    except Exception as err:  # fx raises many types for code it cannot follow
        raise UsageError(
            f"The network {type(model).__name__} cannot be traced by torch.fx "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}), so its "
            "layers cannot be named. Make its forward traceable (no control flow that depends "
            "on tensor values), or save a TorchScript module whose forward returns a dict "
            "{layer name: tensor} and pass that file as --network."
        ) from err
    finally:
        model.train(training)
    return fx.GraphModule(tracer.root, graph, type(model).__name__), dict(tracer.node_to_qualname)


def module_outputs(names: Iterable[str], modules: Iterable[str]) -> dict[str, str]:
    """Non-leaf module path -> the last node name inside it (the module's output).

    Parameters
    ----------
    names : iterable of str
        Node names in execution order.
    modules : iterable of str
        Module paths of the model (``named_modules``); the root ``""`` is ignored.
    """
    names = list(names)
    present = set(names)
    last: dict[str, str] = {}
    for name in names:
        parts = name.split(".")
        for depth in range(1, len(parts)):
            last[".".join(parts[:depth])] = name
    return {m: last[m] for m in modules if m and m in last and m not in present}


def resolve_node(query: str, names: list[str]) -> str | None:
    """The node a layer name stands for: itself, else the last node inside module ``query``."""
    if query in names:
        return query
    prefix = query + "."
    inside = [n for n in names if n.startswith(prefix)]
    return inside[-1] if inside else None


@dataclass
class GraphCapture:
    """A traced model that hands requested nodes to a callback during one forward pass.

    Parameters
    ----------
    model : torch.nn.Module
    layers : dict of str to str
        Layer name (the name written to the file) -> node name or module path.
    """

    model: nn.Module
    layers: dict[str, str]

    def __post_init__(self):
        self.graph_module, names = trace(self.model)
        order = list(names.values())
        by_name = {name: node for node, name in names.items()}
        self.targets: dict[fx.Node, list[str]] = {}
        missing = []
        for layer, query in self.layers.items():
            node = resolve_node(query, order)
            if node is None:
                missing.append(query)
                continue
            self.targets.setdefault(by_name[node], []).append(layer)
        if missing:
            modules = [m for m, _ in self.model.named_modules()]
            raise UsageError(
                f"Unknown layer(s) {', '.join(map(repr, missing))}: not a graph node or module "
                f"of {type(self.model).__name__}. {near_names_hint(missing, order, modules)}"
            )
        self.node_names = order

    def run(self, x: torch.Tensor, callback: Callable[[str, object], None]) -> None:
        """Run the model on ``x``; call ``callback(layer, value)`` for each requested layer.

        ``value`` is usually a tensor of shape (n_images, *unit_shape); it is valid during
        the call only (later in-place operations may change it): copy what you keep.
        """
        remaining = dict(self.targets)

        class _Streaming(fx.Interpreter):
            def run_node(self, node):
                value = super().run_node(node)
                layers = remaining.pop(node, None)
                if layers is not None:
                    for layer in layers:
                        callback(layer, value)
                    if not remaining:
                        raise _Done
                return value

        with torch.inference_mode():
            try:
                _Streaming(self.graph_module).run(x)
            except _Done:
                pass


@dataclass
class ScriptCapture:
    """Layers of a TorchScript module: the entries of its output.

    A forward that returns a dict of tensors gives one layer per key; a tuple or list gives
    ``output.0``, ``output.1`` ...; a single tensor gives ``output``.
    """

    model: nn.Module
    layers: dict[str, str]

    def run(self, x: torch.Tensor, callback: Callable[[str, object], None]) -> None:
        with torch.inference_mode():
            outputs = script_outputs(self.model(x))
        missing = [q for q in self.layers.values() if q not in outputs]
        if missing:
            raise UsageError(
                f"Layer(s) {', '.join(map(repr, missing))} are not outputs of the TorchScript "
                f"network; its outputs are {', '.join(outputs)}. Fix --layers."
            )
        for layer, query in self.layers.items():
            callback(layer, outputs[query])


def script_outputs(value) -> dict[str, object]:
    """Name the outputs of a TorchScript forward (see :class:`ScriptCapture`)."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return {f"output.{i}": v for i, v in enumerate(value)}
    return {"output": value}


def unit_shape_of(value) -> tuple | None:
    """Shape of one image's units in a layer's value (``value.shape[1:]``); None where the
    value is no tensor (shapes, sizes: not a layer)."""
    return tuple(value.shape[1:]) if isinstance(value, torch.Tensor) and value.ndim >= 1 else None


def script_shapes(model: nn.Module, size: tuple[int, int]) -> dict[str, tuple | None]:
    """Output name -> :func:`unit_shape_of` of a TorchScript module, from one forward pass of
    a blank image of ``size`` (height, width)."""
    height, width = size
    with torch.inference_mode():
        outputs = script_outputs(model(torch.zeros(1, 3, height, width)))
    return {name: unit_shape_of(v) for name, v in outputs.items()}


def near_names_hint(missing: list[str], names: list[str], modules: Iterable[str]) -> str:
    """Suggestions for layer names that are no node (nor module) of a network.

    Parameters
    ----------
    missing : list of str
    names : list of str
        The network's node names, in execution order.
    modules : iterable of str
        Its module paths.
    """
    import difflib

    pool = list(dict.fromkeys([*names, *module_outputs(names, modules)]))
    hints = []
    for query in missing[:3]:
        close = difflib.get_close_matches(query, pool, n=3, cutoff=0.6)
        if close:
            hints.append(f"For {query!r} did you mean {', '.join(close)}?")
    return " ".join([*hints, "List the valid names with 'bids_decode features --network NAME "
                     "--list-layers'."])


def layer_order(queries: Iterable[str], names: list[str]) -> dict[str, int]:
    """Execution position of the node each query stands for (for sorting layers)."""
    position = {n: i for i, n in enumerate(names)}
    out = {}
    for q in queries:
        node = resolve_node(q, names)
        out[q] = position.get(node, len(names)) if node else len(names)
    return out

