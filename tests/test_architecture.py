"""The package's shape: no import cycles (imports inside functions count), typer and sys.argv only in the
CLI, a public API that imports, and ``python -m caduceus_cli``."""

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "caduceus_cli"


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PKG.parent).with_suffix("").parts): p for p in PKG.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_no_import_cycles():
    """Every import between the package's modules, at any depth, goes one way (package __init__s aside)."""
    mods = {m: p for m, p in _modules().items() if not m.endswith("__init__")}
    graph = {}
    for m, p in mods.items():
        graph[m] = {n for n in _imports(p) if n in mods and n != m}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")
    assert len(order) == len(mods)


def test_only_the_cli_touches_typer_and_argv():
    for m, p in _modules().items():
        if m.startswith("caduceus_cli.cli"):
            continue
        src = p.read_text()
        assert not any(n.split(".")[0] in ("typer", "click") for n in _imports(p)), f"{m} imports typer/click"
        assert "sys.argv" not in src, f"{m} reads sys.argv"


def test_public_api_and_python_m():
    import caduceus_cli

    for name in caduceus_cli.__all__:
        assert getattr(caduceus_cli, name) is not None, name
    code = "import sys, caduceus_cli; print(sorted(m for m in ('typer', 'pysam', 'torch') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
    p = subprocess.run([sys.executable, "-m", "caduceus_cli", "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == f"caduceus {caduceus_cli.__version__}"
    assert (PKG / "py.typed").exists()


def test_all_lists_exactly_the_exports():
    import caduceus_cli

    assert set(caduceus_cli.__all__) == {"__version__", *caduceus_cli._EXPORTS}
