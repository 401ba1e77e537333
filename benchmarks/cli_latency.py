"""Command-line latency: whole-process wall time of `xsearch` commands, against `import torch`.

Each command runs as its own process, the way a user or a script runs it, with its output piped
(not a terminal). Every command runs once unmeasured first (the page cache is then warm: "cold"
below means no resident process, not a cold disk), then `--runs` rounds, each running every
command once in turn, so that all rows share the same minutes of machine load. Reported per
command: median, min and max wall seconds, the median CPU seconds (user + system of the process
and its children), the ratio of the median to that of `python -c "import torch"` measured in
the first rounds (the resident rounds time it again, for comparison), and the wall time of
the unmeasured first run (which also fills the model's tower cache, under a scratch
XSEARCH_CACHE). The load average (os.getloadavg) is recorded before each round.

Commands, for each index size (`--sizes`, default 10k and 100k items):
- `xsearch query --index NAME --text "dog bark" --target audio --json`, cold;
- the same while `xsearch serve --local-only --index NAME` runs in the background (ready once
  it prints the line saying it listens), in rounds of their own after the others (with the
  reference again), since a running server would answer the cold queries too; skipped, with a
  note, when `xsearch serve --help` does not offer `--local-only`;
- usage errors: `-k 0`, and a `--where` naming a column that does not exist;
and once: `xsearch --help`, and a re-ingest of `--files` unchanged files (half small PNGs, half
short WAVs) into an index that already holds them.

Indexes are bound to the default config with random weights, the identity `xsearch ingest
--weights random` records ({"encoder": "audioclip", "config": "audioclip", "weights":
"random"}, widths 1024 for image, audio and text, recipe of the default ingest), so the query
runs the real-size text tower. The query indexes hold N audio items, one per file (seeded
random unit vectors), written directly through the store's Writer rather than embedded. The
re-ingest index is what an ingest of the generated files produces: they are ingested once
through the engine's ingest with the default config's spec and identity, the model replaced by
the torch-free fake encoder (vectors drawn from a hash of each input: the rows, recipe and
manifest are the ingest's own); the timed `xsearch ingest` then finds every file unchanged.

Where the time of a cold query goes: the process is run once more per size under
`python -X importtime`; the sum of its import times is reported, and the rest of the wall time
(model build, index load, search, output) beside it. The command line exposes no timestamps of
its own, so the rest is not split further. importtime's own overhead makes that run slower.

    .venv/bin/python benchmarks/cli_latency.py [--sizes 10000,100000] [--runs 5]
        [--files 1000] [--out results.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing xsearch
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(width=150)
MODEL = {"encoder": "audioclip", "config": "audioclip", "weights": "random"}
WIDTHS = {"image": 1024, "audio": 1024, "text": 1024}
RECIPE = {"frames": "central", "window_seconds": 10.0}
TEXT = "dog bark"
REFERENCE = "import torch"
READY_TIMEOUT_S = 300.0
READY = re.compile(r"listening|holding index|serving index", re.IGNORECASE)  # serve's first line
HEAVY = ("torch", "open_clip", "torchvision", "faiss", "duckdb", "pyarrow", "numpy", "typer",
         "rich", "PIL", "av", "xsearch")  # fmt: skip


# --- indexes and media ----------------------------------------------------------------------


def unit_vectors(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 1024), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def query_index(directory: Path, n: int) -> float:
    """An index of `n` audio files of 5 s, one item each, as an ingest with random weights
    of the default config would record them; returns seconds."""
    from xsearch.store.store import Changes, Writer

    t0 = time.perf_counter()
    with Writer(directory, MODEL, WIDTHS, RECIPE) as writer:
        changes = Changes()
        ids = writer.allocate_items(n)
        for item in ids.tolist():
            asset = writer.allocate_asset()
            changes.new_assets.append(
                {"asset_id": asset, "path": f"/media/sounds/{asset:06d}.wav",
                 "content_hash": f"{asset:032x}", "kind": "audio", "bytes": 441_044,
                 "mtime": 1.7e9, "duration": 5.0, "labels": []}
            )  # fmt: skip
            changes.new_items.append(
                {"item_id": item, "asset_id": asset, "modality": "audio", "start": 0.0,
                 "end": 5.0, "text": None}
            )  # fmt: skip
        changes.add_vectors("audio", ids, unit_vectors(n, seed=n))
        writer.commit(changes)
    return time.perf_counter() - t0


def make_files(folder: Path, n: int) -> None:
    """`n` small distinct files: PNGs of 64x64 noise and WAVs of 1 s tone + noise."""
    import wave

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(16_000) / 16_000
    for i in range(n):
        if i % 2 == 0:
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"picture_{i:04d}.png")
            continue
        signal = 0.3 * np.sin(2 * np.pi * (200 + i) * t) + 0.05 * rng.standard_normal(len(t))
        with wave.open(str(folder / f"sound_{i:04d}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16_000)
            w.writeframes((signal * 32767).astype("<i2").tobytes())


def ingested_index(root: Path, name: str, folder: Path) -> float:
    """The index `name` holding the files of `folder`, ingested with the default config's
    spec and identity (random weights) but a stand-in model: the torch-free fake encoder,
    which draws each vector from a hash of its input. Decoding, rows, recipe and manifest are
    the ingest's own; only the vectors differ, and a re-ingest of unchanged files embeds
    nothing. Returns seconds."""
    import xsearch
    from xsearch.models.config import spec_for
    from xsearch.models.fake import FakeEncoder

    t0 = time.perf_counter()
    index = xsearch.open(name, root, create=True, weights="random")
    index.use_encoder(FakeEncoder(spec_for("audioclip")))
    report = index.ingest([folder])
    assert not report.failed, report.failed
    return time.perf_counter() - t0


# --- running commands -----------------------------------------------------------------------


@dataclass
class Command:
    name: str
    argv: list[str]
    expect_ok: bool = True
    must_print: str | None = None  # on stdout, or the run does not count
    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    first_error_line: str | None = None
    first_s: float | None = None  # the unmeasured first run (it also fills the tower cache)
    note: str | None = None


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(cmd: Command, env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds, result) of one run of `cmd`. Background servers are reaped
    only at the end, so the children's CPU delta is this process's (and its own children's)."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    done = subprocess.run(cmd.argv, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, children_cpu() - cpu0, done


def check(cmd: Command, done: subprocess.CompletedProcess) -> None:
    """A successful command must exit 0; a usage error must exit non-zero with a one-line
    error and no traceback."""
    if cmd.expect_ok and done.returncode != 0:
        raise SystemExit(f"{cmd.name}: exit {done.returncode}\n{done.stderr[-2000:]}")
    if cmd.must_print and cmd.must_print not in done.stdout:
        raise SystemExit(f"{cmd.name}: no {cmd.must_print!r} in its output\n{done.stdout[-2000:]}")
    if not cmd.expect_ok:
        lines = [ln for ln in done.stderr.splitlines() if ln.startswith("error")]
        if done.returncode == 0 or "Traceback" in done.stderr or not lines:
            raise SystemExit(f"{cmd.name}: expected a usage error\n{done.stderr[-2000:]}")
        cmd.first_error_line = lines[0]


def measure(commands: list[Command], runs: int, env: dict[str, str], loads: list) -> None:
    """One unmeasured run of each command, then `runs` rounds of all of them in turn."""
    for cmd in commands:
        cmd.first_s, _, done = run_once(cmd, env)
        check(cmd, done)
    for r in range(runs):
        loads.append([round(x, 2) for x in os.getloadavg()])
        for cmd in commands:
            wall, cpu, done = run_once(cmd, env)
            check(cmd, done)
            cmd.samples.append(wall)
            cmd.cpu.append(cpu)
            cmd.codes.append(done.returncode)
        console.print(f"round {r + 1}/{runs} done, load {loads[-1]}")


# --- the resident process -------------------------------------------------------------------


def serve_has_local_only(xsearch: str, env: dict[str, str]) -> bool:
    done = subprocess.run([xsearch, "serve", "--help"], env=env, capture_output=True, text=True)
    return "--local-only" in done.stdout


class Resident:
    """`xsearch serve --local-only --index NAME` in the background, ready once it prints the
    line saying it listens (`READY`, on stdout or stderr)."""

    def __init__(self, xsearch: str, name: str, env: dict[str, str]) -> None:
        argv = [xsearch, "serve", "--local-only", "--index", name]
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)  # fmt: skip
        self.ready = threading.Event()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if READY.search(line):
                self.ready.set()

    def wait(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Seconds until ready; raises when the server exits or never says it listens."""
        t0 = time.perf_counter()
        while not self.ready.wait(0.2):
            if self.proc.poll() is not None or time.perf_counter() - t0 > timeout:
                self.stop()
                raise SystemExit("xsearch serve did not start:\n" + "\n".join(self.lines[-20:]))
        return time.perf_counter() - t0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- where the time of a cold query goes ----------------------------------------------------


