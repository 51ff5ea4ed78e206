#!/usr/bin/env bash
# Container test (issue 7): build the Docker image here, run the app in it as a user would on a
# locked-down host, and check that it gives the same results as a run outside it.
#
#   scripts/container-test.sh            ends with 'container-test: PASS ...' or '... FAIL: why'
#
# Steps: install docker.io with apt if there is no engine; start dockerd if none answers (and stop
# it at the end); make the Debian base image with debootstrap if it is missing
# (docker/make-base.sh); fill docker/wheels (docker/fetch-wheels.sh); build the image (layers are
# cached: a rebuild after a code change reinstalls only the package); run `--version`, then
# `simulate`, the participant level and the group level (which must work both outside and
# inside) inside the container with --network none --read-only --tmpfs /tmp --user UID:GID (and
# --gpus all where the host has an NVIDIA GPU); the same with the .venv outside; both levels
# again through the Boutiques descriptor (`bosh exec launch`, the .venv's bosh); compare the
# per-unit accuracies of every sub-*/func/*_desc-*_decoding.h5 (/<layer>/accuracy) to 1e-6.
#
# Environment: IMAGE (default bids_decode:<version>), PYTHON (outside run, default .venv/bin/python),
# CT_WEIGHTS (build argument WEIGHTS, default pretrained), CT_KEEP=1 keeps the work folder.
# Exit status: 0 pass, 1 fail, 77 docker could not be set up (the only 'skipped' case;
# .ci/run calls this script directly, since make turns every failure into exit 2).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)

VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' bids_decode/_version.py)
IMAGE=${IMAGE:-bids_decode:$VERSION}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
WORK=$(mktemp -d /tmp/bids_decode-container-test.XXXXXX)
DOCKERD_PID=
T0=$(date +%s)

say() { echo "container-test: $*"; }
cleanup() {
    if [ -n "$DOCKERD_PID" ]; then
        say "stopping the dockerd it started (pid $DOCKERD_PID)"
        kill "$DOCKERD_PID" 2> /dev/null
        for _ in $(seq 30); do kill -0 "$DOCKERD_PID" 2> /dev/null || break; sleep 1; done
    fi
    if [ "${CT_KEEP:-0}" = 1 ]; then say "work folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
fail() { say "FAIL: $* ($(( $(date +%s) - T0 )) s)"; exit 1; }
unavailable() { say "SKIP: docker unavailable: $*"; exit 77; }

# ------------------------------------------------------------------ 1. a docker engine and client
if ! command -v dockerd > /dev/null; then
    say "installing docker.io with apt"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io; } \
        > "$WORK/apt.log" 2>&1 || { tail -n 5 "$WORK/apt.log"; unavailable "apt-get install docker.io failed"; }
fi
# BuildKit is needed (RUN --mount). A client with the buildx plugin uses it; without the plugin,
# Debian's 20.10 client (/usr/bin/docker) has BuildKit built in, newer ones refuse.
DOCKER=docker
if ! docker buildx version > /dev/null 2>&1 && [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; fi
export DOCKER DOCKER_BUILDKIT=1
if ! "$DOCKER" info > /dev/null 2>&1; then
    say "starting dockerd"
    dockerd > "$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do "$DOCKER" info > /dev/null 2>&1 && break; sleep 1; done
    "$DOCKER" info > /dev/null 2>&1 || { tail -n 5 "$WORK/dockerd.log"; unavailable "dockerd did not start"; }
fi

# ------------------------------------------------------------------ 2. base, wheels, image
# The wheels (3 GB), the base image and the built image (about 9 GB with its layers) need room:
# on a host with too little, say so plainly instead of failing half-way through a build.
NEED_GB=${CT_NEED_GB:-16}
DROOT=$("$DOCKER" info -f '{{.DockerRootDir}}' 2> /dev/null || echo /var/lib/docker)
for d in "$REPO" "$DROOT"; do
    [ -d "$d" ] || continue
    free_gb=$(df -P -BG "$d" | awk 'NR == 2 {sub("G", "", $4); print $4}')
    if [ "${free_gb:-0}" -lt "$NEED_GB" ]; then
        unavailable "only ${free_gb} GB free on the disk of $d; building the image needs about ${NEED_GB} GB (free some space, or set CT_NEED_GB)"
    fi
done
docker/make-base.sh || fail "could not make the base image"
docker/fetch-wheels.sh python3 2>&1 | grep -v 'is ignored: it is neither a file nor a directory' \
    || true
CA=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
SECRET=(); [ -s "$CA" ] && SECRET=(--secret "id=ca,src=$CA")
say "building $IMAGE"
B0=$(date +%s)
"$DOCKER" build --progress=plain "${SECRET[@]}" --build-arg "WEIGHTS=${CT_WEIGHTS:-pretrained}" \
    --build-arg "IMAGE_TAG=$IMAGE" -t "$IMAGE" . > "$WORK/build.log" 2>&1 \
    || { tail -n 30 "$WORK/build.log"; fail "docker build failed"; }
BUILD_S=$(( $(date +%s) - B0 ))
SIZE=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1 / 1e9}')
grep -A3 '^#[0-9]* [0-9.]* fetch-weights:$' "$WORK/build.log" | sed 's/^#[0-9]* [0-9.]* /  /' || true
say "built $IMAGE in ${BUILD_S} s, ${SIZE}"

