"""Command line: ``bids_decode BIDS_DIR OUTPUT_DIR participant|group [options]``.

Also ``bids_decode simulate OUT_DIR`` (a ds001246-shaped dataset with a planted truth) and
``bids_decode features STIMULI_DIR OUT.h5`` (DNN features of the stimulus images) and
``bids_decode slurm BIDS_DIR OUTPUT_DIR JOBS_DIR`` (SLURM job files, :mod:`bids_decode.slurm`).

Exit codes: see :mod:`bids_decode.errors`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from pathlib import Path

from ._version import __version__
from .config import RunConfig
from .errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    BidsDecodeError,
    UsageError,
)

LOGGER = logging.getLogger(__name__)

EPILOG = """exit codes: 0 ok, 1 unexpected failure, 16 BIDS validation failed, 64 usage error,
65 bad input data, 66 missing input, 73 cannot create output."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting (testable, one exit path)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}. See '{self.prog} --help'.")


def _opt(group, name: str, *more, **kw):
    """Add an option under its dash and underscore spellings."""
    alias = "--" + name[2:].replace("-", "_")
    names = [name] + ([alias] if alias != name else []) + list(more)
    group.add_argument(*names, **kw)


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected i/N (e.g. 2/8), got {text!r}") from err
    return i, n


