"""The peak resident memory of a fresh Python process running a script (Linux's VmHWM of the
process itself: ru_maxrss would also count the pytest process it was forked from)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# A script given to `run_for_peak` ends with this: it prints [RESULT, peak kB] as JSON.
REPORT_PEAK = """
with open("/proc/self/status") as status:
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps([RESULT, peak_kb]))
"""


def run_for_peak(script: str, *args: str) -> tuple[object, float]:
    """Run `script` (which sets RESULT and imports json) with `args` in a fresh process:
    (RESULT, peak resident MB)."""
    out = subprocess.run(
        [sys.executable, "-c", script + REPORT_PEAK, *args],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ).stdout  # fmt: skip
    result, peak_kb = json.loads(out)
    return result, peak_kb / 1024
