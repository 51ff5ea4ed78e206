"""The frozen run configuration: every parameter declared once, saved next to the outputs.

Each field of :class:`RunConfig` is declared once, with :func:`param`: its section, its
command-line flags and argparse settings, its help, whether it enters the work-file fingerprint,
whether it must match across subjects at the group level, its name in the ROI sidecars, and the
check of its value. Everything else is derived from these declarations:

- the parser (:func:`bids_decode.cli.build_parser` loops over :data:`PARAMS`, one argument group
  per :data:`SECTIONS` entry) and :meth:`RunConfig.from_namespace`;
- the work-file fingerprint (:data:`DECODING_KEYS`, :meth:`RunConfig.decoding_fingerprint`);
- the group-level consistency keys (:func:`group_keys`);
- the parameter entries of the ROI sidecars (:meth:`RunConfig.sidecar_params`) and the values the
  methods text quotes (:func:`quoted`).

So a new parameter is one declaration plus its use. The dataclass stays flat (``config.alpha``)
and its JSON stays one flat object, so saved ``*_config.json`` files of earlier runs stay
readable.
"""

# long: the declarations of every run parameter are this file's one topic, and they are meant
# to be read in one place (the machinery that derives the parser and key lists is 150 lines)

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import NamedTuple

from bids_decode.backends import resolve_backend
from bids_decode.errors import UsageError
from bids_decode.inputs.events import parse_sample_events
from bids_decode.inputs.layout import task_defaults


class Section(NamedTuple):
    """A group of parameters: its title in ``--help``, and whether its parameters enter the
    work-file fingerprint unless they say otherwise (see :attr:`Param.fingerprint`)."""

    title: str
    keyed: bool


#: The sections, in the order of ``--help``.
SECTIONS = {
    "inputs": Section("inputs", keyed=False),
    "features": Section("features", keyed=False),
    "decoding": Section("decoding", keyed=True),
    "statistics": Section("statistics", keyed=True),
    "encoding": Section("voxel-wise encoding models", keyed=False),
    "group": Section("group level: networks compared, brain hierarchy score", keyed=False),
    "execution": Section("resources and logging", keyed=False),
}

#: How a parameter is compared between subjects at the group level.
GROUP_MODES = ("", "config", "config+sidecar")


@dataclass(frozen=True)
class Param:
    """The declaration of one :class:`RunConfig` field (see :func:`param`).

    Attributes
    ----------
    section : str
        A key of :data:`SECTIONS`.
    flags : tuple of str
        Command-line spellings; the first long one also gets its underscore twin
        (``--n-voxels`` and ``--n_voxels``). A name without a dash is a positional argument;
        none: not on the command line.
    help : str
        The ``--help`` text.
    cli : dict
        Further ``add_argument`` settings (type, nargs, choices, metavar, action, default when
        the command line's default differs from the field's).
    fingerprint : bool, str or None
        True: the value enters the work-file fingerprint (results depend on it; work files made
        with another value are not reused). False: it does not. A string: it does not, and says
        where the value is keyed instead (required to opt a field of a keyed section out).
        None: the section's default.
    group : str
        '' (subjects may differ), 'config' (their run configurations must agree) or
        'config+sidecar' (their run configurations and every ROI sidecar must agree).
    sidecar : str
        Name of the entry in each ROI sidecar ('' = not written there).
    sidecar_from : str
        Attribute whose value the sidecar records, when not the field itself (e.g. the resolved
        ``test_session_glob``).
    check : callable or None
        ``check(value)`` raises :class:`UsageError` for a bad value; run when the option is
        parsed and again in ``RunConfig.__post_init__`` (configs built in Python or read from
        JSON).
    name, default
        Filled in from the dataclass field.
    """

    section: str
    flags: tuple[str, ...] = ()
    help: str = ""
    cli: Mapping = field(default_factory=dict)
    fingerprint: bool | str | None = None
    group: str = ""
    sidecar: str = ""
    sidecar_from: str = ""
    check: Callable | None = None
    name: str = ""
    default: object = None

    @property
    def keyed(self) -> bool:
        """Whether the value enters the work-file fingerprint."""
        if self.fingerprint is None:
            return SECTIONS[self.section].keyed
        return self.fingerprint is True

    @property
    def option_strings(self) -> list[str]:
        """The argparse names: the flags, with the underscore twin of the first long one."""
        first, *more = self.flags
        twin = "--" + first[2:].replace("-", "_") if first.startswith("--") else first
        return [first] + ([twin] if twin != first else []) + more


