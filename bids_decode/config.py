"""The frozen run configuration, passed explicitly and saved next to the outputs."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError

#: Parameters that change decoding results; work files are keyed by them.
DECODING_KEYS = (
    "features",
    "n_voxels",
    "alpha",
    "train_session",
    "test_session",
    "task",
    "train_task",
    "derivatives",
    "stimulus_column",
    "hrf_shift",
    "dtype",
    "bold_source",
    "confounds",
    "space",
    "atlas",
    "n_permutations",
    "permutation_seed",
    "preprocessing",
    "sample_events",
    "train_average",
)


@dataclass(frozen=True)
class RunConfig:
    """Every parameter of one invocation (immutable).

    Saved as ``sub-<L>_task-<T>_config.json``; :meth:`from_json` reads it back so a run can be
    repeated exactly (``bids_decode --config FILE``).
    """

    bids_dir: str
    output_dir: str
    analysis_level: str
    participant_label: tuple[str, ...] = ()
    features: str | None = None
    layers: tuple[str, ...] = ()
    roi: tuple[str, ...] = ("VC",)
    n_voxels: int = 500
    alpha: float = 100.0
    train_session: str = "perceptionTraining*"
    test_session: str | None = None
    task: str = "perception"
    train_task: str = "perception"
    derivatives: tuple[str, ...] = ()
    atlas: str | None = None
    atlas_labels: str | None = None
    stimulus_column: str | None = None
    sample_events: tuple[str, ...] = ()
    train_average: bool = False
    hrf_shift: float = 3.0
    skip_bids_validation: bool = False
    work_dir: str | None = None
    nprocs: int = 0
    mem_gb: float = 4.0
    device: str = "cpu"
    dtype: str = "float32"
    network: str = "alexnet"
    stimuli_dir: str | None = None
    weights: str | None = None
    preprocessing: str = "default"
    unit_shard: tuple[int, int] = (1, 1)
    bold_source: str = "auto"
    assume_aligned: bool = False
    confounds: str | None = None
    space: str = "T1w"
    verbosity: int = 0
    reports_only: bool = False
    n_permutations: int = 1000
    permutation_seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.analysis_level not in ("participant", "group"):
            raise UsageError(
                f"analysis level must be 'participant' or 'group'; got {self.analysis_level!r}."
            )
        if self.n_voxels < 0:
            raise UsageError(f"--n-voxels must be >= 0 (0 = all voxels); got {self.n_voxels}.")
        if not self.alpha >= 0:
            raise UsageError(f"--alpha must be >= 0; got {self.alpha}.")
        if self.dtype not in ("float32", "float64"):
            raise UsageError(f"--dtype must be float32 or float64; got {self.dtype!r}.")
        i, n = self.unit_shard
        if not (n >= 1 and 1 <= i <= n):
            raise UsageError(f"--unit-shard must be i/N with 1 <= i <= N; got {i}/{n}.")
        from .backends import resolve_backend

        resolve_backend(self.device)  # a usage error for an unknown device
        if (self.atlas is None) != (self.atlas_labels is None):
            raise UsageError("--atlas and --atlas-labels go together (an atlas image and its "
                             "TSV table with columns index and name).")
        if self.n_permutations < 0:
            raise UsageError(f"--n-permutations must be >= 0 (0 = no permutation tests); got "
                             f"{self.n_permutations}.")
        if self.preprocessing not in ("default", "torchvision"):
            raise UsageError("--preprocessing must be default or torchvision; got "
                             f"{self.preprocessing!r}.")
        if self.mem_gb <= 0:
            raise UsageError(f"--mem must be positive (GB); got {self.mem_gb}.")
        self.sample_events_for("train")  # refuses a malformed --sample-events

    def sample_events_for(self, split: str):
        """``--sample-events`` for the 'train' or 'test' runs: (column, values) or None."""
        from .events import parse_sample_events

        return parse_sample_events(self.sample_events).get(split)

    @property
    def test_session_glob(self) -> str:
        """--test-session, else the task's default (perceptionTest*, imageryTest*, *)."""
        from .layout import task_defaults

        return self.test_session or task_defaults(self.task)["session"]

    @property
    def derivative_paths(self) -> dict[str, str]:
        out = {}
        for item in self.derivatives:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise UsageError(f"-d/--derivatives takes NAME=PATH (e.g. fmriprep=/data/fp); "
                                 f"got {item!r}.")
            out[name] = path
        return out

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
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(names)
        if unknown:
            raise UsageError(f"Unknown keys in the run configuration: {sorted(unknown)}.")
        kw = {}
        for k, v in d.items():
            if isinstance(v, list):
                v = tuple(v)
            kw[k] = v
        return cls(**kw)

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
        from .backends import resolve_backend

        resolve_backend(self.device).check_available()

    def decoding_fingerprint(self) -> dict:
        return {k: getattr(self, k) for k in DECODING_KEYS}
