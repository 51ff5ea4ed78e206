"""The torch backend: every step of the decoder with torch on one device (``cuda``,
``cuda:N``, or ``torch-cpu``, which runs the GPU code path on the CPU for tests)."""

from __future__ import annotations

import logging

import numpy as np

from bids_decode.backends import torch_encoding, torch_kernels
from bids_decode.backends.base import Backend, row_sums
from bids_decode.errors import UsageError
from bids_decode.utils.grid import UNIT_BLOCK

LOGGER = logging.getLogger(__name__)


class TorchBackend(Backend):
    """Every step with torch on one device (``cuda``, ``cuda:N``, or ``torch-cpu``)."""

    voxel_batch = torch_encoding.SOLVE_BLOCK

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def check_available(self) -> None:
        self.torch_device()

    def torch_device(self):
        import torch

        if self.name.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError(
                f"--device {self.name} was asked for but PyTorch {torch.__version__} sees no "
                f"CUDA GPU (torch.version.cuda is {torch.version.cuda}; in a container: docker "
                "--gpus all, apptainer --nv). Use --device cpu, or run on a GPU node with a "
                "CUDA build of PyTorch.")
        return torch.device("cpu" if self.name == "torch-cpu" else self.name)

    def _gather_bytes(self, k: int, itemsize: int) -> int:
        # the gathered (k+1)^2 block and its int64 index, gathered in sub-batches
        return (8 + itemsize * 3) * (k + 1) ** 2 // 8

    # -- arrays of one design, on the device (created once per design)
    def arrays(self, design) -> dict:
        import torch

        def make():
            dev = self.torch_device()
            return {key: torch.as_tensor(getattr(design, key), device=dev)
                    for key in ("xz", "norm", "mean", "gram")}
        return self.cached(design, "arrays", make)

    def gram(self, design):
        return self.arrays(design)["gram"]

    def gram64(self, design):
        import torch

        return self.cached(design, "gram64", lambda: torch.as_tensor(
            design.gram_as(np.float64), device=self.torch_device()))

    def test_data(self, design, xt):
        """The test data on the device, sent once per :func:`iter_decode` call."""
        import torch

        if xt is None:
            return None
        state = self._states.setdefault(design, {})
        if state.get("xt_src") is not xt:
            state["xt"] = torch.as_tensor(np.asarray(xt, dtype=design.dtype),
                                          device=self.torch_device())
            state["xt_src"] = xt
        return state["xt"]

    # -- array operations
    def correlations(self, design, Y):
        """As :meth:`CPUBackend.correlations`, on the device; Y goes there in its own dtype
        (float32 from a features file: half the bytes) and its finiteness is returned as a
        device flag, read at the one synchronisation point."""
        import torch

        xz = self.arrays(design)["xz"]
        dev = xz.device
        Yd = torch.as_tensor(np.asarray(Y)).to(dev, non_blocking=True)
        finite = torch.isfinite(Yd).all()
        Y64 = Yd.to(torch.float64)
        # (n_units, n_voxels) float64, one fixed-shape GEMM per grid block (see UNIT_BLOCK)
        ct = torch.empty((Y64.shape[1], xz.shape[1]), dtype=torch.float64, device=dev)
        for s in range(0, Y64.shape[1], UNIT_BLOCK):
            torch.matmul(Y64[:, s:s + UNIT_BLOCK].T.contiguous(), xz,
                         out=ct[s:s + UNIT_BLOCK])
        return ct, torch.as_tensor(row_sums(Y), device=dev), finite

    @staticmethod
    def top_k(scores, k: int):
        import torch

        return torch.topk(scores, k, dim=1, sorted=False).indices.sort(dim=1).values

    @staticmethod
    def abs(a):
        return a.abs()

    @staticmethod
    def take_along(a, index):
        import torch

        return torch.gather(a, 1, index)

    @staticmethod
    def empty64(shape, like):
        import torch

        return torch.empty(shape, dtype=torch.float64, device=like.device)

    @staticmethod
    def astype(a, dtype):
        import torch

        return a.to(getattr(torch, np.dtype(dtype).name))

    @staticmethod
    def as_float64(a):
        return None if a is None else a.double()

    @staticmethod
    def solve(gram, index, rhs, cond_max, xt):
        return torch_kernels.solve_selected_torch(gram, index, rhs, cond_max, xt)

    @staticmethod
    def flagged(status):
        import torch

        return torch.nonzero(status != 0).flatten()  # synchronises

    @staticmethod
    def to_host(a):
        return None if a is None else a.cpu().numpy()

    # -- the encoding model
    def device_bytes(self, mem_bytes: int) -> int:
        """On a GPU, 80% of its free memory (its own memory, not the host's budget);
        ``torch-cpu``: ``mem_bytes``."""
        import torch

        dev = self.torch_device()
        if dev.type != "cuda":
            return int(mem_bytes)
        free, _ = torch.cuda.mem_get_info(dev)
        return int(0.8 * free)

    def top_units(self, vz_blocks, k: int, mem_bytes: int):
        """The kept units on the device, merged by a stable sort."""
        return torch_encoding.TorchTopUnits(vz_blocks, k, self.torch_device(),
                                            self.device_bytes(mem_bytes))

    def solve_voxels(self, A, T, Yt, alpha: float, cond_max, pmap, mem_bytes: int):
        """Batched on the device, as many voxels at once as its budget holds."""
        k1, n_train = A.shape[1], A.shape[2]
        isz = A.dtype.itemsize
        per = isz * (k1 * n_train + (k1 - 1) * T.shape[2] + n_train + 3 * k1 * k1)
        per += 0 if isz == 8 else 2 * per  # the float64 redo of a whole batch
        batch = int(min(len(Yt), self.device_bytes(mem_bytes) // per))
        return torch_encoding.solve_voxels_torch(A, T, Yt, alpha, cond_max,
                                                 self.torch_device(), batch)

    def dual_predictions(self, blocks, V_train, alpha: float, n_test: int, dtype,
                         voxel_blocks):
        return torch_encoding.dual_predictions_torch(blocks, V_train, alpha, n_test, dtype,
                                                     voxel_blocks, self.torch_device())
