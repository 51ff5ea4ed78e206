"""Compare two output trees of bids_decode bit for bit (refactors must not change results).

Usage::

    python scripts/compare_derivatives.py DIR_A DIR_B [--ignore-html] [--ignore-attr NAME ...]
        [--exclude GLOB ...]

Every file under DIR_A and DIR_B (work folder, logs and lock files left out) must exist on
both sides. HDF5 files: the same groups, every dataset equal bit for bit (same dtype and shape;
NaNs in the same places), the same attributes. TSV and JSON: the same text, after the two
folder paths are replaced by one placeholder (outputs name their inputs) and after the
``provenance`` of the run configurations (versions, CPU, resources of the machine) and the
report time stamps are set aside. HTML reports: the same text after the same replacement
(their figures are embedded PNGs, so figures are compared too). Prints one line per
difference and exits 1 if there is any, else 0. ``--ignore-attr NAME`` sets an HDF5 attribute
aside (e.g. ``bids_decode_format_version`` against outputs made before it existed); each
file where it was set aside is listed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from pathlib import Path

import h5py
import numpy as np

SKIP_PARTS = {".bids_decode_work", "logs"}
IGNORED: list[str] = []  # attributes set aside by --ignore-attr, reported
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?( UTC)?")


def _files(root: Path, exclude=()) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and not SKIP_PARTS & set(p.relative_to(root).parts)
            and not p.name.endswith(".lock")
            and not any(fnmatch.fnmatch(p.name, pat) for pat in exclude)}


def _norm_text(text: str, root: Path) -> str:
    for r in {str(root), str(root.resolve())}:
        text = text.replace(r, "<ROOT>")
    return STAMP.sub("<TIME>", text)


def _norm_json(text: str, root: Path) -> object:
    obj = json.loads(_norm_text(text, root))
    if isinstance(obj, dict):
        obj.pop("provenance", None)
        obj.pop("extra", None)  # resources of the machine the run had
    return obj


def _norm_attr(v, root: Path):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        return _norm_text(v, root)
    return v


def _equal(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "f":
        return a.tobytes() == b.tobytes()
    return bool(np.array_equal(a, b))


def compare_h5(pa: Path, pb: Path, ra: Path, rb: Path, ignore_attrs=()) -> list[str]:
    out = []
    with h5py.File(pa, "r") as fa, h5py.File(pb, "r") as fb:
        names_a, names_b = [], []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        if sorted(names_a) != sorted(names_b):
            out.append(f"objects differ: {sorted(set(names_a) ^ set(names_b))[:8]}")
        for name in ["/", *sorted(set(names_a) & set(names_b))]:
            oa, ob = fa[name], fb[name]
            aa = {k: _norm_attr(v, ra) for k, v in oa.attrs.items()}
            ab = {k: _norm_attr(v, rb) for k, v in ob.attrs.items()}
            for k in ignore_attrs:
                if k in aa or k in ab:
                    IGNORED.append(f"{pa.name}:{name}: attribute {k} set aside "
                                   f"({aa.pop(k, '(absent)')!r} vs {ab.pop(k, '(absent)')!r})")
            if set(aa) != set(ab) or any(not _equal(aa[k], ab[k]) if not isinstance(aa[k], str)
                                         else aa[k] != ab[k] for k in aa):
                out.append(f"{name}: attributes differ")
            if isinstance(oa, h5py.Dataset):
                va, vb = oa[()], ob[()]
                if va.dtype.kind == "O":
                    same = [_norm_attr(x, ra) for x in va.ravel()] == \
                           [_norm_attr(x, rb) for x in vb.ravel()]
                else:
                    same = _equal(va, vb)
                if not same:
                    out.append(f"{name}: data differ")
    return out


def compare(ra: Path, rb: Path, ignore_html: bool = False, ignore_attrs=(),
            exclude=()) -> list[str]:
    fa, fb = _files(ra, exclude), _files(rb, exclude)
    diffs = [f"only in {ra}: {f}" for f in sorted(fa - fb)]
    diffs += [f"only in {rb}: {f}" for f in sorted(fb - fa)]
    for rel in sorted(fa & fb):
        pa, pb = ra / rel, rb / rel
        if rel.endswith(".h5"):
            diffs += [f"{rel}: {d}" for d in compare_h5(pa, pb, ra, rb, ignore_attrs)]
        elif rel.endswith(".json"):
            if _norm_json(pa.read_text(), ra) != _norm_json(pb.read_text(), rb):
                diffs.append(f"{rel}: JSON differs")
        elif rel.endswith((".tsv", ".txt", ".html", ".svg", ".csv")):
            if rel.endswith(".html") and ignore_html:
                continue
            if _norm_text(pa.read_text(), ra) != _norm_text(pb.read_text(), rb):
                diffs.append(f"{rel}: text differs")
        elif pa.read_bytes() != pb.read_bytes():
            diffs.append(f"{rel}: bytes differ")
    return diffs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--ignore-html", action="store_true")
    ap.add_argument("--ignore-attr", action="append", default=[], metavar="NAME",
                    help="HDF5 attribute to set aside (repeatable); each one set aside is listed")
    ap.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                    help="leave out files whose name matches GLOB on both sides (repeatable), "
                         "e.g. '*net-vgg19*' to compare one network of a two-network folder")
    args = ap.parse_args(argv)
    diffs = compare(args.a, args.b, args.ignore_html, args.ignore_attr, args.exclude)
    for line in IGNORED:
        print("ignored:", line)
    for d in diffs:
        print(d)
    n = len(_files(args.a, args.exclude))
    print(f"{n} files compared: " + ("identical" if not diffs else f"{len(diffs)} differences"))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
