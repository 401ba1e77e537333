"""Running the installed `xsearch` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run the installed `xsearch` console script in a subprocess; returns CompletedProcess."""
    import subprocess

    exe = Path(sys.executable).with_name("xsearch")
    full_env = {**os.environ, **(env or {}), "COLUMNS": "200"}
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300
    )
