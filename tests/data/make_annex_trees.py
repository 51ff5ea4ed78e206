"""Write the real git-annex trees of the tests from the public DataLad repositories.

    python tests/data/make_annex_trees.py DS001246_GIT DS001506_GIT

Each argument is a git directory (a clone of https://github.com/OpenNeuroDatasets/ds001246 and
.../ds001506, bare or not). Written, from each repository's HEAD, exactly as git holds them:

- ``ds001246-annex/``: every file of sub-01 (``sub-01/``,
  ``derivatives/preproc-spm/output/sub-01/``,
  ``sourcedata/sub-01/``): the NIfTI files as the git-annex links of the repository (their
  targets, ``.git/annex/objects/...``, are absent: no content), the events as real files; and
  the top-level JSON files;
- ``ds001506/dataset_description.json``: the real file (its ``"Funding": ""`` is a validator
  error).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUB01 = ("sub-01/", "derivatives/preproc-spm/output/sub-01/", "sourcedata/sub-01/")


def git(repo: str, *args: str) -> bytes:
    return subprocess.run(["git", "--git-dir", repo, *args], check=True,
                          capture_output=True).stdout


def write_tree(repo: str, out: Path, keep) -> int:
    """Write the files of HEAD for which ``keep(path)`` holds; returns how many."""
    n = 0
    for line in git(repo, "ls-tree", "-r", "-z", "HEAD").split(b"\0"):
        if not line:
            continue
        meta, path = line.decode().split("\t", 1)
        mode, _, sha = meta.split()
        if not keep(path):
            continue
        dest = out / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        blob = git(repo, "cat-file", "blob", sha)
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        if mode == "120000":
            os.symlink(blob.decode(), dest)
        else:
            dest.write_bytes(blob)
        n += 1
    return n


def main(ds001246: str, ds001506: str) -> None:
    n = write_tree(ds001246, HERE / "ds001246-annex",
                   lambda p: p.startswith(SUB01) or ("/" not in p and p.endswith(".json")))
    m = write_tree(ds001506, HERE / "ds001506", lambda p: p == "dataset_description.json")
    print(f"{n} files of ds001246, {m} of ds001506")


if __name__ == "__main__":
    main(*sys.argv[1:3])
