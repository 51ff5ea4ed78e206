"""Container recipes (issue 7).

Apptainer cannot be installed on the development machines, so ``singularity.def`` is checked by
a recipe parser (spython) and against the Dockerfile it is built from. The end-to-end container
test (``scripts/container-test.sh``) runs only where a Docker engine answers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from spython.main.parse.parsers import DockerParser, SingularityParser

from bids_decode._version import __version__

ROOT = Path(__file__).resolve().parents[2]


def _recipe(parser_cls, path: Path):
    recipes = parser_cls(str(path)).recipe
    assert len(recipes) == 1, f"expected one stage in {path.name}, found {list(recipes)}"
    return next(iter(recipes.values()))


@pytest.fixture(scope="module")
def docker_recipe():
    return _recipe(DockerParser, ROOT / "Dockerfile")


@pytest.fixture(scope="module")
def singularity_recipe():
    return _recipe(SingularityParser, ROOT / "singularity.def")


def _env(recipe) -> dict[str, str]:
    return dict(item.split("=", 1) for item in recipe.environ)


def test_singularity_def_bootstraps_from_this_versions_docker_image(singularity_recipe):
    header = (ROOT / "singularity.def").read_text()
    assert re.search(r"^Bootstrap:\s*docker-daemon\s*$", header, re.M)
    assert singularity_recipe.fromHeader == f"bids_decode:{__version__}"
    assert f"org.opencontainers.image.version {__version__}" in singularity_recipe.labels


def test_singularity_runscript_is_the_docker_entrypoint(docker_recipe, singularity_recipe):
    entry = " ".join(docker_recipe.entrypoint)
    assert entry == "/opt/venv/bin/python /opt/bids_decode/run.py"
    assert singularity_recipe.cmd == f'exec {entry} "$@"'
    assert any("--version" in line for line in singularity_recipe.install)  # the %test section


def test_singularity_records_apptainer_provenance(singularity_recipe):
    env = _env(singularity_recipe)
    assert env["BIDS_DECODE_CONTAINER"] == "apptainer"
    assert env["BIDS_DECODE_IMAGE"] == f"bids_decode-{__version__}.sif"


def test_dockerfile_runtime_environment_writes_nothing_into_the_image(docker_recipe):
    env = _env(docker_recipe)
    assert env["BIDS_DECODE_CONTAINER"] == "docker"
    assert env["TORCH_HOME"] == "/opt/torch"  # read-only, holds the baked weights
    for key in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "MPLCONFIGDIR", "DENO_DIR"):
        assert env[key].startswith("/tmp"), f"{key}={env[key]} must be under /tmp"
    # the decoder's kernels are compiled into a read-only folder of the image at build time
    # (copied under TMPDIR when first used); NUMBA_CACHE_DIR would bypass them
    assert env["BIDS_DECODE_CACHE_DIR"].startswith("/opt/") and "NUMBA_CACHE_DIR" not in env
    assert docker_recipe.workdir == "/tmp"


def test_dockerfile_base_and_dependencies_are_pinned(docker_recipe):
    assert re.fullmatch(r"debian:[a-z]+-\d{8}-slim", docker_recipe.fromHeader)
    lock = [line for line in (ROOT / "docker/requirements.lock").read_text().splitlines()
            if line and not line.startswith("#")]
    loose = [line for line in lock if not re.fullmatch(r"[A-Za-z0-9_.\-]+==[^=\s]+", line)]
    assert not loose, f"unpinned lines in docker/requirements.lock: {loose}"
    names = {line.split("==")[0].lower() for line in lock}
    assert {"torch", "torchvision", "numpy", "numba", "bids-validator-deno"} <= names


def _docker_client() -> str | None:
    """A client that reaches a running engine, or None."""
    for exe in (shutil.which("docker"), "/usr/bin/docker"):
        if exe and Path(exe).exists():
            try:
                proc = subprocess.run([exe, "info"], capture_output=True, timeout=30, check=False)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if proc.returncode == 0:
                return exe
    return None


@pytest.mark.container
@pytest.mark.skipif(_docker_client() is None, reason="no Docker engine answers (docker info)")
def test_container_end_to_end():
    """Build the image, run it locked down, compare with a run outside (minutes)."""
    proc = subprocess.run(["bash", str(ROOT / "scripts/container-test.sh")], cwd=ROOT,
                          capture_output=True, text=True, timeout=3600, check=False)
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    assert "container-test: PASS" in proc.stdout, tail