def build_parser() -> argparse.ArgumentParser:
    """The BIDS-App parser (participant and group levels)."""
    p = _Parser(
        prog="bids_decode",
        description="Decode every unit of deep-network features from fMRI (voxel-selecting "
                    "ridge regression, Horikawa & Kamitani). Other commands: "
                    "'bids_decode simulate OUT_DIR', 'bids_decode features STIMULI_DIR OUT.h5', "
                    "'bids_decode slurm BIDS_DIR OUTPUT_DIR JOBS_DIR' (SLURM job files).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bids_dir", type=Path, help="the input BIDS dataset")
    p.add_argument("output_dir", type=Path, help="where the derivatives are written")
    p.add_argument("analysis_level", choices=["participant", "group"],
                   help="participant: decode subjects; group: compare subjects' outputs")
    p.add_argument("--version", action="version", version=f"bids_decode {__version__}")
    g = p.add_argument_group("inputs")
    _opt(g, "--participant-label", nargs="+", default=[], metavar="LABEL",
         help="subjects to process, with or without 'sub-' (default: all)")
    _opt(g, "--task", default="perception", help="BIDS task label (default: perception)")
    _opt(g, "--train-session", default="perceptionTraining*", metavar="GLOB",
         help="sessions whose runs train the decoders (default: perceptionTraining*)")
    _opt(g, "--test-session", default=None, metavar="GLOB",
         help="sessions whose runs test them (default: perceptionTest* for --task perception, "
              "imageryTest* for --task imagery)")
    _opt(g, "--train-task", default="perception",
         help="task of the training runs (default: perception; --task imagery decodes imagery "
              "with decoders trained on perception)")
    _opt(g, "--bold-source", default="auto", metavar="auto|raw|preproc-spm|fmriprep|PATH",
         help="BOLD runs: raw BIDS runs, ds001246's derivatives/preproc-spm/output, fMRIPrep "
              "derivatives (-d fmriprep=PATH; full or --level minimal outputs), a "
              "derivatives folder, or bdata=PATH: the authors' BData .h5 ('{subject}' = label) "
              "(default auto: preproc-spm where the dataset has derivatives/preproc-spm, else "
              "raw)")
    _opt(g, "--assume-aligned", action="store_true",
         help="the runs are known to be in the masks' space: do not refuse raw runs whose "
              "grids differ from each other or from the masks' (they are resampled through "
              "their affines)")
    _opt(g, "--derivatives", "-d", nargs="+", default=[], metavar="NAME=PATH",
         help="derivative folders, e.g. fmriprep=/data/derivatives/fmriprep")
    _opt(g, "--space", default="T1w", help="fMRIPrep output space (default T1w)")
    _opt(g, "--confounds", default=None, metavar="SET|COLS",
         help="confounds regressed out of each run (fMRIPrep): motion6, motion6+wm+csf, or "
              "comma-separated column names")
    _opt(g, "--stimulus-column", default=None, metavar="COLUMN",
         help="events column naming the image (default: stim_file if present, else "
              "stimulus_name)")
    _opt(g, "--sample-events", nargs="+", default=[], metavar="[train:|test:]COLUMN=VALUE",
         help="events rows that are samples, where the convention is not detected (e.g. "
              "event_type=1; train:/test: for one side only). Default: detected per file "
              "(ds001246 strings, Kamitani-lab numeric codes, events.json Levels)")
    _opt(g, "--train-average", action="store_true",
         help="average the training trials of each image (default: every trial is a sample)")
    _opt(g, "--hrf-shift", type=float, default=3.0, metavar="SECONDS",
         help="haemodynamic delay applied to the blocks (default: 3 s, one TR of ds001246)")
    _opt(g, "--skip-bids-validation", action="store_true",
         help="do not run the BIDS validator on BIDS_DIR")
    _opt(g, "--config", type=Path, default=None, metavar="FILE",
         help="repeat a run from its saved *_config.json (other options are ignored)")
    f = p.add_argument_group("features")
    _opt(f, "--features", default=None, metavar="FILE",
         help="precomputed stimulus features (HDF5, see docs/formats.md)")
    _opt(f, "--layers", nargs="+", default=[], metavar="NAME",
         help="layers to decode (default: every layer in the features)")
    _opt(f, "--network", default="alexnet",
         help="network for feature extraction when --features is not given: alexnet, vgg19, "
              "caffe-alexnet, any torchvision classification model, package.module:function "
              "or a TorchScript file (docs/features.md)")
    _opt(f, "--preprocessing", choices=["default", "torchvision"], default="default",
         help="image preprocessing for feature extraction: default (whole image resized, "
              "ImageNet mean/std) or torchvision (the network's weights' transforms)")
    _opt(f, "--stimuli-dir", default=None, metavar="DIR",
         help="stimulus images (default: BIDS_DIR/stimuli)")
    _opt(f, "--weights", default=None, metavar="FILE|random",
         help="network weights (state_dict); default: torchvision's cache")
    d = p.add_argument_group("decoding")
    _opt(d, "--roi", nargs="+", default=["VC"], metavar="NAME[=PATH]",
         help="ROIs: V1 V2 V3 V4 LOC FFA PPA LVC HVC VC, or NAME=PATH to a mask "
              "('{subject}' in PATH is replaced by the label) (default: VC)")
    _opt(d, "--atlas", default=None, metavar="IMAGE",
         help="atlas image whose labels can be named with --roi ('{subject}' allowed)")
    _opt(d, "--atlas-labels", default=None, metavar="TSV",
         help="labels table of --atlas (columns: index, name)")
    _opt(d, "--n-voxels", type=int, default=500, metavar="N",
         help="voxels selected per unit (default 500; 0 = all)")
    _opt(d, "--alpha", type=float, default=100.0, help="L2 penalty (default 100)")
    _opt(d, "--dtype", choices=["float32", "float64"], default="float32",
         help="precision of the solver (default float32)")
    _opt(d, "--device", default="cpu", help="cpu or cuda (default cpu)")
    _opt(d, "--unit-shard", type=_shard, default=(1, 1), metavar="i/N",
         help="decode the i-th of N unit shards (SLURM arrays); outputs are written when all "
              "shards are done")
    s = p.add_argument_group("statistics")
    _opt(s, "--n-permutations", type=int, default=1000, metavar="N",
         help="permutations of the test images for each unit's p-value, FDR q-value and "
              "max-statistic FWER p-value (default 1000; 0 = off)")
    _opt(s, "--permutation-seed", type=int, default=0, metavar="SEED",
         help="seed of the permutations (default 0; recorded in the outputs)")
    r = p.add_argument_group("resources and logging")
    _opt(r, "--work-dir", "-w", default=None, metavar="DIR",
         help="intermediate results, reused by reruns (default OUTPUT_DIR/.bids_decode_work)")
    _opt(r, "--nprocs", "--n-cpus", type=int, default=None,
         help="CPU threads (default: SLURM_CPUS_PER_TASK in a SLURM job, else the CPUs this "
              "process may use, within its cgroup's quota)")
    _opt(r, "--mem", "--mem-gb", type=float, default=None, metavar="GB",
         help="memory budget in GB (default: the SLURM allocation or cgroup limit less 1 GB, "
              "else 4)")
    _opt(r, "--reports-only", action="store_true",
         help="only regenerate reports from existing outputs")
    r.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    r.add_argument("-q", "--quiet", action="count", default=0, help="less log output")
    return p


