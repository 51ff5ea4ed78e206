#!/usr/bin/env bash
# Fill docker/wheels with the files of docker/requirements.lock, for an image build that needs no
# network for Python packages. pip takes them from its configured sources: on a machine whose pip
# config lists local wheel folders (find-links / file:// indexes), those, else PyPI.
# Needs a CPython 3.11 (the image's Python); with another it does nothing and the build
# downloads the same pins from PyPI.
#
#   docker/fetch-wheels.sh [PYTHON]      (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
LOCK=docker/requirements.lock
DEST=docker/wheels
STAMP=$DEST/.lock.sha256

if [ "$("$PY" -c 'import sys; print(sys.version_info[:2] == (3, 11))')" != True ]; then
    echo "fetch-wheels: $PY is not CPython 3.11 (the image's); the build will use PyPI"
    exit 0
fi
want=$(sha256sum "$LOCK" | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    echo "fetch-wheels: $DEST is up to date with $LOCK"
    exit 0
fi
find "$DEST" -mindepth 1 -maxdepth 1 ! -name .gitignore -exec rm -rf {} +
echo "fetch-wheels: downloading $(grep -c '==' "$LOCK") pinned packages into $DEST"
if ! "$PY" -m pip download --quiet --no-deps --dest "$DEST" -r "$LOCK"; then
    find "$DEST" -mindepth 1 -maxdepth 1 ! -name .gitignore -exec rm -rf {} +
    echo "fetch-wheels: download failed; $DEST left empty (the build will use PyPI)" >&2
    exit 1
fi
echo "$want" > "$STAMP"
echo "fetch-wheels: $(find "$DEST" -maxdepth 1 -type f ! -name '.*' | wc -l) files, $(du -sh "$DEST" | cut -f1)"
