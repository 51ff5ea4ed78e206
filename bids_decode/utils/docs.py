"""Parameter docs shared by several functions, declared once (nilearn's ``fill_doc`` idea).

A docstring names a fragment as ``%(name)s`` on a line of its own, indented as a numpydoc
parameter (four spaces); :func:`fill_doc` puts the fragment there.
"""

from __future__ import annotations

#: name -> numpydoc entry, continuation lines indented for a parameter at four spaces
DOCS = {
    "n_voxels": """n_voxels : int
        Voxels selected per unit; 0 (or at least the number of voxels) means all voxels.""",
    "n_jobs": """n_jobs : int or None, default None
        CPU threads (None or <= 0: all CPUs the process may use); a torch device runs
        one task at a time.""",
    "batch_size": """batch_size : int or None, default None
        Units per thread task; None sizes it from the memory budget (the backend's memory
        model, :func:`bids_decode.decoding.batch_size_for`). Results do not depend on it.""",
    "mem_bytes": """mem_bytes : int, default 1 GiB
        Memory budget for the units in flight, all threads together (the design itself is
        not counted).""",
    "device": """device : str or Backend, default "cpu"
        ``"cpu"`` (compiled kernel, threads), ``"cuda"``/``"cuda:N"`` (torch on a GPU), or
        ``"torch-cpu"`` (the GPU code path on the CPU; for testing); see
        :func:`bids_decode.backends.resolve_backend`.""",
}


def fill_doc(obj):
    """Replace each ``%(name)s`` of ``obj.__doc__`` by ``DOCS[name]``; returns ``obj``."""
    doc = obj.__doc__
    if doc:
        for name, text in DOCS.items():
            doc = doc.replace(f"%({name})s", text)
        if "%(" in doc:
            where = doc[doc.index("%("):][:30]
            raise KeyError(f"unknown doc fragment in {obj.__qualname__}: {where}")
        obj.__doc__ = doc
    return obj
