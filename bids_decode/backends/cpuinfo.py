"""The CPU's identity: its model name and the vector instruction sets of the host and of the
compiled kernels (for the LAPACK calibration's key and for provenance,
:func:`bids_decode.backends.cpu.cpu_info`)."""

from __future__ import annotations

import contextlib
import logging

from bids_decode.backends.numba_cache import numba

LOGGER = logging.getLogger(__name__)

#: LLVM CPU names by the widest vector instruction set their kernels use (for provenance;
#: a name not listed is reported as it is)
_ISA_OF_CPU = {
    "avx512": ("skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client",
               "icelake-server", "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids",
               "graniterapids", "znver4", "znver5", "x86-64-v4"),
    "avx2": ("haswell", "broadwell", "skylake", "alderlake", "raptorlake", "meteorlake",
             "znver1", "znver2", "znver3", "x86-64-v3"),
    "sse": ("generic", "x86-64", "x86-64-v2", "nehalem", "westmere", "sandybridge",
            "ivybridge"),
}


def _isa_of_features(features: str) -> str:
    flags = {f[1:] for f in features.split(",") if f.startswith("+")}
    return "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor elsewhere)."""
    import platform

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f
                          if ln.startswith("model name")), model)
    return model


def isa_info() -> dict:
    """The vector instruction sets of the CPU and of the compiled kernels.

    Returns
    -------
    dict
        ``host_isa`` (widest vector set of the CPU), ``kernel_isa`` (the one the compiled
        kernels target: the host's, or that of ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES``) and
        ``numba_cpu`` (LLVM's CPU name); ``"unknown"`` and None without numba.
    """
    info = {"host_isa": "unknown", "kernel_isa": "unknown", "numba_cpu": None}
    if numba is None:
        return info
    import llvmlite.binding as ll

    info["host_isa"] = _isa_of_features(ll.get_host_cpu_features().flatten())
    name, features = numba.config.CPU_NAME, numba.config.CPU_FEATURES
    info["numba_cpu"] = name or ll.get_host_cpu_name()
    if features:
        info["kernel_isa"] = _isa_of_features(features)
    elif name and name != "host":
        info["kernel_isa"] = next((isa for isa, names in _ISA_OF_CPU.items()
                                   if name in names), f"unknown ({name})")
    else:
        info["kernel_isa"] = info["host_isa"]
    return info