def parse_args(argv: list[str] | None = None) -> RunConfig:
    """Parse BIDS-App arguments into a frozen :class:`RunConfig`."""
    from . import resources

    ns = build_parser().parse_args(argv)
    if ns.config is not None:
        cfg = RunConfig.from_json(ns.config)
        if cfg.extra.get("resources", {}).get("source") != "cli":  # this run's allocation
            res = resources.resolve()
            cfg = cfg.replace(nprocs=res.nprocs, mem_gb=res.mem_gb,
                              extra={**cfg.extra, "resources": res.as_dict()})
        return cfg.replace(bids_dir=str(ns.bids_dir), output_dir=str(ns.output_dir),
                           analysis_level=ns.analysis_level)
    res = resources.resolve(ns.nprocs, ns.mem)
    return RunConfig(
        bids_dir=str(ns.bids_dir), output_dir=str(ns.output_dir),
        analysis_level=ns.analysis_level,
        participant_label=tuple(ns.participant_label), features=ns.features,
        layers=tuple(ns.layers), roi=tuple(ns.roi), n_voxels=ns.n_voxels, alpha=ns.alpha,
        train_session=ns.train_session, test_session=ns.test_session, task=ns.task,
        train_task=ns.train_task, bold_source=ns.bold_source, assume_aligned=ns.assume_aligned,
        derivatives=tuple(ns.derivatives), space=ns.space, confounds=ns.confounds,
        atlas=ns.atlas, atlas_labels=ns.atlas_labels,
        stimulus_column=ns.stimulus_column, sample_events=tuple(ns.sample_events),
        train_average=ns.train_average, hrf_shift=ns.hrf_shift,
        skip_bids_validation=ns.skip_bids_validation, work_dir=ns.work_dir,
        nprocs=res.nprocs, mem_gb=res.mem_gb, device=ns.device, dtype=ns.dtype,
        network=ns.network, stimuli_dir=ns.stimuli_dir, weights=ns.weights,
        preprocessing=ns.preprocessing,
        unit_shard=tuple(ns.unit_shard), verbosity=ns.verbose - ns.quiet,
        reports_only=ns.reports_only, extra={"resources": res.as_dict()},
        n_permutations=ns.n_permutations, permutation_seed=ns.permutation_seed,
    )


def setup_logging(verbosity: int, log_file: Path | None = None) -> None:
    level = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(
        max(-2, min(verbosity, 1)), logging.DEBUG)
    root = logging.getLogger("bids_decode")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.setLevel(logging.DEBUG)
    root.propagate = False
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(asctime)s [bids_decode] %(levelname)s: "
                                           "%(message)s", "%H:%M:%S"))
    root.addHandler(console)
    if log_file is not None:
        fh = logging.FileHandler(log_file)
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        root.addHandler(fh)


def _log_file(config: RunConfig) -> Path | None:
    from .derivatives import ensure_dir

    logs = ensure_dir(Path(config.output_dir) / "logs")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    subs = "-".join(config.participant_label) or "all"
    return logs / f"bids_decode_{config.analysis_level}_sub-{subs}_{stamp}_{os.getpid()}.log"


def _limit_threads(nprocs: int):
    from threadpoolctl import threadpool_limits

    if nprocs and nprocs > 0:
        try:
            import torch

            torch.set_num_threads(nprocs)
        except ImportError:
            pass
        return threadpool_limits(limits=nprocs)
    return threadpool_limits(limits=None)


