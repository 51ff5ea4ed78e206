"""Bake torchvision's pretrained weights of the networks the docs name into the image (build time).

    python docker/fetch-weights.py MODE          MODE: pretrained | none | required

Downloads into torchvision's cache under $TORCH_HOME (``hub/checkpoints``), where bids_decode
looks by default. ``pretrained`` tries and records the outcome but never fails the build (builds
without network access still give a working image, whose users mount the weights);
``required`` fails the build when a download fails; ``none`` skips the download. The outcome is
written to $TORCH_HOME/WEIGHTS.txt and printed.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

NETWORKS = ("alexnet", "vgg19", "resnet18", "resnet50", "vit_b_16")
"""torchvision model names whose DEFAULT weights are baked (docs/features.md names these)."""


def main(mode: str) -> int:
    if mode not in ("pretrained", "none", "required"):
        print(f"fetch-weights: MODE must be pretrained, none or required, got {mode!r}")
        return 64
    import torch
    import torchvision

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    socket.setdefaulttimeout(60)
    lines, failed = [], False
    for net in NETWORKS:
        weights = torchvision.models.get_model_weights(net).DEFAULT
        name = os.path.basename(weights.url)
        if mode == "none":
            lines.append(f"{net}: not baked (build argument WEIGHTS=none); mount {name}")
            continue
        try:
            weights.get_state_dict(progress=False, check_hash=True)
            lines.append(f"{net}: baked {checkpoints / name}")
        except Exception as err:  # noqa: BLE001 - any download failure is recorded, not fatal
            failed = True
            (checkpoints / name).unlink(missing_ok=True)
            lines.append(f"{net}: NOT baked ({type(err).__name__}: {str(err)[:200]}); "
                         f"mount {name} into {checkpoints}")
    text = "\n".join(lines) + "\n"
    (Path(os.environ["TORCH_HOME"]) / "WEIGHTS.txt").write_text(text)
    print("fetch-weights:\n" + text, end="")
    if failed:
        print("fetch-weights: the image has no pretrained weights for the networks above; at run "
              "time mount a folder holding hub/checkpoints/<file> at $TORCH_HOME or pass "
              "--weights FILE (see docs/containers.md).")
    return 1 if failed and mode == "required" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "pretrained"))