# ------------------------------------------------------------------ 3. runs inside the container
# As root here, run the container as an unprivileged user all the same: that is the case to test.
RUN_UID=$(id -u); RUN_GID=$(id -g)
[ "$RUN_UID" = 0 ] && { RUN_UID=${CT_UID:-4242}; RUN_GID=${CT_GID:-4242}; }
mkdir -p "$WORK/in" "$WORK/cont" "$WORK/host"
chown "$RUN_UID:$RUN_GID" "$WORK/in" "$WORK/cont"
GPU=(); command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1 && GPU=(--gpus all)
drun() {  # docker run, locked down; $1 = mount spec of the input (rw for simulate, else ro)
    local data=$1; shift
    "$DOCKER" run --rm --network none --read-only --tmpfs /tmp --user "$RUN_UID:$RUN_GID" \
        "${GPU[@]}" -v "$data" -v "$WORK/cont:/out" "$IMAGE" "$@"
}

got=$(drun "$WORK/in:/data:ro" --version 2>&1) || fail "--version: $got"
[ "$got" = "bids_decode $VERSION" ] || fail "--version printed '$got', expected 'bids_decode $VERSION'"
say "--version: $got"

SIM=(--n-subjects 2 --n-train-runs 4 --n-test-runs 2)
PART=(participant --features /data/ds/stimuli/features_simulated.h5 --n-voxels 100)
drun "$WORK/in:/data" simulate /data/ds "${SIM[@]}" > "$WORK/cont-sim.log" 2>&1 \
    || { tail -n 20 "$WORK/cont-sim.log"; fail "simulate in the container"; }
drun "$WORK/in:/data:ro" /data/ds /out "${PART[@]}" > "$WORK/cont-part.log" 2>&1 \
    || { tail -n 20 "$WORK/cont-part.log"; fail "participant level in the container"; }
say "participant level ran in the container (--network none --read-only --user $RUN_UID:$RUN_GID${GPU:+ --gpus all})"

# ------------------------------------------------------------------ 4. the same outside
# with the .venv's libraries and the package sources that went into the image (copied out of it,
# so that edits to the working tree during the build cannot make the two runs differ)
[ -x "$PYTHON" ] || fail "no Python for the outside run at $PYTHON (run 'make install' or set PYTHON)"
PKG=$("$DOCKER" run --rm --network none --entrypoint python "$IMAGE" -c \
      'import bids_decode, os; print(os.path.dirname(bids_decode.__file__))') \
    || fail "cannot locate the package in the image"
CID=$("$DOCKER" create "$IMAGE") || fail "cannot create a container of $IMAGE"
"$DOCKER" cp "$CID:$PKG" "$WORK/src" > /dev/null; rc=$?
"$DOCKER" rm "$CID" > /dev/null
[ "$rc" = 0 ] || fail "cannot copy the package out of the image"
mkdir -p "$WORK/pkg" && mv "$WORK/src" "$WORK/pkg/bids_decode"
diff -rq -x __pycache__ bids_decode "$WORK/pkg/bids_decode" > /dev/null \
    || say "note: the working tree's bids_decode/ changed since the build; both runs use the image's"
host() { (cd "$WORK" && PYTHONPATH="$WORK/pkg" BIDS_DECODE_PROGRESS=0 "$PYTHON" -m bids_decode "$@"); }
host simulate "$WORK/host/ds" "${SIM[@]}" > "$WORK/host-sim.log" 2>&1 \
    || { tail -n 20 "$WORK/host-sim.log"; fail "simulate outside"; }
host "$WORK/host/ds" "$WORK/host/out" participant --features "$WORK/host/ds/stimuli/features_simulated.h5" \
    --n-voxels 100 > "$WORK/host-part.log" 2>&1 \
    || { tail -n 20 "$WORK/host-part.log"; fail "participant level outside"; }

# group level: must work outside and inside (a failure here is a FAIL, not a skip)
host "$WORK/host/ds" "$WORK/host/out" group > "$WORK/host-group.log" 2>&1 \
    || { tail -n 20 "$WORK/host-group.log"; fail "group level outside the container"; }
drun "$WORK/in:/data:ro" /data/ds /out group > "$WORK/cont-group.log" 2>&1 \
    || { tail -n 20 "$WORK/cont-group.log"; fail "group level in the container"; }
GROUP="ran inside and outside"
say "group level: $GROUP"

