"""Events: which rows of an ``events.tsv`` are samples, and what marks a repeat.

:func:`read_blocks` reads one events file into its sample blocks (:class:`Blocks`: stimulus,
onset, duration), as an :class:`EventSpec` (the task's defaults and the options) and the file's
convention say. Conventions, tried in this order for each events file:

1. ``--sample-events COLUMN=VALUE[,VALUE]`` (optionally ``train:`` or ``test:`` first): the
   rows whose COLUMN is one of the values; one-back repeats dropped for perception tasks.
2. An ``events.json`` sidecar (BIDS inheritance: ``<run>_events.json`` or
   ``task-<task>_events.json`` in a parent folder) whose ``event_type`` column has ``Levels``:
   the levels described as the task's sample blocks ("stimulus" for perception, "imagery" for
   imagery; not rest, cue, evaluation or repetition). Levels described as a repetition mark the
   repeats (not samples).
3. ds001246 (Generic Object Decoding): ``event_type`` strings, ``stimulus`` (perception) or
   ``imagery``; a one-back repeat is the same image twice in a row, dropped.
4. Kamitani lab numeric codes (ds001506, Deep Image Reconstruction): perception 1 = stimulus
   block, 2 = repetition block (not a sample), -1/-2/-3 = rest; imagery 1 = cue, 2 = imagery,
   3 = evaluation, 4 = rest (and -1/-2 rest).
5. No ``event_type`` column: every row naming a stimulus.

Anything else is a data error naming the file, the ``event_type`` values found and the option
that states the convention.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bids_decode.errors import DataError, UsageError
from bids_decode.inputs.bids_names import inherited_sidecars, read_sidecar
from bids_decode.inputs.layout import task_defaults

LOGGER = logging.getLogger(__name__)

#: numeric ``event_type`` codes of the Kamitani lab (ds001506): all codes, sample, repeat
NUMERIC_CODES = {
    "perception": ({"-3", "-2", "-1", "1", "2"}, ("1",), ("2",)),
    "imagery": ({"-2", "-1", "1", "2", "3", "4"}, ("2",), ()),
}
#: value of ``event_type`` that marks a stimulus block in ds001246 perception runs
STIMULUS_EVENT_TYPE = "stimulus"
#: ``event_type`` strings of ds001246
STRING_CODES = {"perception": "stimulus", "imagery": "imagery"}
#: words of an events.json level description: sample blocks of each kind, and words that
#: rule a level out
LEVEL_WORDS = {"perception": ("stimulus", "stimuli", "image presentation"),
               "imagery": ("imagery", "imagine")}
LEVEL_EXCLUDE = re.compile(r"\b(repet|repeat|rest\b|cue|evaluat|response|fixation|blank)")
REPEAT_WORDS = re.compile(r"\b(repet|repeat)")


@dataclass(frozen=True)
class Convention:
    """How one events file is cut into samples.

    Attributes
    ----------
    name : str
        ``option``, ``events.json``, ``ds001246``, ``kamitani-numeric`` or ``all-rows``.
    column : str or None
        Column selecting the sample rows (None: every row naming a stimulus).
    values : tuple of str
        Values of ``column`` that are samples.
    repeat_values : tuple of str
        Values of ``column`` marking repetition blocks (not samples, counted as repeats).
    one_back : bool
        Drop a sample equal to the previous sample (ds001246's one-back repeats).
    """

    name: str
    column: str | None
    values: tuple[str, ...] = ()
    repeat_values: tuple[str, ...] = ()
    one_back: bool = False

    def describe(self, stimulus_column: str) -> str:
        """One line for the log and the run config."""
        rows = (f"{self.column} = {'/'.join(self.values)}" if self.column
                else "every row")
        if self.one_back:
            rep = "one-back repeats (same image twice in a row) dropped"
        elif self.repeat_values:
            rep = f"{self.column} = {'/'.join(self.repeat_values)} marks repeats (not samples)"
        else:
            rep = "no repeats dropped"
        return f"{self.name}: samples are rows with {rows}, image in '{stimulus_column}'; {rep}"


def parse_sample_events(items) -> dict[str, tuple[str, tuple[str, ...]]]:
    """``[train:|test:]COLUMN=VALUE[,VALUE]`` items -> {"train"/"test": (column, values)}.

    An item without prefix applies to both. Raises UsageError for a malformed item.
    """
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for item in items or ():
        split, sep, rest = str(item).partition(":")
        if not sep or split not in ("train", "test"):
            split, rest = "", str(item)
        col, eq, vals = rest.partition("=")
        values = tuple(v.strip() for v in vals.split(",") if v.strip())
        if not eq or not col.strip() or not values:
            raise UsageError(
                f"--sample-events takes [train:|test:]COLUMN=VALUE[,VALUE...] (e.g. "
                f"event_type=1 or test:event_type=2); got {item!r}."
            )
        for s in ((split,) if split else ("train", "test")):
            out[s] = (col.strip(), tuple(canonical(v) for v in values))
    return out


def canonical(value) -> str:
    """An event code as text, numbers without a trailing ``.0`` (``'1.0'`` -> ``'1'``)."""
    text = str(value).strip()
    try:
        num = float(text)
    except ValueError:
        return text
    return str(int(num)) if num.is_integer() else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def sidecar_levels(events: Path, column: str = "event_type") -> tuple[dict, Path] | None:
    """``Levels`` of ``column`` from the events.json sidecars of ``events`` (inherited).

    Walks from the dataset root (the nearest parent with ``dataset_description.json``) down to
    the file's folder; deeper sidecars win. Returns (levels, sidecar path) or None.
    """
    found = None
    for js in inherited_sidecars(events, "*_events.json"):
        meta = read_sidecar(js, "events sidecar")
        levels = (meta.get(column) or {}).get("Levels") if isinstance(meta, dict) else None
        if isinstance(levels, dict) and levels:
            found = ({canonical(k): str(v) for k, v in levels.items()}, js)
    return found


def _from_levels(levels: dict, kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    samples = tuple(k for k, d in levels.items()
                    if any(w in d.lower() for w in LEVEL_WORDS[kind])
                    and not LEVEL_EXCLUDE.search(d.lower()))
    repeats = tuple(k for k, d in levels.items() if REPEAT_WORDS.search(d.lower()))
    return samples, repeats


def detect(df: pd.DataFrame, events: Path, kind: str, *, default_type: str,
           option: tuple[str, tuple[str, ...]] | None = None,
           drop_repeats: bool = True, stimulus_column: str | None = None) -> Convention:
    """The convention of one events file (see the module docstring for the order).

    Parameters
    ----------
    df : DataFrame
        The events table (strings).
    events : Path
        Its path (sidecars, messages).
    kind : {"perception", "imagery"}
        What the samples of this task are.
    default_type : str
        The task's ``event_type`` string for ds001246-style events.
    option : (column, values), optional
        From ``--sample-events``.
    drop_repeats : bool
        Whether the task drops one-back repeats (ds001246 perception).
    stimulus_column : str, optional
        The column naming the stimulus (for the example value of an error).
    """
    if option is not None:
        col, values = option
        if col not in df.columns:
            raise DataError(
                f"--sample-events names the column '{col}' but the events file {events} has "
                f"columns {list(df.columns)}. Fix --sample-events."
            )
        return Convention("option", col, values, (), drop_repeats)
    if "event_type" not in df.columns:
        return Convention("all-rows", None, (), (), drop_repeats)
    found = sorted({canonical(v) for v in df["event_type"].dropna().astype(str)
                    if v.strip() not in ("", "n/a")}, key=_code_order)
    side = sidecar_levels(events)
    if side is not None:
        levels, js = side
        samples, repeats = _from_levels(levels, kind)
        if samples:
            return Convention("events.json", "event_type", samples, repeats,
                              drop_repeats and not repeats)
        raise DataError(
            f"The events sidecar {js} describes event_type levels {levels} but none reads as a "
            f"{kind} sample block ({' / '.join(LEVEL_WORDS[kind])}, not rest, cue or "
            f"repetition); events file {events}, values found {found}. State the sample rows "
            "with --sample-events event_type=VALUE."
        )
    if default_type in found or STRING_CODES[kind] in found:
        value = default_type if default_type in found else STRING_CODES[kind]
        return Convention("ds001246", "event_type", (value,), (), drop_repeats)
    codes, sample, repeat = NUMERIC_CODES[kind]
    if found and all(_is_number(v) for v in found) and set(found) <= codes \
            and set(sample) & set(found):
        return Convention("kamitani-numeric", "event_type", sample,
                          tuple(r for r in repeat if r in found), False)
    example = found[0] if found else "VALUE"
    if stimulus_column in df.columns:  # the commonest code of rows naming a stimulus
        named = df[df[stimulus_column].notna() & (df[stimulus_column].astype(str) != "")]
        codes_named = named["event_type"].dropna().astype(str).map(canonical)
        if len(codes_named):
            example = codes_named.value_counts().index[0]
    raise DataError(
        f"The events file {events} uses an event convention bids_decode does not know: "
        f"event_type values {found[:20]} (known: ds001246's '{STRING_CODES[kind]}', the Kamitani "
        f"lab's numeric codes, {sorted(codes, key=_code_order)} with {'/'.join(sample)} = "
        f"{kind} block, or the Levels of an events.json sidecar). State which rows are "
        f"samples with --sample-events event_type=VALUE (e.g. --sample-events "
        f"event_type={example}) and, if needed, the image column with --stimulus-column."
    )


def _code_order(v: str):
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)


def sample_rows(df: pd.DataFrame, conv: Convention) -> tuple[pd.Series, int]:
    """Boolean mask of the sample rows, and the number of rows marked as repeats."""
    if conv.column is None:
        return pd.Series(True, index=df.index), 0
    codes = df[conv.column].astype(str).map(canonical)
    return codes.isin(conv.values), int(codes.isin(conv.repeat_values).sum())


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class EventSpec:
    """Which events are samples and which column names their stimulus.

    Attributes
    ----------
    column : str or None
        Requested column; None = the first of ``columns`` present.
    columns : tuple of str
        Default columns, in order of preference.
    event_type : str
        Rows whose ``event_type`` equals this (when the column exists).
    drop_repeats : bool
        Drop one-back repeats (a sample equal to the previous one).
    kind : {"perception", "imagery"}
        What a sample block of the task is (for the event-convention detection).
    sample_events : (column, values), optional
        Sample rows stated by ``--sample-events`` (see :mod:`bids_decode.inputs.events`).
    """

    column: str | None = None
    columns: tuple[str, ...] = ("stim_file", "stimulus_name")
    event_type: str = STIMULUS_EVENT_TYPE
    drop_repeats: bool = True
    kind: str = "perception"
    sample_events: tuple[str, tuple[str, ...]] | None = None

    @classmethod
    def for_task(cls, task: str, column: str | None = None,
                 sample_events: tuple[str, tuple[str, ...]] | None = None) -> EventSpec:
        d = task_defaults(task)
        kind = "imagery" if d["event_type"] == "imagery" else "perception"
        return cls(column, tuple(d["columns"]), d["event_type"], d["drop_repeats"], kind,
                   sample_events)


@dataclass
class Blocks:
    """The stimulus blocks of one run.

    Attributes
    ----------
    labels : list of str
        Stimulus of each kept block.
    onsets, durations : ndarray of shape (n_blocks,)
    n_repeats : int
        One-back repeats dropped, or repetition blocks left out.
    convention : str
        How the samples were chosen (:meth:`bids_decode.inputs.events.Convention.describe`).
    """

    labels: list[str]
    onsets: np.ndarray
    durations: np.ndarray
    n_repeats: int
    convention: str = ""


def choose_stimulus_column(columns, requested: str | None, path: Path,
                           defaults=("stim_file", "stimulus_name")) -> str:
    """The events column naming the stimulus: the requested one, else the first default."""
    if requested:
        if requested not in columns:
            raise DataError(
                f"The events file {path} has no column '{requested}' (columns: {list(columns)}). "
                "Fix --stimulus-column."
            )
        return requested
    for col in defaults:
        if col in columns:
            return col
    raise DataError(
        f"The events file {path} has none of the columns {list(defaults)} (columns: "
        f"{list(columns)}). Name the column that identifies the image with --stimulus-column."
    )


def read_blocks(events: Path, spec: EventSpec | str | None = None) -> Blocks:
    """Sample blocks of one events file (one-back repeats dropped when the spec says so)."""
    if not isinstance(spec, EventSpec):
        spec = EventSpec(column=spec)
    try:
        df = pd.read_csv(events, sep="\t", na_values=["n/a"], keep_default_na=False,
                         dtype={"stimulus_name": str, "stim_file": str})
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"Cannot read the events file {events} ({err}). Fix or replace it.") \
            from err
    for col in ("onset", "duration"):
        if col not in df.columns:
            raise DataError(f"The events file {events} has no '{col}' column (columns: "
                            f"{list(df.columns)}); BIDS events need onset and duration.")
    col = choose_stimulus_column(df.columns, spec.column, events, spec.columns)
    conv = detect(df, events, spec.kind, default_type=spec.event_type,
                             option=spec.sample_events, drop_repeats=spec.drop_repeats,
                             stimulus_column=col)
    rows, n_marked = sample_rows(df, conv)
    df = df[rows & df[col].notna() & (df[col].astype(str) != "")]
    if df.empty:
        raise DataError(
            f"The events file {events} has no sample events ({conv.describe(col)}). Check the "
            "file or --task, or state the sample rows with --sample-events COLUMN=VALUE."
        )
    names = df[col].astype(str).tolist()
    onsets = pd.to_numeric(df["onset"], errors="coerce").to_numpy(float)
    durations = pd.to_numeric(df["duration"], errors="coerce").to_numpy(float)
    if not (np.isfinite(onsets).all() and np.isfinite(durations).all()):
        raise DataError(f"The events file {events} has missing or non-numeric onsets or "
                        "durations in its sample rows. Fix the file (seconds, 'n/a' only for "
                        "rows that are not samples).")
    if (durations < 0).any():
        i = int(np.flatnonzero(durations < 0)[0])
        raise DataError(f"The events file {events} has a negative duration ({durations[i]:g} s "
                        f"for '{names[i]}' at {onsets[i]:g} s); durations are seconds >= 0. "
                        "Fix the file.")
    keep = np.ones(len(names), dtype=bool)
    for i in range(1, len(names)):
        if conv.one_back and names[i] == names[i - 1]:
            keep[i] = False
    labels = [n for n, k in zip(names, keep) if k]
    return Blocks(labels, onsets[keep], durations[keep], int((~keep).sum()) + n_marked,
                  conv.describe(col))
