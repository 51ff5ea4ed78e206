"""The Boutiques descriptor of the BIDS App (``boutiques/bids_decode.json``), for pipeline
platforms (CBRAIN, the BIDS Apps template) that run tools from Boutiques descriptors.

The descriptor is derived from the command-line parser (:func:`cli.build_parser`), which is
itself derived from the parameter declarations (:data:`config.PARAMS`): every option, its
spellings, type, list-ness, choices and help text come from there, one argument group per
config section. So a new parameter enters the descriptor with its declaration; the committed
file is regenerated with::

    python -m bids_decode.boutiques boutiques/bids_decode.json

and ``tests/test_boutiques.py`` checks that the committed file equals the generated one, that
``bosh validate`` accepts it, and that ``bosh exec simulate`` on the example invocation
(``boutiques/invocation.json``) prints a command line that :func:`cli.parse_args` accepts.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from bids_decode import cli
from bids_decode._version import __version__

LOGGER = logging.getLogger(__name__)

SCHEMA_VERSION = "0.5"
#: Metavars of options that name an input file (Boutiques mounts ``File`` inputs into the
#: container at the same path).
FILE_METAVARS = ("FILE", "IMAGE", "TSV")
#: Positional arguments that are input files (OUTPUT_DIR is written, not read).
FILE_POSITIONALS = ("bids_dir",)


def _flag(action: argparse.Action) -> str:
    """The option's long spelling (its first ``--`` name), else its first."""
    return next((s for s in action.option_strings if s.startswith("--")),
                action.option_strings[0])


def _type(action: argparse.Action) -> dict:
    """The Boutiques type of an option's value."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._CountAction)):
        return {"type": "Flag"}
    if action.dest in FILE_POSITIONALS or action.metavar in FILE_METAVARS:
        return {"type": "File"}
    if action.type is int:
        return {"type": "Number", "integer": True}
    if action.type is float:
        return {"type": "Number"}
    return {"type": "String"}


def describe_input(action: argparse.Action) -> dict:
    """One Boutiques input from one argparse action."""
    item = {
        "id": action.dest,
        "name": action.dest.replace("_", " "),
        "description": (action.help or "").replace("%%", "%"),
        "value-key": f"[{action.dest.upper()}]",
        "optional": bool(action.option_strings),
        **_type(action),
    }
    if action.option_strings:
        item["command-line-flag"] = _flag(action)
    if action.nargs in ("+", "*"):
        item.update({"list": True, "min-list-entries": 1 if action.nargs == "+" else 0})
    if action.choices:
        item["value-choices"] = list(action.choices)
    return item


def _groups(parser: argparse.ArgumentParser):
    """(group title, its actions) in ``--help`` order, help and version left out."""
    skip = (argparse._HelpAction, argparse._VersionAction)
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, skip)]
        if actions:
            yield group.title, actions


def descriptor() -> dict:
    """The Boutiques descriptor of ``bids_decode BIDS_DIR OUTPUT_DIR LEVEL [options]``."""
    parser = cli.build_parser()
    inputs, groups = [], []
    for title, actions in _groups(parser):
        items = [describe_input(a) for a in actions]
        inputs += items
        if title != "positional arguments":
            groups.append({"id": "options_" + re.sub(r"\W+", "_", title), "name": title,
                           "members": [i["id"] for i in items]})
    return {
        "name": "bids_decode",
        "tool-version": __version__,
        "schema-version": SCHEMA_VERSION,
        "description": parser.description,
        "author": "bids_decode developers",
        "url": "https://github.com/bids-decode/bids_decode",
        "command-line": " ".join(["bids_decode", *(i["value-key"] for i in inputs)]),
        "container-image": {"type": "docker", "image": f"bids_decode:{__version__}"},
        "inputs": inputs,
        "groups": groups,
        "output-files": [{
            "id": "outputs", "name": "BIDS derivatives",
            "description": "OUTPUT_DIR: the participant and group outputs (docs/outputs.md)",
            "path-template": "[OUTPUT_DIR]", "optional": False}],
        "tags": {"domain": ["neuroimaging", "fmri", "bids", "decoding"]},
        "suggested-resources": {"cpu-cores": 8, "ram": 16, "walltime-estimate": 7200},
    }


def render() -> str:
    """The descriptor as committed (2-space JSON, final newline)."""
    return json.dumps(descriptor(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the descriptor to the given path (stdout without one)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        Path(argv[0]).write_text(render())
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
