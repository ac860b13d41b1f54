"""The broker's logic touches files only through reference_broker/log/ (docs/architecture.md,
principle 1). The import contracts in pyproject.toml keep ``os``, ``shutil``, ``asyncio``,
``socket`` and ``time`` out of it; this test finds what an import cannot show: calls of the
builtin ``open`` and of the file methods of ``pathlib.Path``."""

from __future__ import annotations

import ast
from pathlib import Path

import reference_broker

PACKAGE = Path(reference_broker.__file__).parent
# The I/O of the broker: the drivers, the data directory (log/), the process entry points, and
# the test helpers that simulate a disk.
IO_PLACES = ("drivers", "log", "__main__.py", "cli.py", "testing.py")
FILE_METHODS = {"read_text", "write_text", "read_bytes", "write_bytes", "unlink", "mkdir", "rmdir",
                "iterdir", "rename", "touch", "glob", "rglob", "open"}


def _file_calls(path: Path, root: Path = PACKAGE) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open":
            found.append(f"{path.relative_to(root)}:{node.lineno} open()")
        elif isinstance(func, ast.Attribute) and func.attr in FILE_METHODS and not (
                func.attr == "open" and isinstance(func.value, ast.Name) and func.value.id == "PartitionLog"):
            found.append(f"{path.relative_to(root)}:{node.lineno} .{func.attr}()")
    return found


def _logic_modules() -> list[Path]:
    return [path for path in sorted(PACKAGE.rglob("*.py"))
            if not any(part in IO_PLACES for part in path.relative_to(PACKAGE).parts)]


def test_the_logic_modules_call_no_file_operation() -> None:
    modules = _logic_modules()
    assert PACKAGE / "broker.py" in modules and PACKAGE / "groups" / "coordinator.py" in modules
    assert [call for path in modules for call in _file_calls(path)] == []


def test_the_search_finds_file_calls(tmp_path: Path) -> None:
    """The check can fail: it sees the calls it looks for (and lets PartitionLog.open pass)."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f(p):\n    open(p)\n    p.write_text('x')\n    PartitionLog.open(p)\n")
    assert _file_calls(probe, tmp_path) == ["probe.py:2 open()", "probe.py:3 .write_text()"]