def param(default, section: str, /, *flags: str, help: str = "", fingerprint=None, group: str = "",
          sidecar: str = "", sidecar_from: str = "", check: Callable | None = None, **cli):
    """Declare a :class:`RunConfig` field (a dataclass field carrying its :class:`Param`).

    ``default`` is the field's default (``MISSING``: required); ``cli`` holds the other
    ``add_argument`` settings. See :class:`Param` for the rest.
    """
    if section not in SECTIONS or group not in GROUP_MODES:
        raise ValueError(f"bad declaration: section {section!r}, group {group!r}")
    meta = {"param": Param(section, flags, help, cli, fingerprint, group, sidecar,
                           sidecar_from, check)}
    return field(default=default, metadata=meta)


def require(test: Callable, message: str) -> Callable:
    """A :attr:`Param.check`: refuse a value ``v`` for which ``test(v)`` is false, with
    ``message.format(v=v)``."""

    def check(value) -> None:
        if not test(value):
            raise UsageError(message.format(v=value))

    return check


def parse_shard(text: str) -> tuple[int, int]:
    """``--unit-shard i/N`` -> (i, N) (an argparse ``type``)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected i/N (e.g. 2/8), got {text!r}") from err
    return i, n


def _check_device_name(device: str) -> None:
    """A usage error for a device string no backend takes (:func:`backends.resolve_backend`)."""
    resolve_backend(device)


def _check_derivatives(items) -> None:
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"-d/--derivatives takes NAME=PATH (e.g. fmriprep=/data/fp); "
                             f"got {item!r}.")


def _check_sample_events(items) -> None:
    parse_sample_events(items)  # refuses a malformed --sample-events


def _plain(value):
    """A parsed or JSON value as the frozen config holds it (lists -> tuples, paths -> str)."""
    if isinstance(value, list):
        return tuple(value)
    return str(value) if isinstance(value, Path) else value


@dataclass(frozen=True)
class RunConfig:
    """Every parameter of one invocation (immutable), each declared once with :func:`param`.

    Saved as ``sub-<L>_task-<T>_config.json``; :meth:`from_json` reads it back so a run can be
    repeated exactly (``bids_decode --config FILE``).
    """

    # ------------------------------------------------------------------------------- inputs
    bids_dir: str = param(MISSING, "inputs", "bids_dir", type=Path,
                          help="the input BIDS dataset")
    output_dir: str = param(MISSING, "inputs", "output_dir", type=Path,
                            help="where the derivatives are written")
    analysis_level: str = param(
        MISSING, "inputs", "analysis_level", choices=["participant", "group"],
        check=require(lambda v: v in ("participant", "group"),
                      "analysis level must be 'participant' or 'group'; got {v!r}."),
        help="participant: decode subjects; group: compare subjects' outputs")
    participant_label: tuple[str, ...] = param(
        (), "inputs", "--participant-label", nargs="+", metavar="LABEL",
        help="subjects to process, with or without 'sub-' (default: all)")
    task: str = param("perception", "inputs", "--task", fingerprint=True,
                      help="BIDS task label (default: perception)")
    train_session: str = param(
        "perceptionTraining*", "inputs", "--train-session", metavar="GLOB", fingerprint=True,
        group="config+sidecar", sidecar="TrainSession",
        help="sessions whose runs train the decoders (default: perceptionTraining*)")
    test_session: str | None = param(
        None, "inputs", "--test-session", metavar="GLOB", fingerprint=True,
        group="config+sidecar", sidecar="TestSession", sidecar_from="test_session_glob",
        help="sessions whose runs test them (default: perceptionTest* for --task perception, "
             "imageryTest* for --task imagery)")
    train_task: str = param(
        "perception", "inputs", "--train-task", fingerprint=True, sidecar="TrainTask",
        help="task of the training runs (default: perception; --task imagery decodes imagery "
             "with decoders trained on perception)")
    bold_source: str = param(
        "auto", "inputs", "--bold-source", metavar="auto|raw|preproc-spm|fmriprep|PATH",
        fingerprint=True, group="config", sidecar="BoldSource",
        help="BOLD runs: raw BIDS runs, ds001246's derivatives/preproc-spm/output, fMRIPrep "
             "derivatives (-d fmriprep=PATH; full or --level minimal outputs), a "
             "derivatives folder, or bdata=PATH: the authors' BData .h5 ('{subject}' = label) "
             "(default auto: preproc-spm where the dataset has derivatives/preproc-spm, else "
             "raw)")
    assume_aligned: bool = param(
        False, "inputs", "--assume-aligned", action="store_true",
        help="the runs are known to be in the masks' space: do not refuse raw runs whose "
             "grids differ from each other or from the masks' (they are resampled through "
             "their affines)")
    derivatives: tuple[str, ...] = param(
        (), "inputs", "--derivatives", "-d", nargs="+", metavar="NAME=PATH", fingerprint=True,
        check=_check_derivatives,
        help="derivative folders, e.g. fmriprep=/data/derivatives/fmriprep")
    space: str = param("T1w", "inputs", "--space", fingerprint=True, group="config",
                       help="fMRIPrep output space (default T1w)")
    confounds: str | None = param(
        None, "inputs", "--confounds", metavar="SET|COLS", fingerprint=True, group="config",
        sidecar="Confounds",
        help="confounds regressed out of each run (fMRIPrep): motion6, motion6+wm+csf, or "
             "comma-separated column names")
    stimulus_column: str | None = param(
        None, "inputs", "--stimulus-column", metavar="COLUMN", fingerprint=True,
        group="config",
        help="events column naming the image (default: stim_file if present, else "
             "stimulus_name)")
    sample_events: tuple[str, ...] = param(
        (), "inputs", "--sample-events", nargs="+", metavar="[train:|test:]COLUMN=VALUE",
        fingerprint=True, check=_check_sample_events,
        help="events rows that are samples, where the convention is not detected (e.g. "
             "event_type=1; train:/test: for one side only). Default: detected per file "
             "(ds001246 strings, Kamitani-lab numeric codes, events.json Levels)")
    train_average: bool = param(
        False, "inputs", "--train-average", action="store_true", fingerprint=True,
        help="average the training trials of each image (default: every trial is a sample)")
    hrf_shift: float = param(
        3.0, "inputs", "--hrf-shift", type=float, metavar="SECONDS", fingerprint=True,
        group="config+sidecar", sidecar="HaemodynamicShift",
        help="haemodynamic delay applied to the blocks (default: 3 s, one TR of ds001246)")
    skip_bids_validation: bool = param(
        False, "inputs", "--skip-bids-validation", action="store_true",
        help="do not run the BIDS validator on BIDS_DIR")
    strict_validation: bool = param(
        False, "inputs", "--strict-validation", action="store_true",
        help="stop on any error of the BIDS validator (default: stop only for errors in the "
             "files the run reads; other findings are warnings)")
    list_inputs: bool = param(
        False, "inputs", "--list-inputs", action="store_true",
        help="print the files the participant level would read (one path per line, relative "
             "to BIDS_DIR; e.g. for 'datalad get') and exit; nothing is written")
    # ----------------------------------------------------------------------------- features
    features: str | None = param(
        None, "features", "--features", metavar="FILE", fingerprint=True,
        help="precomputed stimulus features (HDF5, see docs/formats.md)")
    layers: tuple[str, ...] = param(
        (), "features", "--layers", nargs="+", metavar="NAME", group="config",
        help="layers to decode (default: every layer in the features)")
    network: str = param(
        "alexnet", "features", "--network", sidecar="Network",
        help="network for feature extraction when --features is not given: alexnet, vgg19, "
             "caffe-alexnet, any torchvision classification model, package.module:function "
             "or a TorchScript file (docs/features.md). The network names the outputs "
             "(net-<N>, docs/outputs.md): a features file's 'network' attribute, else this")
    preprocessing: str = param(
        "default", "features", "--preprocessing", choices=["default", "torchvision"],
        fingerprint=True,
        check=require(lambda v: v in ("default", "torchvision"),
                      "--preprocessing must be default or torchvision; got {v!r}."),
        help="image preprocessing for feature extraction: default (whole image resized, "
             "ImageNet mean/std) or torchvision (the network's weights' transforms)")
    stimuli_dir: str | None = param(None, "features", "--stimuli-dir", metavar="DIR",
                                    help="stimulus images (default: BIDS_DIR/stimuli)")
    weights: str | None = param(
        None, "features", "--weights", metavar="FILE|random",
        help="network weights (state_dict); default: torchvision's cache")
    # ----------------------------------------------------------------------------- decoding
    roi: tuple[str, ...] = param(
        ("VC",), "decoding", "--roi", nargs="+", metavar="NAME[=PATH]",
        fingerprint="the ROI's name is in the work-file name, its voxels in the ROI digest",
        help="ROIs: V1 V2 V3 V4 LOC FFA PPA LVC HVC VC, or NAME=PATH to a mask "
             "('{subject}' in PATH is replaced by the label) (default: VC)")
    atlas: str | None = param(
        None, "decoding", "--atlas", metavar="IMAGE",
        help="atlas image whose labels can be named with --roi ('{subject}' allowed)")
    atlas_labels: str | None = param(
        None, "decoding", "--atlas-labels", metavar="TSV",
        fingerprint="the voxels its labels select are in the ROI digest",
        help="labels table of --atlas (columns: index, name)")
    n_voxels: int = param(
        500, "decoding", "--n-voxels", type=int, metavar="N", group="config",
        check=require(lambda v: v >= 0, "--n-voxels must be >= 0 (0 = all voxels); got {v}."),
        help="voxels selected per unit (default 500; 0 = all)")
    alpha: float = param(
        100.0, "decoding", "--alpha", type=float, group="config+sidecar", sidecar="Alpha",
        check=require(lambda v: v >= 0, "--alpha must be >= 0; got {v}."),
        help="L2 penalty (default 100)")
    dtype: str = param(
        "float32", "decoding", "--dtype", choices=["float32", "float64"],
        group="config+sidecar", sidecar="Precision",
        check=require(lambda v: v in ("float32", "float64"),
                      "--dtype must be float32 or float64; got {v!r}."),
        help="precision of the solver (default float32)")
    units_per_layer: int = param(
        0, "decoding", "--units-per-layer", type=int, metavar="N", group="config+sidecar",
        sidecar="UnitsPerLayer",
        check=require(lambda v: v >= 0, "--units-per-layer must be >= 0 (0 = every unit); "
                                        "got {v}."),
        help="decode N randomly chosen units per layer (the same for every subject, ROI and "
             "shard; their indices are kept in the outputs), as the lab's feature decoding "
             "and BH score do with 1000 (default 0 = every unit)")
    unit_seed: int = param(
        0, "decoding", "--unit-seed", type=int, metavar="SEED", group="config+sidecar",
        sidecar="UnitSeed",
        help="seed of the units of --units-per-layer, and at the group level of the BH "
             "score's units of outputs that hold every unit (default 0; recorded)")
    # --------------------------------------------------------------------------- statistics
    n_permutations: int = param(
        1000, "statistics", "--n-permutations", type=int, metavar="N",
        check=require(lambda v: v >= 0, "--n-permutations must be >= 0 (0 = no permutation "
                                        "tests); got {v}."),
        help="permutations of the test images for each unit's p-value, FDR q-value and "
             "max-statistic FWER p-value (default 1000; 0 = off)")
    permutation_seed: int = param(
        0, "statistics", "--permutation-seed", type=int, metavar="SEED",
        help="seed of the permutations (default 0; recorded in the outputs)")
    # ----------------------------------------------------------------------------- encoding
    encoding: bool = param(
        False, "encoding", "--encoding", action="store_true", group="config",
        help="also fit voxel-wise encoding models: each voxel of each ROI predicted from each "
             "layer (the units most correlated with the voxel, then ridge), scored per voxel; "
             "writes *_encoding.h5, brain maps and the encoding half of the BH score "
             "(docs/outputs.md)")
    encoding_n_units: int = param(
        500, "encoding", "--encoding-n-units", type=int, metavar="N", group="config",
        fingerprint="the encoding work files' digest (outputs.work_files.encoding_work_file)",
        check=require(lambda v: v >= 0, "--encoding-n-units must be >= 0 (0 = all units); "
                                        "got {v}."),
        help="units selected per voxel by the encoding models (default 500; 0 = all)")
    encoding_alpha: float = param(
        100.0, "encoding", "--encoding-alpha", type=float, group="config",
        fingerprint="the encoding work files' digest (outputs.work_files.encoding_work_file)",
        check=require(lambda v: v >= 0, "--encoding-alpha must be >= 0; got {v}."),
        help="L2 penalty of the encoding models (default 100)")
    # -------------------------------------------------------------------------------- group
    bh_layers: tuple[str, ...] = param(
        (), "group", "--bh-layers", nargs="+", metavar="LAYER",
        help="layers of the brain hierarchy score, in hierarchy order (default: the paper's "
             "list for a network the app knows, else every decoded layer in the features "
             "file's order)")
    bh_test: str = param(
        "permutation", "group", "--bh-test", choices=["permutation", "paper"],
        check=require(lambda v: v in ("permutation", "paper"),
                      "--bh-test must be permutation or paper; got {v!r}."),
        help="which units count in the BH score: permutation (the best ROI's permutation p, "
             "Bonferroni-corrected over the 5 ROIs, < 0.05) or paper (KamitaniLab/BHscore's "
             "parametric test as coded; docs/outputs.md)")
    bh_units: int = param(
        1000, "group", "--bh-units", type=int, metavar="N",
        check=require(lambda v: v >= 1, "--bh-units must be >= 1; got {v}."),
        help="units per layer drawn (with --unit-seed) for the BH score from outputs that hold "
             "every unit (default 1000; outputs of --units-per-layer use their own units); also "
             "the voxels per (subject, ROI) drawn (with --bh-seed) for its encoding half")
    bh_seed: int = param(
        0, "group", "--bh-seed", type=int, metavar="SEED",
        help="seed of the BH score's layer draws and bootstrap (default 0; recorded)")
    # ---------------------------------------------------------------------------- execution
    device: str = param(
        "cpu", "execution", "--device",
        check=_check_device_name,
        help="cpu or cuda (default cpu)")
    unit_shard: tuple[int, int] = param(
        (1, 1), "execution", "--unit-shard", type=parse_shard, metavar="i/N",
        check=require(lambda v: v[1] >= 1 and 1 <= v[0] <= v[1],
                      "--unit-shard must be i/N with 1 <= i <= N; got {v[0]}/{v[1]}."),
        help="decode the i-th of N unit shards (SLURM arrays); outputs are written when all "
             "shards are done")
    work_dir: str | None = param(
        None, "execution", "--work-dir", "-w", metavar="DIR",
        help="intermediate results, reused by reruns (default OUTPUT_DIR/.bids_decode_work)")
    nprocs: int = param(
        0, "execution", "--nprocs", "--n-cpus", type=int, default=None,
        help="CPU threads (default: SLURM_CPUS_PER_TASK in a SLURM job, else the CPUs this "
             "process may use, within its cgroup's quota)")
    mem_gb: float = param(
        4.0, "execution", "--mem", "--mem-gb", type=float, default=None, metavar="GB",
        check=require(lambda v: v > 0, "--mem must be positive (GB); got {v}."),
        help="memory budget in GB (default: the SLURM allocation or cgroup limit less 1 GB, "
             "else 4)")
    reports_only: bool = param(False, "execution", "--reports-only", action="store_true",
                               help="only regenerate reports from existing outputs")
    verbosity: int = param(0, "execution", help="log verbosity (-v minus -q)")
    #: Not a parameter: what the run found out (its resources), saved with the config.
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for p in PARAMS:
            if p.check is not None:
                p.check(getattr(self, p.name))
        if (self.atlas is None) != (self.atlas_labels is None):
            raise UsageError("--atlas and --atlas-labels go together (an atlas image and its "
                             "TSV table with columns index and name).")

    def sample_events_for(self, split: str):
        """``--sample-events`` for the 'train' or 'test' runs: (column, values) or None."""
        return parse_sample_events(self.sample_events).get(split)

    @property
    def test_session_glob(self) -> str:
        """--test-session, else the task's default (perceptionTest*, imageryTest*, *)."""
        return self.test_session or task_defaults(self.task)["session"]

    @property
    def derivative_paths(self) -> dict[str, str]:
        """``-d NAME=PATH`` as {name: path}."""
        _check_derivatives(self.derivatives)
        return dict(item.split("=", 1) for item in self.derivatives)

    @property
    def work_path(self) -> Path:
        if self.work_dir:
            return Path(self.work_dir)
        return Path(self.output_dir) / ".bids_decode_work"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise UsageError(f"Unknown keys in the run configuration: {sorted(unknown)}.")
        return cls(**{k: _plain(v) for k, v in d.items()})

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace, **given) -> RunConfig:
        """The config from parsed arguments: every declared option, then ``given`` (values
        the command line does not hold as such, e.g. resolved resources)."""
        kw = {p.name: _plain(getattr(ns, p.name)) for p in PARAMS if p.flags}
        return cls(**(kw | given))

    @classmethod
    def from_json(cls, path) -> RunConfig:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UsageError(f"Cannot read the run configuration {path}: {err}.") from err
        d.pop("provenance", None)
        return cls.from_dict(d)

    def replace(self, **kw) -> RunConfig:
        return dataclasses.replace(self, **kw)

    def check_device(self) -> None:
        """Refuse --device cuda where no GPU is visible, and a bad BIDS_DECODE_LAPACK (before
        any work is done)."""
        resolve_backend(self.device).check_available()

    def decoding_fingerprint(self) -> dict:
        """The values of :data:`DECODING_KEYS` (work files are keyed by a digest of them)."""
        return {k: getattr(self, k) for k in DECODING_KEYS}

    def encoding_fingerprint(self) -> dict:
        """What encoding work files are keyed by: the decoding keys (samples, shift,
        precision, permutations) and the encoding model's parameters."""
        return self.decoding_fingerprint() | {
            k: getattr(self, k) for k in ("encoding_n_units", "encoding_alpha")}

    def sidecar_params(self) -> dict:
        """The parameter entries of each ROI sidecar, {sidecar name: value}."""
        return {p.sidecar: getattr(self, p.sidecar_from or p.name) for p in PARAMS if p.sidecar}