# ------------------------------------------------------------------ 4b. through Boutiques
# boutiques/bids_decode.json run as pipeline platforms run it: `bosh exec launch` (docker run
# of the image with the inputs mounted at their own paths) on the same dataset, participant
# and group levels; its outputs are compared below like the container's. The descriptor names
# bids_decode:<version>; a copy names $IMAGE.
BOSH=${BOSH:-$(dirname "$PYTHON")/bosh}
[ -x "$BOSH" ] || fail "no bosh at $BOSH (boutiques is in the test extras: make install)"
mkdir -p "$WORK/bosh"
"$PYTHON" - "$REPO/boutiques/bids_decode.json" "$IMAGE" "$WORK/bosh" "$WORK/host/ds" <<'PY' \
    || fail "cannot write the Boutiques invocations"
import json
import sys
from pathlib import Path

desc, image, work, ds = sys.argv[1:5]
d = json.loads(Path(desc).read_text())
d["container-image"]["image"] = image
Path(work, "descriptor.json").write_text(json.dumps(d, indent=2))
for level in ("participant", "group"):
    inv = {"bids_dir": ds, "output_dir": f"{work}/out", "analysis_level": level}
    if level == "participant":
        inv.update(features=f"{ds}/stimuli/features_simulated.h5", n_voxels=100)
    Path(work, f"{level}.json").write_text(json.dumps(inv, indent=2))
PY
for level in participant group; do
    (cd "$WORK/bosh" && "$BOSH" exec launch --no-pull descriptor.json "$level.json") \
        > "$WORK/bosh-$level.log" 2>&1 \
        || { tail -n 20 "$WORK/bosh-$level.log"; fail "bosh exec launch, $level level"; }
done
say "bosh exec launch: participant and group levels ran in $IMAGE"

# ------------------------------------------------------------------ 5. compare
compare() {  # $1 = outputs made in the container (docker run, or bosh exec launch)
"$PYTHON" - "$WORK/host/out" "$1" "$IMAGE" <<'PY'
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

host, cont, image = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
patterns = ["sub-*/func/*_desc-*_decoding.h5", "group/sub-*/func/*_desc-*_decoding.h5"]
names = sorted(p.relative_to(host) for pat in patterns for p in host.glob(pat))
other = sorted(p.relative_to(cont) for pat in patterns for p in cont.glob(pat))
pattern = " or ".join(patterns)
problems = []
if not names:
    problems.append(f"no {pattern} outside the container")
if names != other:
    problems.append(f"different files: outside {list(map(str, names))}, inside {list(map(str, other))}")
n_units = 0
for rel in names:
    if not (cont / rel).exists():
        continue
    with h5py.File(host / rel, "r") as a, h5py.File(cont / rel, "r") as b:
        layers = sorted(k for k in a if isinstance(a[k], h5py.Group) and "accuracy" in a[k])
        if layers != sorted(k for k in b if isinstance(b[k], h5py.Group) and "accuracy" in b[k]):
            problems.append(f"{rel}: different layers")
            continue
        for layer in layers:
            x, y = a[layer]["accuracy"][()], b[layer]["accuracy"][()]
            n_units += x.size
            if x.shape != y.shape:
                problems.append(f"{rel} /{layer}/accuracy: shapes {x.shape} vs {y.shape}")
            elif not np.allclose(x, y, rtol=0, atol=1e-6, equal_nan=True):
                diff = np.nanmax(np.abs(x.astype(np.float64) - y))
                problems.append(f"{rel} /{layer}/accuracy: max |diff| {diff:.3g} > 1e-6 "
                                f"(NaNs {np.isnan(x).sum()} vs {np.isnan(y).sum()})")
# group level tables: same files, same numbers
tables = sorted(p.relative_to(host) for p in host.glob("group/**/*.tsv"))
if not tables:
    problems.append("no group-level tables outside the container")
if tables != sorted(p.relative_to(cont) for p in cont.glob("group/**/*.tsv")):
    problems.append("different group-level tables inside and outside")
for rel in tables:
    if not (cont / rel).exists():
        continue
    a, b = (pd.read_csv(d / rel, sep="\t") for d in (host, cont))
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        problems.append(f"{rel}: different columns or rows")
        continue
    num = a.select_dtypes("number").columns
    if not np.allclose(a[num].to_numpy(float), b[num].to_numpy(float), rtol=0, atol=1e-6,
                       equal_nan=True):
        problems.append(f"{rel}: numbers differ by more than 1e-6")
gen = json.loads((cont / "dataset_description.json").read_text())["GeneratedBy"][0]
if gen.get("Container") != {"Type": "docker", "Tag": image}:
    problems.append(f"GeneratedBy.Container is {gen.get('Container')}, expected docker {image}")
for p in problems:
    print("container-test: " + p)
if not problems:
    print(f"container-test: {len(names)} decoding files, {n_units} unit accuracies and "
          f"{len(tables)} group tables equal to 1e-6")
sys.exit(1 if problems else 0)
PY
}
compare "$WORK/cont" || fail "outputs differ (see above)"
compare "$WORK/bosh/out" || fail "outputs of bosh exec launch differ (see above)"

say "PASS ($IMAGE, build ${BUILD_S} s, ${SIZE}, group level ${GROUP}, total $(( $(date +%s) - T0 )) s)"
