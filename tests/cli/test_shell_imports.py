"""The command line is a shell over the public API: it imports nothing else from xsearch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT

ALLOWED = ("xsearch", "xsearch.api", "xsearch.errors", "xsearch.cli")


def xsearch_imports(source: str) -> list[str]:
    """Every xsearch module a file imports, at any depth (inside functions too)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [m for m in found if m == "xsearch" or m.startswith("xsearch.")]


def outside_public_api(module: str) -> bool:
    return not (module in ALLOWED or module.startswith("xsearch.cli."))


@pytest.mark.parametrize("path", sorted((ROOT / "cli").glob("*.py")), ids=lambda p: p.name)
def test_cli_modules_import_only_the_public_api(path: Path):
    bad = [m for m in xsearch_imports(path.read_text()) if outside_public_api(m)]
    assert not bad, f"{path.name} reaches past the public API: {bad}"


def test_the_check_catches_an_internal_import():
    source = "def f():\n    from xsearch.store.store import Store\n    import xsearch.api\n"
    assert [m for m in xsearch_imports(source) if outside_public_api(m)] == ["xsearch.store.store"]


def test_importing_xsearch_changes_nothing_in_the_process():
    """A library must not change its host's threading or warnings when imported."""
    code = (
        "import os, sys, warnings; before = dict(os.environ); shown = warnings.showwarning; "
        "import xsearch, xsearch.api; "
        "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items()); "
        "assert warnings.showwarning is shown; "
        "assert 'numpy' not in sys.modules and 'torch' not in sys.modules, 'heavy import'"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("GOMP_SPINCOUNT",)}
    env.pop("OPENBLAS_THREAD_TIMEOUT", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_tune_threads_is_explicit_and_respects_the_environment(monkeypatch):
    import xsearch

    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "7")
    settings = xsearch.tune_threads()
    assert settings == {"OPENBLAS_THREAD_TIMEOUT": "7", "GOMP_SPINCOUNT": "10000"}
