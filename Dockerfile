# bids_decode BIDS App image.
#
#   docker build -t bids_decode:0.1.0 .          (BuildKit: DOCKER_BUILDKIT=1 or docker buildx)
#   docker run --rm --read-only --tmpfs /tmp --user "$(id -u):$(id -g)" --network none \
#       -v /data/ds:/data:ro -v /data/out:/out bids_decode:0.1.0 /data /out participant
#
# Build arguments:
#   BASE_IMAGE  pinned Debian base. Upstream it is Docker Hub's tag, whose digest on 2025-05-20 was
#               sha256:90522eeb7e5923ee2b871c639059537b30521272f10ca86fdbbbb2b75a8c40cd (pass
#               BASE_IMAGE=debian:bookworm-20250520-slim@sha256:... to enforce it); where Docker Hub
#               cannot be reached, docker/make-base.sh makes the same tag from Debian's packages.
#   WEIGHTS     pretrained (default): download torchvision's weights of alexnet, vgg19, resnet18,
#               resnet50 and vit_b_16 (docker/fetch-weights.py) into the image if the build has
#               network access, else record that they must be mounted;
#               required: fail the build without them; none: do not try.
#   IMAGE_TAG   the tag, recorded in the outputs' dataset_description.json (GeneratedBy.Container).
# Secrets (optional): --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt gives pip a CA bundle
# (networks that intercept TLS). Python packages come from docker/wheels when
# docker/fetch-wheels.sh filled it, else from PyPI; either way at the pins of
# docker/requirements.lock.
ARG BASE_IMAGE=debian:bookworm-20250520-slim
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="bids_decode" \
      org.opencontainers.image.description="BIDS App: decode deep-network unit activations from fMRI" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/bids-decode/bids_decode"

# Debian's Python 3.11 (the version the lock was resolved for); python3-venv brings ensurepip.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && python3 -m venv /opt/venv

# Pinned dependencies in their own layer, so that a change of the package reuses it.
COPY docker/requirements.lock /opt/bids_decode/requirements.lock
RUN --mount=type=bind,source=docker/wheels,target=/wheels \
    --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    if find /wheels -maxdepth 1 -name '*.whl' | grep -q .; then set -- --no-index --find-links /wheels; fi; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --progress-bar off \
        "$@" -r /opt/bids_decode/requirements.lock

# Runtime environment: nothing is written into the image at run time (--read-only works with a
# tmpfs on /tmp); any --user works (HOME and caches are under /tmp); weights are read from
# torchvision's cache under TORCH_HOME, a read-only folder of the image; the decoder's compiled
# kernels from BIDS_DECODE_CACHE_DIR, compiled at build time (copied to /tmp when first used,
# since numba reads its cache only from a writable folder).
ENV PATH=/opt/venv/bin:$PATH \
    TORCH_HOME=/opt/torch \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/.cache/matplotlib \
    BIDS_DECODE_CACHE_DIR=/opt/bids_decode/kernels \
    DENO_DIR=/tmp/.cache/deno \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONNOUSERSITE=1 \
    PYTHONUNBUFFERED=1 \
    BIDS_DECODE_PROGRESS=0 \
    BIDS_DECODE_CONTAINER=docker

ARG WEIGHTS=pretrained
COPY docker/fetch-weights.py /opt/bids_decode/fetch-weights.py
RUN mkdir -p "$TORCH_HOME" \
 && HOME=/root python /opt/bids_decode/fetch-weights.py "$WEIGHTS" \
 && chmod -R a+rX "$TORCH_HOME" \
 && rm -rf /tmp/* /tmp/.[!.]*

# The package itself (pure Python): built without network from the copied sources.
COPY pyproject.toml README.md run.py /opt/bids_decode/src/
COPY bids_decode /opt/bids_decode/src/bids_decode
RUN pip install --no-cache-dir --disable-pip-version-check --no-index --no-deps \
        --no-build-isolation /opt/bids_decode/src \
 && install -m 0755 /opt/bids_decode/src/run.py /opt/bids_decode/run.py \
 && rm -rf /opt/bids_decode/src /root/.cache \
 && python -c "import bids_decode, torch, torchvision, numba" \
 && bids_decode --version \
 && python -c "from bids_decode.backends.cpu_kernels import warm_up; print('kernels compiled:', warm_up())" \
 && chmod -R a+rX "$BIDS_DECODE_CACHE_DIR" \
 && rm -rf /tmp/* /tmp/.[!.]*

ARG IMAGE_TAG=bids_decode
ENV BIDS_DECODE_IMAGE=${IMAGE_TAG}
WORKDIR /tmp
ENTRYPOINT ["/opt/venv/bin/python", "/opt/bids_decode/run.py"]
CMD ["--help"]
