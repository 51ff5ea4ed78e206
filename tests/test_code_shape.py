"""The package's code shape: short functions, one logger convention.

Read with :mod:`ast` (nothing is imported). A function or method is long when its code,
from the ``def`` line to its last line with the docstring left out, spans more than
:data:`MAX_LINES` lines; a long function needs a ``# long: <reason>`` comment on its ``def``
line, in its signature or between the docstring and its first statement. Docstrings do not
count: numpydoc with shapes is wanted, and should not push code into smaller pieces.
"""

from __future__ import annotations

import ast
import io
import re
import textwrap
import tokenize
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "bids_decode"
MAX_LINES = 60
LONG_COMMENT = re.compile(r"#\s*long:\s*\S.{8,}")

def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "data" not in p.relative_to(PKG).parts)


def _docstring_lines(node: ast.AST) -> int:
    body = getattr(node, "body", [])
    if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        return body[0].end_lineno - body[0].lineno + 1
    return 0


def _comments(source: str) -> dict[int, str]:
    """Line number -> the comment on that line."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {tok.start[0]: tok.string for tok in tokens if tok.type == tokenize.COMMENT}


def long_functions(source: str, max_lines: int = MAX_LINES) -> list[tuple[str, int, int]]:
    """(qualified name, def line, code lines) of each long function without a ``# long:``
    comment in ``source``; nested functions are named ``outer.inner``."""
    comments = _comments(source)
    found: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    n_lines = child.end_lineno - child.lineno + 1 - _docstring_lines(child)
                    code = child.body[1:] if _docstring_lines(child) else child.body
                    last = code[0].lineno - 1 if code else child.end_lineno
                    marked = any(LONG_COMMENT.search(comments.get(line, ""))
                                 for line in range(child.lineno, last + 1))
                    if n_lines > max_lines and not marked:
                        found.append((name, child.lineno, n_lines))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def test_long_functions_are_found_and_a_long_comment_excuses_them():
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    doc = '    """A docstring\n\n    of three lines."""\n'
    at_limit = f"def f():\n{doc}{body.split(chr(10), 1)[1]}"  # 63 lines, 60 without the doc
    over = f"def f():\n{doc}{body}"  # 61 lines of code
    long = f"def f(a,\n      b):\n{body}    return x0\n"  # 63 lines
    nested = f"class C:\n    def m(self):\n        def g():\n{textwrap.indent(body, '        ')}"
    assert long_functions(at_limit) == [] and long_functions(over) == [("f", 1, 61)]
    assert long_functions(long) == [("f", 1, 63)]
    assert long_functions(nested) == [("C.m", 2, 62), ("C.m.g", 3, 61)]
    on_def = long.replace("def f(a,\n", "def f(a,  # long: one sequence of steps\n")
    before_code = long.replace("b):\n", "b):\n    # long: one sequence of steps\n")
    assert long_functions(on_def) == [] and long_functions(before_code) == []
    assert long_functions(long.replace("b):\n", "b):\n    # long:\n")) != []  # no reason
    late = long.replace("    x5 = 5\n", "    # long: too late, after the first statement\n")
    assert long_functions(late) != []


def test_package_functions_are_short_or_say_why():
    offenders = []
    for path in _modules():
        rel = str(path.relative_to(PKG))
        offenders += [f"{rel}:{line} {name} ({n} lines)"
                      for name, line, n in long_functions(path.read_text())]
    assert not offenders, (
        f"functions over {MAX_LINES} lines of code (docstring left out): split them, or say "
        "why they read best as one sequence with a '# long: <reason>' comment after the "
        "docstring:\n" + "\n".join(offenders))


ROOT_LOGGER_CALLS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}


def test_every_module_logs_through_LOGGER_named_after_it():
    """``LOGGER = logging.getLogger(__name__)``: children of the app's ``bids_decode``
    logger that the cli sets up, named after the module in the log file."""
    bad = []
    for path in _modules():
        rel = path.relative_to(PKG)
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                    and ast.unparse(node.value.func) == "logging.getLogger"):
                if ast.unparse(node) != "LOGGER = logging.getLogger(__name__)":
                    bad.append(f"{rel}:{node.lineno} {ast.unparse(node)}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "logging"
                    and node.func.attr in ROOT_LOGGER_CALLS):
                bad.append(f"{rel}:{node.lineno} logs on the root logger: {ast.unparse(node)}")
    assert not bad, "expected LOGGER = logging.getLogger(__name__):\n" + "\n".join(bad)


#: a module longer than this holds more than one topic, unless a ``# long: <reason>`` comment
#: among its first :data:`HEADER_LINES` lines says why it reads best as one file
MAX_MODULE_LINES = 400
HEADER_LINES = 40


def long_module(source: str, max_lines: int = MAX_MODULE_LINES) -> int | None:
    """The number of lines of ``source`` when it is over ``max_lines`` and does not say why."""
    n_lines = len(source.splitlines())
    header = source.splitlines()[:HEADER_LINES]
    if n_lines <= max_lines or any(LONG_COMMENT.search(line) for line in header):
        return None
    return n_lines


def test_long_modules_are_found_and_a_long_comment_excuses_them():
    source = "".join(f"x{i} = {i}\n" for i in range(401))
    assert long_module(source) == 401 and long_module(source, max_lines=401) is None
    assert long_module("# long: every parameter is declared here, once\n" + source) is None
    assert long_module("\n" * 45 + "# long: too far down, after the header\n" + source) == 447


def test_package_modules_hold_one_topic_or_say_why():
    offenders = [f"{path.relative_to(PKG)} ({n} lines)" for path in _modules()
                 if (n := long_module(path.read_text()))]
    assert not offenders, (
        f"modules over {MAX_MODULE_LINES} lines: split them by topic, or say why they read best "
        f"as one file with a '# long: <reason>' comment in their first {HEADER_LINES} lines:\n"
        + "\n".join(offenders))
