"""The real events the simulation reuses: ds001246's or ds001506's runs as templates.

:data:`LAYOUTS` names, per dataset, its TR, template subjects and the session prefixes of the
training, test and imagery runs; the events files ship in ``bids_decode/data/<dataset>``.
"""

from __future__ import annotations

import logging
from importlib import resources

import numpy as np
import pandas as pd

LOGGER = logging.getLogger(__name__)


#: Real datasets whose events drive the simulation: TR, template subjects, session prefixes
#: of the training, test and imagery runs (several test prefixes: n_test_runs of each).
LAYOUTS = {
    "ds001246": {"tr": 3.0, "subjects": ("01", "02", "03"), "train": "perceptionTraining",
                 "test": ("perceptionTest",), "imagery": "imageryTest"},
    "ds001506": {"tr": 2.0, "subjects": ("01",), "train": "perceptionNaturalImageTraining",
                 "test": ("perceptionNaturalImageTest", "perceptionArtificialImage",
                          "perceptionLetterImage"), "imagery": "imagery"},
}


def data_root(layout: str = "ds001246"):
    """The folder of a template dataset's events and sidecars (package data)."""
    return resources.files("bids_decode") / "data" / layout


def template_runs(template_subject: str, session_prefix: str,
                  layout: str = "ds001246") -> list[tuple[str, str]]:
    """(session, events file name) of a real subject's runs, in session and run order."""
    root = data_root(layout) / f"sub-{template_subject}"
    out = []
    for ses in sorted(p.name for p in root.iterdir() if p.name.startswith(f"ses-{session_prefix}")):
        func = root / ses / "func"
        for f in sorted(p.name for p in func.iterdir() if p.name.endswith("_events.tsv")):
            out.append((ses, f))
    return out


def _layout_plan(layout: str, tmpl: str, n_train: int, n_test: int, n_imagery: int):
    """(session, events file) of the template subject's runs used by the simulation."""
    lay = LAYOUTS[layout]
    runs = template_runs(tmpl, lay["train"], layout)[:n_train]
    for prefix in lay["test"]:
        runs += template_runs(tmpl, prefix, layout)[:n_test]
    return runs + template_runs(tmpl, lay["imagery"], layout)[:n_imagery]


def read_template_events(path, layout: str = "ds001246") -> pd.DataFrame:
    """A template events table with ds001246's event names (the simulation's vocabulary).

    ds001506's numeric codes become ``stimulus`` (perception 1 and 2: a repetition block shows
    its image again), ``imagery`` (imagery 2) and ``rest``.
    """
    ev = pd.read_csv(path, sep="\t", dtype=str)
    if layout == "ds001246":
        return ev
    code = ev["event_type"].astype(str).str.strip()
    if "task-imagery" in str(path):
        ev["event_type"] = np.where(code == "2", "imagery", "rest")
    else:
        ev["event_type"] = np.where(code.isin(["1", "2"]), "stimulus", "rest")
    return ev


def subject_plans(layout: str, subjects: list[str], n_train_runs: int, n_test_runs: int,
                  n_imagery_runs: int) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Subject -> (template subject, its (session, events file) runs used)."""
    plan = {}
    for i, sub in enumerate(subjects):
        tmpls = LAYOUTS[layout]["subjects"]
        tmpl = tmpls[i % len(tmpls)]
        plan[sub] = (tmpl, _layout_plan(layout, tmpl, n_train_runs, n_test_runs,
                                        n_imagery_runs))
    return plan


def images_named(plan: dict, src, layout: str) -> list[str]:
    """Sorted names of the images shown in the events of the planned runs."""
    images = set()
    for tmpl, runs in plan.values():
        for ses, fname in runs:
            ev = read_template_events(src / f"sub-{tmpl}" / ses / "func" / fname, layout)
            if "stimulus_name" in ev.columns:
                images.update(ev.loc[ev["event_type"] == "stimulus", "stimulus_name"])
    return sorted(images)


def image_indices(images: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Image name -> row; category (name before ``_``) -> row of its first image."""
    img_index = {name: i for i, name in enumerate(images)}
    cat_index = {}
    for name in images:
        cat_index.setdefault(name.split("_")[0], img_index[name])
    return img_index, cat_index
