#!/usr/bin/env python3
"""Mutation check: each mutant (a wrong decoder or pipeline) must make the named tests fail.

    python scripts/mutants.py                 # every mutant, its killing tests
    python scripts/mutants.py --list          # the mutants and the tests named for each
    python scripts/mutants.py no_voxel_selection shift_ignored
    python scripts/mutants.py --tests tests/e2e/test_participant.py no_voxel_selection

For each mutant the script copies the package and the tests (``bids_decode/``, ``tests/``,
``pyproject.toml``) into a scratch folder, applies one small source edit there (the working tree
is never touched), runs pytest on the mutant's test files with the scratch copy first on
``PYTHONPATH``, and reports which tests failed. A mutant that no test kills, or whose edit no
longer applies (the code changed: update its ``old`` text), makes the script exit 1. It is not
part of ``make test`` (it runs the end-to-end tests once per mutant: several minutes on 2 cores).

Each mutant is one or more ``(file, old, new)`` edits: ``old`` must occur exactly once in
``file``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = "tests/e2e/test_reference_pipeline.py"
PLANTED = "tests/e2e/test_planted_structure.py"
#: (file, old, new): the test features z-scored with their own statistics (two mutants use it)
TEST_Y_OWN_ZSCORE = ("bids_decode/participant.py",
                     "Zte = scale.apply(Yte, zero_constant=False)",
                     "Zte = (Yte - Yte.mean(axis=0)) / np.where(scale.const, 1.0, "
                     "Yte.std(axis=0, ddof=1))")


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    more: tuple[tuple[str, str, str], ...] = ()  # further (file, old, new) edits

    @property
    def edits(self) -> tuple[tuple[str, str, str], ...]:
        return ((self.file, self.old, self.new), *self.more)


MUTANTS = [
    Mutant("no_voxel_selection", "every unit's decoder uses all voxels of the ROI",
           "bids_decode/participant.py",
           "config.n_voxels, n_jobs=config.nprocs or None,", "0, n_jobs=config.nprocs or None,",
           (REF, f"{PLANTED}::test_selected_voxels_beat_all_voxels")),
    Mutant("alpha_ignored", "--alpha ignored: the default 100 always",
           "bids_decode/participant.py",
           "decoding.prepare_design(roi.X_train, config.alpha,",
           "decoding.prepare_design(roi.X_train, 100.0,", (REF,)),
    Mutant("alpha_ignored_in_solver", "the Gram matrix gets no ridge penalty",
           "bids_decode/decoding/design.py",
           "design = Design(X=Xb, xz=xz, alpha=float(alpha),",
           "design = Design(X=Xb, xz=xz, alpha=float(alpha) * 0.0,",
           ("tests/decoding/test_decoding.py",)),
    Mutant("test_set_zscoring", "test X and test Y z-scored with their own statistics",
           "bids_decode/participant.py",
           "return ((X_train - mu) / sd).astype(np.float32), "
           "((X_test - mu) / sd).astype(np.float32)",
           "return ((X_train - mu) / sd).astype(np.float32), ((X_test - X_test.mean(axis=0)) / "
           "X_test.std(axis=0, ddof=1)).astype(np.float32)",
           (REF,), more=(TEST_Y_OWN_ZSCORE,)),
    Mutant("test_set_zscoring_y", "test Y z-scored with its own statistics", *TEST_Y_OWN_ZSCORE,
           (REF,)),
    Mutant("decoded_is_training_mean", "decoded features = the training mean of each unit",
           "bids_decode/participant.py",
           "dec[:, s - lo:e - lo] = scale.restore(P).astype(np.float32)",
           "dec[:, s - lo:e - lo] = np.broadcast_to(scale.mean, P.shape).astype(np.float32)",
           (REF,)),
    Mutant("hemisphere_dropped", "built-in ROIs use the left hemisphere only",
           "bids_decode/inputs/rois.py",
           'HEMISPHERES = ("LH", "RH")', 'HEMISPHERES = ("LH",)',
           (REF, f"{PLANTED}::test_both_hemispheres_beat_either")),
    Mutant("hemispheres_swapped", "masks flipped left-right (a wrong orientation)",
           "bids_decode/inputs/rois.py",
           "return spec.select(np.asarray(data)), False",
           "return spec.select(np.asarray(data))[::-1], False", (REF,)),
    Mutant("identification_ties_lost", "identification counts ties as losses",
           "bids_decode/evaluation/correlation.py",
           "ties = (diag == corr) & off", "ties = np.zeros_like(off)",
           ("tests/evaluation/test_correlation.py",)),
    Mutant("identification_ties_won", "identification counts ties as wins",
           "bids_decode/evaluation/correlation.py",
           "wins = (diag > corr) & off", "wins = (diag >= corr) & off",
           ("tests/evaluation/test_correlation.py",)),
    Mutant("group_pair_labels_swapped", "group pair rows carry another pair's subject labels",
           "bids_decode/group/stats.py",
           'pairs.append({"subject_a": a, "subject_b": b,',
           'pairs.append({"subject_a": subs[-1 - subs.index(a)], '
           '"subject_b": subs[-1 - subs.index(b)],',
           ("tests/group/test_stats.py::test_between_subject_r_matches_participant_files",)),
    Mutant("shift_ignored", "the haemodynamic shift is not applied (0 s)",
           "bids_decode/inputs/sources.py",
           "shift=config.hrf_shift,", "shift=0.0,",
           (REF, "tests/e2e/test_participant.py::test_accuracy_tracks_planted_decodability")),
    Mutant("repeats_kept", "one-back repeats are kept as samples",
           "bids_decode/inputs/events.py",
           "if conv.one_back and names[i] == names[i - 1]:",
           "if False and names[i] == names[i - 1]:",
           ("tests/inputs/test_events.py", "tests/inputs/test_samples.py", REF)),
]


def _copy_tree(dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in ("bids_decode", "tests"):
        # symlinks=True: the annex trees in tests/data are links without content
        shutil.copytree(ROOT / name, dst / name, ignore=ignore, symlinks=True)
    shutil.copy2(ROOT / "pyproject.toml", dst / "pyproject.toml")


def apply(mutant: Mutant, tree: Path) -> None:
    for file, old, new in mutant.edits:
        if not file:  # the baseline: no edit
            continue
        path = tree / file
        text = path.read_text()
        n = text.count(old)
        if n != 1:
            raise SystemExit(f"mutant {mutant.name}: the text to change occurs {n} times in "
                             f"{file} (expected once); update MUTANTS in {__file__}.")
        path.write_text(text.replace(old, new))


def run(mutant: Mutant, tests, python: str, keep: bool) -> tuple[bool, list[str], float]:
    scratch = Path(tempfile.mkdtemp(prefix=f"mutant-{mutant.name}-"))
    try:
        _copy_tree(scratch)
        apply(mutant, scratch)
        env = dict(os.environ, PYTHONPATH=str(scratch), PYTHONDONTWRITEBYTECODE="1",
                   BIDS_DECODE_PROGRESS="0")
        t0 = time.time()
        res = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf",
                              *tests], cwd=scratch, env=env, capture_output=True,
                             text=True)
        dt = time.time() - t0
        out = res.stdout + res.stderr
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, flags=re.M)
        summary = re.findall(r"^=* ?(\d+ (?:passed|failed).*?) ?=*$", out, flags=re.M)
        print(f"  {mutant.name}: {summary[-1] if summary else out.strip().splitlines()[-1:]}",
              flush=True)
        if res.returncode not in (0, 1):  # 2+: collection/usage errors are not kills
            print(out[-3000:])
        return res.returncode == 1 and bool(failed), failed, dt
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="mutants to run (default: all)")
    ap.add_argument("--tests", nargs="+", help="run these tests instead of each mutant's own")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--keep", action="store_true", help="keep the scratch copies")
    ap.add_argument("--baseline", action="store_true",
                    help="run the chosen mutants' tests on an unmutated copy (they must pass)")
    args = ap.parse_args(argv)
    by_name = {m.name: m for m in MUTANTS}
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        ap.error(f"unknown mutant(s) {unknown}; choose from {sorted(by_name)}")
    chosen = [by_name[n] for n in args.names] or MUTANTS
    if args.list:
        for m in chosen:
            files = sorted({e[0] for e in m.edits})
            print(f"{m.name:<28} {m.what}\n{'':<28} {', '.join(files)}; tests: "
                  f"{' '.join(m.tests)}")
        return 0
    if args.baseline:
        tests = args.tests or sorted({t for m in chosen for t in m.tests})
        ok, failed, dt = run(Mutant("baseline", "no edit", "", "", "", ()), tests,
                             args.python, args.keep)
        print(f"baseline (no edit): {'FAILED ' + ', '.join(failed) if failed or ok else 'passed'}"
              f" in {dt:.0f} s: {' '.join(tests)}")
        return 1 if failed or ok else 0
    rows, survivors = [], []
    for m in chosen:
        killed, failed, dt = run(m, args.tests or m.tests, args.python, args.keep)
        rows.append((m.name, "killed" if killed else "SURVIVED", failed, dt))
        names = ", ".join(failed[:4]) + (f" (+{len(failed) - 4} more)" if len(failed) > 4 else "")
        print(f"{m.name:<28} {'killed' if killed else 'SURVIVED':<9} {dt:6.0f} s  "
              f"{names or '-'}", flush=True)
        if not killed:
            survivors.append(m.name)
    print(f"\n{len(rows) - len(survivors)} of {len(rows)} mutants killed"
          + (f"; survivors: {', '.join(survivors)}" if survivors else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
