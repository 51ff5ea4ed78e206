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

from bids_decode import group, resources, slurm
from bids_decode._version import __version__
from bids_decode.config import PARAMS, SECTIONS, Param, RunConfig
from bids_decode.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    BidsDecodeError,
    UsageError,
)
from bids_decode.inputs import annex, input_list, layout
from bids_decode.inputs.sources import BoldSource
from bids_decode.inputs.validation import validate_bids
from bids_decode.outputs import export
from bids_decode.outputs.paths import check_output_dir, init_output_dir
from bids_decode.outputs.schema import find_networks, network_name
from bids_decode.participant import feature_files, run_participant
from bids_decode.reports import write_subject_report
from bids_decode.simulate import command as simulate_command
from bids_decode.utils.files import ensure_dir, write_text

LOGGER = logging.getLogger(__name__)

EPILOG = """exit codes: 0 ok, 1 unexpected failure, 16 BIDS validation failed, 64 usage error,
65 bad input data, 66 missing input, 73 cannot create output."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting (testable, one exit path)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}. See '{self.prog} --help'.")


class _Checked(argparse.Action):
    """Store an option's value after its declared check (:attr:`config.Param.check`), so a bad
    value is refused while parsing, with the message ``RunConfig`` would give."""

    def __init__(self, *args, check, **kw):
        super().__init__(*args, **kw)
        self.check = check

    def __call__(self, parser, namespace, values, option_string=None):
        self.check(tuple(values) if isinstance(values, list) else values)
        setattr(namespace, self.dest, values)


def _add_param(group, prm: Param) -> None:
    """Add one declared parameter under its spellings (dash and underscore)."""
    kw = {"help": prm.help, **prm.cli}
    if prm.flags[0].startswith("-"):
        kw = {"dest": prm.name, "default": prm.default, **kw}
    if prm.check is not None and "action" not in kw:
        kw.update(action=_Checked, check=prm.check)
    group.add_argument(*prm.option_strings, **kw)


def build_parser() -> argparse.ArgumentParser:
    """The BIDS-App parser (participant and group levels), one group per config section."""
    p = _Parser(
        prog="bids_decode",
        description="Decode every unit of deep-network features from fMRI (voxel-selecting "
                    "ridge regression, Horikawa & Kamitani). Other commands: "
                    "'bids_decode simulate OUT_DIR', 'bids_decode features STIMULI_DIR OUT.h5', "
                    "'bids_decode slurm BIDS_DIR OUTPUT_DIR JOBS_DIR' (SLURM job files), "
                    "'bids_decode export OUTPUT_DIR DEST --format bdpy'.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    positional = [prm for prm in PARAMS if prm.flags and not prm.flags[0].startswith("-")]
    for prm in positional:
        _add_param(p, prm)
    p.add_argument("--version", action="version", version=f"bids_decode {__version__}")
    groups = {name: p.add_argument_group(sec.title) for name, sec in SECTIONS.items()}
    for prm in PARAMS:
        if prm.flags and prm not in positional:
            _add_param(groups[prm.section], prm)
    groups["inputs"].add_argument(
        "--config", type=Path, default=None, metavar="FILE",
        help="repeat a run from its saved *_config.json (other options are ignored)")
    r = groups["execution"]
    r.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    r.add_argument("-q", "--quiet", action="count", default=0, help="less log output")
    return p


def parse_args(argv: list[str] | None = None) -> RunConfig:
    """Parse BIDS-App arguments into a frozen :class:`RunConfig`."""
    ns = build_parser().parse_args(argv)
    if ns.config is not None:
        cfg = RunConfig.from_json(ns.config)
        if cfg.extra.get("resources", {}).get("source") != "cli":  # this run's allocation
            res = resources.resolve()
            cfg = cfg.replace(nprocs=res.nprocs, mem_gb=res.mem_gb,
                              extra={**cfg.extra, "resources": res.as_dict()})
        return cfg.replace(bids_dir=str(ns.bids_dir), output_dir=str(ns.output_dir),
                           analysis_level=ns.analysis_level)
    res = resources.resolve(ns.nprocs, ns.mem_gb)
    return RunConfig.from_namespace(
        ns, nprocs=res.nprocs, mem_gb=res.mem_gb, verbosity=ns.verbose - ns.quiet,
        extra={"resources": res.as_dict()})


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


def _subjects_tag(config: RunConfig) -> str:
    return "sub-" + ("-".join(config.participant_label) or "all")


def _log_file(config: RunConfig) -> Path | None:
    logs = ensure_dir(Path(config.output_dir) / "logs")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return logs / f"bids_decode_{config.analysis_level}_{_subjects_tag(config)}_{stamp}_" \
        f"{os.getpid()}.log"


def _list_inputs(config: RunConfig) -> int:
    """``--list-inputs``: print the files the participant level would read; write nothing."""
    if config.analysis_level != "participant":
        raise UsageError("--list-inputs lists the files of the participant level; the group "
                         "level reads only the participant outputs.")
    setup_logging(config.verbosity)
    subjects = layout.resolve_subjects(Path(config.bids_dir), config.participant_label)
    source = BoldSource.of(config)
    input_list.print_inputs(_run_files(config, subjects, source), Path(config.bids_dir))
    return EXIT_OK


def _run_files(config: RunConfig, subjects: list[str], source: BoldSource) -> list[Path]:
    """Every file the participant level reads: steps 1-3 (``source``'s) and the features
    step."""
    return sorted({*input_list.run_inputs(config, subjects, source), *feature_files(config)})


def _check_inputs(config: RunConfig, subjects: list[str], source: BoldSource) -> RunConfig:
    """Before any work: the run's files have content (exit 66), and the BIDS validator finds
    no error in them (exit 16); its other findings are recorded as warnings."""
    bids_dir, what = Path(config.bids_dir), "sub-" + "-".join(subjects)
    files = _run_files(config, subjects, source)
    missing = annex.absent_files(files)
    if missing:
        listing = ensure_dir(Path(config.output_dir) / "logs") / \
            f"missing_content_{what}_{time.strftime('%Y%m%d-%H%M%S')}.txt"
        write_text(listing, "".join(annex.shown(m.path, bids_dir) + "\n" for m in missing))
        raise annex.missing_content_error(missing, len(files), bids_dir, listing, what)
    if config.skip_bids_validation:
        return config
    found = validate_bids(bids_dir, input_list.inside(files, bids_dir)[0],
                          strict=config.strict_validation)
    return config.replace(extra={**config.extra, "validation": found})


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
    bids_dir, out_dir = Path(config.bids_dir), Path(config.output_dir)
    layout.check_bids_dir(bids_dir)
    if config.list_inputs:
        return _list_inputs(config)
    check_output_dir(out_dir, bids_dir)
    init_output_dir(out_dir, bids_dir)
    setup_logging(config.verbosity, _log_file(config))
    LOGGER.info("bids_decode %s, %s level, %s -> %s", __version__, config.analysis_level,
                bids_dir, out_dir)
    if "resources" in config.extra:
        resources.log_resources(resources.Resources(**config.extra["resources"]))
    if config.analysis_level == "group":
        return group.run_group(config)
    subjects = layout.resolve_subjects(bids_dir, config.participant_label)
    if config.reports_only:
        for label, per_sub in find_networks(out_dir, config.task).items():
            name = network_name(out_dir, config.task, label)
            for sub in (s for s in subjects if s in per_sub):  # every network of a subject
                LOGGER.info("sub-%s: report %s", sub,
                            write_subject_report(out_dir, sub, config.task, network=name))
        return EXIT_OK
    config.check_device()
    # --bold-source auto is resolved here, once (BoldSource.parse); the run records the
    # source's option, and every subject's run uses this source
    source = BoldSource.of(config)
    config = _check_inputs(config.replace(bold_source=source.option), subjects, source)
    with _limit_threads(config.nprocs):
        for sub in subjects:
            res = run_participant(config.replace(participant_label=(sub,)), sub, source)
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
        mod = simulate_command
        desc = "Write a small ds001246-shaped dataset with a planted ground truth."
    elif name == "slurm":
        mod = slurm
        desc = "Write SLURM job files (array + afterok group job) for a dataset (docs/hpc.md)."
    elif name == "export":
        mod = export
        desc = ("Write decoded features and accuracies in the layouts of bdpy's DecodedFeatures "
                "and KamitaniLab/BHscore (docs/formats.md).")
    else:
        from bids_decode.features import command as mod  # (torch: only for this command)
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
        if argv and argv[0] in ("simulate", "features", "slurm", "export"):
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
