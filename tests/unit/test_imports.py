"""Imports say what a module depends on: the harness's own modules are imported at module top.

An import of a `harness.*` module anywhere else (a function body, an `if TYPE_CHECKING:` block)
hides a dependency and usually an import cycle, so it needs a comment saying why, on its line or
on the comment line above its group of imports. Heavy third-party packages (torch, TensorFlow,
locust...) are imported locally and are ruff's business (TID253), not this test's; moving the
harness's own imports to the top must not drag them in either.
"""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "harness"
HEAVY = ("torch", "tensorflow", "tf_keras", "tensorflow_model_optimization", "torchao", "locust", "gevent")
# modules that import a heavy framework at top level by design (they run inside its process)
HEAVY_BY_DESIGN = {"harness.serving.torchserve_handler"}


def _is_harness_import(node: ast.stmt) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] == "harness"
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == "harness" for alias in node.names)
    return False


def _comment_lines(source: str) -> set[int]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT}


def _nested_imports(tree: ast.Module) -> list[tuple[ast.stmt, list[ast.stmt]]]:
    """Every import statement not directly in the module body, with the body list it sits in."""
    found = []
    for parent in ast.walk(tree):
        if parent is tree:
            continue
        for name in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(parent, name, None)
            if isinstance(block, list):
                found.extend((stmt, block) for stmt in block if isinstance(stmt, ast.Import | ast.ImportFrom))
    return found


def _has_reason(node: ast.stmt, block: list[ast.stmt], comments: set[int], lines: list[str]) -> bool:
    assert node.end_lineno is not None
    if comments & set(range(node.lineno, node.end_lineno + 1)):
        return True
    # a comment line directly above the first of a run of adjacent imports covers the run
    head = node
    index = block.index(node)
    while index > 0:
        previous = block[index - 1]
        if not isinstance(previous, ast.Import | ast.ImportFrom) or previous.end_lineno != head.lineno - 1:
            break
        head, index = previous, index - 1
    above = head.lineno - 1
    return above >= 1 and above in comments and lines[above - 1].lstrip().startswith("#")


def unexplained_local_imports(source: str) -> list[ast.stmt]:
    """The harness imports in `source` that are not at module top and carry no comment saying why."""
    tree = ast.parse(source)
    comments = _comment_lines(source)
    lines = source.splitlines()
    return [
        node
        for node, block in _nested_imports(tree)
        if _is_harness_import(node) and not _has_reason(node, block, comments, lines)
    ]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_harness_modules_import_the_harness_at_top_or_say_why():
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in unexplained_local_imports(path.read_text())
    ]
    assert not offenders, (
        "imports of harness modules belong at the top of the module (STYLE.md: imports say what a "
        "module depends on); an import cycle means the code is in the wrong place. Move these, or "
        "say on the line (or the comment line above) why they cannot move:\n" + "\n".join(offenders)
    )


def test_check_flags_only_harness_imports_inside_functions_without_a_comment():
    source = (
        "from harness.errors import HarnessError\n\n\n"
        "def silent():\n"
        "    from harness.errors import UserError\n"
        "    return UserError\n\n\n"
        "def explained():\n"
        "    # cycle: harness.x -> harness.y -> this module\n"
        "    from harness.errors import RunError\n"
        "    from harness.errors import first_line\n\n"
        "    return RunError, first_line\n\n\n"
        "def inline():\n"
        "    from harness.api import compare  # local: keeps --help fast\n"
        "    import torch\n\n"
        "    import harness.scenario\n"  # a blank line ends the commented group
        "    return compare, torch\n"
    )
    flagged = [ast.unparse(node) for node in unexplained_local_imports(source)]
    assert flagged == ["from harness.errors import UserError", "import harness.scenario"]


def test_importing_every_harness_module_loads_no_heavy_framework():
    modules = [
        _module_name(path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if "locustfiles" not in path.parts and path.name != "__main__.py"
    ]
    modules = [name for name in modules if name not in HEAVY_BY_DESIGN]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"a module-level import pulled in {out.stdout.strip()}"