def _declared(f: dataclasses.Field) -> Param:
    return dataclasses.replace(f.metadata["param"], name=f.name, default=f.default)


#: Every declared parameter, in declaration order.
PARAMS: tuple[Param, ...] = tuple(
    _declared(f) for f in dataclasses.fields(RunConfig) if "param" in f.metadata)
#: The declarations by field name.
PARAMS_BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}
#: Parameters that change decoding results; work files are keyed by them.
DECODING_KEYS: tuple[str, ...] = tuple(p.name for p in PARAMS if p.keyed)


def group_keys(where: str) -> tuple[str, ...]:
    """Entries that must be equal across subjects at the group level.

    Parameters
    ----------
    where : {'config', 'sidecar'}
        'config': field names compared in the subjects' run configurations; 'sidecar': entry
        names compared in every ROI sidecar.
    """
    if where == "config":
        return tuple(p.name for p in PARAMS if p.group)
    return tuple(p.sidecar for p in PARAMS if p.group == "config+sidecar")


def sidecar_entries(sidecar: Mapping, *names: str) -> dict:
    """The ROI-sidecar entries of the named parameters, copied from ``sidecar`` (None where
    absent), under their declared sidecar names."""
    return {PARAMS_BY_NAME[n].sidecar: sidecar.get(PARAMS_BY_NAME[n].sidecar) for n in names}


def quoted(config: Mapping, sidecar: Mapping, name: str, missing="?"):
    """A parameter's value as a report quotes it: the ROI sidecar's entry, else the saved run
    configuration's, else ``missing``."""
    p = PARAMS_BY_NAME[name]
    if p.sidecar and p.sidecar in sidecar:
        return sidecar[p.sidecar]
    return config.get(name, missing)