def import_split(argv: list[str], env: dict[str, str]) -> dict:
    """Wall time of `argv` under `python -X importtime`, its total import time, and the
    cumulative import time of the heavy packages (where first imported)."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env,
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"importtime run failed:\n{done.stderr[-2000:]}")
    self_us, first = 0, {}
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        self_us += int(m.group(1))
        top = m.group(4).split(".")[0]
        if m.group(4) in HEAVY and top not in first:
            first[top] = int(m.group(2)) / 1e6
    imports = self_us / 1e6
    return {"wall_s": wall, "imports_s": imports, "rest_s": wall - imports,
            "imports_by_package_s": dict(sorted(first.items(), key=lambda kv: -kv[1]))}  # fmt: skip


# --- report ---------------------------------------------------------------------------------


def shown(argv: list[str]) -> list[str]:
    """`argv` as recorded: programs by name, and no path of the machine it ran on."""
    out = []
    for arg in argv:
        if arg in (sys.executable, str(Path(sys.executable).with_name("xsearch"))):
            arg = Path(arg).name
        out.append(re.sub(r"/\S*/", "<dir>/", arg))
    return out


def summary(cmd: Command, reference: float) -> dict:
    if not cmd.samples:
        return {"command": cmd.name, "argv": shown(cmd.argv), "note": cmd.note}
    median = statistics.median(cmd.samples)
    return {
        "command": cmd.name,
        "argv": shown(cmd.argv),
        "median_s": median,
        "min_s": min(cmd.samples),
        "max_s": max(cmd.samples),
        "cpu_median_s": statistics.median(cmd.cpu),
        "first_run_s": cmd.first_s,
        "ratio_to_import_torch": median / reference,
        "samples_s": cmd.samples,
        "exit_codes": sorted(set(cmd.codes)),
        "error_line": cmd.first_error_line,
        "note": cmd.note,
    }


def print_table(rows: list[dict], title: str) -> None:
    table = Table(title=title)
    for col in ("command", "median s", "min s", "max s", "CPU s", "x import torch", "first s"):
        table.add_column(col, justify="left" if col == "command" else "right")
    for r in rows:
        if "median_s" not in r:
            table.add_row(r["command"], "-", "-", "-", "-", r["note"] or "-", "-")
            continue
        table.add_row(r["command"], f"{r['median_s']:.2f}", f"{r['min_s']:.2f}",
                      f"{r['max_s']:.2f}", f"{r['cpu_median_s']:.2f}",
                      f"{r['ratio_to_import_torch']:.2f}", f"{r['first_run_s']:.2f}")  # fmt: skip
    console.print(table)


# --- main -----------------------------------------------------------------------------------


def build(root: Path, sizes: list[int], media: Path, files: int) -> dict[str, float]:
    """The query indexes `q<N>` and the re-ingest index `files`; seconds each took."""
    setup = {}
    for n in sizes:
        setup[f"query_index_{n}_s"] = query_index(root / f"q{n}", n)
        console.print(f"index of {n:,} items written in {setup[f'query_index_{n}_s']:.1f} s")
    make_files(media, files)
    setup["ingest_index_s"] = ingested_index(root, "files", media)
    console.print(f"{files} files ingested in {setup['ingest_index_s']:.1f} s")
    binding = identity(root / "files")  # what an ingest records
    for n in sizes:
        assert identity(root / f"q{n}") == binding, (identity(root / f"q{n}"), binding)
    return setup


def identity(directory: Path) -> tuple:
    """What binds an index to its model: identity, widths, recipe."""
    from xsearch.store.store import Store

    store = Store.open(directory)
    assert store.manifest is not None
    return dict(store.manifest.model), store.widths, store.recipe


def query_argv(xsearch: str, n: int) -> list[str]:
    return [xsearch, "query", "--index", f"q{n}", "--text", TEXT, "--target", "audio", "--json"]


def reference() -> Command:
    return Command(f'python -c "{REFERENCE}"', [sys.executable, "-c", REFERENCE])


def cold_commands(xsearch: str, sizes: list[int], media: Path, files: int) -> list[Command]:
    commands = [reference(), Command("xsearch --help", [xsearch, "--help"])]
    for n in sizes:
        q = query_argv(xsearch, n)
        commands += [
            Command(f"query, cold, {n:,} items", q),
            Command(f"usage error -k 0, {n:,} items", [*q, "-k", "0"], expect_ok=False),
            Command(f"bad --where, {n:,} items", [*q, "--where", "no_such_column = 1"],
                    expect_ok=False),
        ]  # fmt: skip
    ingest = [xsearch, "ingest", "--index", "files", "--json", str(media)]
    unchanged = f'"unchanged": {files},'
    commands.append(Command(f"ingest, {files} unchanged files", ingest, must_print=unchanged))
    return commands


def resident_block(xsearch: str, sizes: list[int], runs: int, env: dict[str, str],
                   loads: list) -> tuple[list[Command], dict]:  # fmt: skip
    """The same queries while `xsearch serve --local-only` holds each index, in rounds of
    their own (with the reference again): a cold query of an index held by a server would be
    answered by it. Skipped, with a note, when serve has no --local-only."""
    commands = [Command(f"query, resident, {n:,} items", query_argv(xsearch, n)) for n in sizes]
    if not serve_has_local_only(xsearch, env):
        for cmd in commands:
            cmd.note = "skipped: `xsearch serve` has no --local-only"
        return commands, {}
    ref = reference()
    ref.name += " (resident rounds)"
    residents: list[Resident] = []
    info: dict = {"ready_s": {}, "ready_line": {}}
    try:
        for n in sizes:
            residents.append(Resident(xsearch, f"q{n}", env))
            info["ready_s"][f"q{n}"] = residents[-1].wait()
        measure([ref, *commands], runs, env, loads)
    finally:
        for n, r in zip(sizes, residents):
            r.stop()
            ready = [shown([line])[0] for line in r.lines if READY.search(line)]
            info["ready_line"][f"q{n}"] = ready[0] if ready else None
    return [ref, *commands], info


def commit() -> str:
    """The checked-out commit, '+changes' when the work tree differs from it."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="items per query index")
    parser.add_argument("--runs", type=int, default=5, help="measured rounds")
    parser.add_argument("--files", type=int, default=1000, help="files of the re-ingest")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cli_latency.json")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.runs, args.files = "2000", 2, 100
    sizes = [int(s) for s in args.sizes.split(",") if s]
    xsearch = str(Path(sys.executable).with_name("xsearch"))
    t_start = time.perf_counter()
    loads: list = []
    with tempfile.TemporaryDirectory(prefix="xsearch-cli-") as tmp:
        root, media = Path(tmp) / "indexes", Path(tmp) / "media"
        env = {k: v for k, v in os.environ.items() if k != "XSEARCH_WEIGHTS"}
        env.update(XSEARCH_HOME=str(root), XSEARCH_CACHE=str(Path(tmp) / "cache"))
        os.environ["XSEARCH_CACHE"] = env["XSEARCH_CACHE"]  # this process's ingest too
        setup = build(root, sizes, media, args.files)
        commands = cold_commands(xsearch, sizes, media, args.files)
        measure(commands, args.runs, env, loads)
        resident, resident_info = resident_block(xsearch, sizes, args.runs, env, loads)
        splits = {str(n): import_split(query_argv(xsearch, n), env) for n in sizes}

    torch_s = statistics.median(commands[0].samples)
    rows = [summary(c, torch_s) for c in commands + resident]
    print_table(rows, f"whole-process wall time, {args.runs} runs (load before rounds: {loads})")
    split_table = Table(title="cold query under python -X importtime (one run each)")
    for col in ("items", "wall s", "imports s", "rest s", "largest imports (cumulative s)"):
        split_table.add_column(col, justify="right")
    for n, s in splits.items():
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(s["imports_by_package_s"].items())[:5])
        split_table.add_row(f"{int(n):,}", f"{s['wall_s']:.2f}", f"{s['imports_s']:.2f}",
                            f"{s['rest_s']:.2f}", top)  # fmt: skip
    console.print(split_table)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "xsearch_commit": commit(),
                    "loadavg_before_rounds": loads,
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "model": MODEL, "sizes": sizes, "runs": args.runs, "files": args.files,
        "setup_s": setup, "resident": resident_info, "rows": rows,
        "cold_query_import_split": splits, "total_s": time.perf_counter() - t_start,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {args.out} in {result['total_s']:.0f} s")


if __name__ == "__main__":
    main()