def run(config: RunConfig) -> int:
    """Run one BIDS-App invocation from its configuration."""
    from . import derivatives, layout

    bids_dir, out_dir = Path(config.bids_dir), Path(config.output_dir)
    layout.check_bids_dir(bids_dir)
    derivatives.check_output_dir(out_dir, bids_dir)
    derivatives.init_output_dir(out_dir, bids_dir)
    setup_logging(config.verbosity, _log_file(config))
    LOGGER.info("bids_decode %s, %s level, %s -> %s", __version__, config.analysis_level,
                bids_dir, out_dir)
    if "resources" in config.extra:
        from .resources import Resources, log_resources

        log_resources(Resources(**config.extra["resources"]))
    if config.analysis_level == "group":
        from . import group

        return group.run_group(config)
    subjects = layout.resolve_subjects(bids_dir, config.participant_label)
    if config.reports_only:
        from .report import write_subject_report

        for sub in subjects:
            LOGGER.info("sub-%s: report %s", sub,
                        write_subject_report(out_dir, sub, config.task))
        return EXIT_OK
    config.check_device()
    if not config.skip_bids_validation:
        from .validation import validate_bids

        validate_bids(bids_dir)
    from .bold_sources import resolve_bold_source
    from .participant import run_participant

    source = resolve_bold_source(config.bold_source, bids_dir, config.derivative_paths)
    if source != config.bold_source:
        LOGGER.info("BOLD source: %s (--bold-source %s: %s)", source, config.bold_source,
                    "the dataset has derivatives/preproc-spm" if source == "preproc-spm"
                    else "no derivatives/preproc-spm in the dataset")
        config = config.replace(bold_source=source)
    with _limit_threads(config.nprocs):
        for sub in subjects:
            res = run_participant(config.replace(participant_label=(sub,)), sub)
            _print_summary(res)
    return EXIT_OK


def _print_summary(res: dict) -> None:
    if not res["rows"]:
        return
    print(f"sub-{res['subject']}: mean unit accuracy (Pearson r) per ROI and layer")
    print(f"  {'roi':<6} {'layer':<12} {'units':>8} {'profile r':>10} {'pattern r':>10} "
          f"{'ident.':>7}")
    for r in res["rows"]:
        print(f"  {r['roi']:<6} {r['layer']:<12} {r['n_units']:>8} {r['profile_r_mean']:>10.3f} "
              f"{r['pattern_r_mean']:>10.3f} {r['identification_accuracy']:>7.3f}")


def _subcommand(argv: list[str]) -> int:
    name = argv[0]
    if name == "simulate":
        from . import simulate as mod
        desc = "Write a small ds001246-shaped dataset with a planted ground truth."
    elif name == "slurm":
        from . import slurm as mod
        desc = "Write SLURM job files (array + afterok group job) for a dataset (docs/hpc.md)."
    else:
        from . import features as mod
        desc = "Compute DNN features of stimulus images into an HDF5 file."
    p = _Parser(prog=f"bids_decode {name}", description=desc, epilog=EPILOG)
    mod.add_arguments(p)
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="count", default=0)
    args = p.parse_args(argv[1:])
    setup_logging(args.verbose - args.quiet)
    return mod.run_from_args(args)


def close_log_files() -> None:
    """Close the log file handlers (so an OUTPUT_DIR on removable media can be unmounted)."""
    root = logging.getLogger("bids_decode")
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler):
            root.removeHandler(h)
            h.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (no traceback for errors the user can fix)."""
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    finally:
        close_log_files()


def _main(argv: list[str]) -> int:
    try:
        if argv and argv[0] in ("simulate", "features", "slurm"):
            return _subcommand(argv)
        if not argv or argv[0] in ("-h", "--help") or "--version" in argv:
            try:
                build_parser().parse_args(argv or ["--help"])
            except SystemExit as ex:
                return int(ex.code or 0) if argv else EXIT_USAGE
        return run(parse_args(argv))
    except BidsDecodeError as err:
        LOGGER.debug("error", exc_info=True)
        print(f"bids_decode: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("bids_decode: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - last resort: log the bug, exit 1
        LOGGER.debug("unexpected error", exc_info=True)
        print("bids_decode: unexpected error (a bug; please report it with this traceback):\n"
              + traceback.format_exc(), file=sys.stderr)
        return EXIT_FAILURE
