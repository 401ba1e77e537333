"""Decode files in worker processes that can hang, blow up or crash without hurting the ingest.

Each worker is a fresh `python -c` process (never a fork of the main process, which holds the
model and torch's threads) that imports only PyAV, NumPy and Pillow, caps its own address space
with RLIMIT_AS, and decodes one file at a time. The pool hands out one file per idle worker from
a background thread, kills a worker whose file takes longer than `timeout` and starts another,
and reports every failure as a one-line reason instead of raising, so the ingest goes on.

Why not multiprocessing: 'spawn' and 'forkserver' re-import the main script in every worker (the
CLI, or whatever script embeds xsearch, possibly with torch), and a ProcessPoolExecutor cannot
kill one stuck task and breaks entirely when a worker dies.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, TypeVar

from xsearch.errors import MediaError, XSearchError
from xsearch.ingest.spill import remove_spilled

if TYPE_CHECKING:
    from xsearch.ingest.decode import Decoded

P = TypeVar("P", bound="str | os.PathLike[str]")  # the caller's path objects come back out
Result = tuple[P, "Decoded | None", "str | None"]

# A worker that has not said it is ready after this long is broken, not slow.
STARTUP_TIMEOUT = 60.0
# How long a worker asked to stop may take before it is killed.
STOP_GRACE = 2.0
# How often the dispatcher wakes up with nothing to do, to notice a stop request.
POLL = 0.25
# A frame policy other than `central` decodes every frame of a video: a video of D seconds may
# take `timeout` + D * this, so that a long video is decoded at real-time speed or better
# rather than killed (the worker says the length before it decodes the frames).
SECONDS_PER_VIDEO_SECOND = 1.0

# Each worker is single-threaded in NumPy and keeps few malloc arenas: every arena and BLAS
# thread buffer reserves address space, which RLIMIT_AS counts.
_CHILD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
}
# The worker gets this process's sys.path (as multiprocessing's spawn does), so that it imports
# the very same xsearch, even from a source tree.
_CHILD_CODE = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from xsearch.ingest.workers import _worker_main; _worker_main(sys.argv[2:])"
)


class DecodePool:
    """Decode files with `decode_file` in `workers` processes; use as a context manager.

    `timeout` is the seconds one file may take; `memory_mb` the address space one decode may
    use on top of the worker's own (about 0.25 GB of libraries); `max_pending` bounds the files
    being decoded plus those decoded but not yet taken by the consumer (default 2 * workers),
    so memory stays bounded whatever the consumer's pace. `workers=0` decodes in the calling
    process, with no timeout or memory limit (for debugging and tests). `image_size` and
    `sample_rate` are the model's inputs (`pipeline.decode_settings`); None: the model does not
    embed that modality, which is then not decoded. `image_norm` (mean, std): images are
    also normalised here, as the model takes them. `frames`: the frame policy of videos (see
    `FramePolicy`); with one other than `central`, a video's time limit grows with its length
    (SECONDS_PER_VIDEO_SECOND). `spill_dir`: a folder of the caller's where a video's frames
    over time and a file's sound are written as they are decoded, new files per file (see
    `xsearch.ingest.spill`), so that neither a worker nor the caller holds them all; a
    result's spilled frames and sound are the caller's to discard, and the files of one that
    fails are removed here. None: they come back in memory. `early_sound` (with `spill_dir`):
    a video with frames over time gives its sound first, as a result of its own marked
    `partial`, so that the caller can embed it while the frames decode; its whole result (or
    its failure) follows.
    """

    def __init__(
        self,
        workers: int,
        timeout: float = 60.0,
        memory_mb: int = 2048,
        window_seconds: float = 10.0,
        image_size: int | None = 224,
        sample_rate: int | None = 44100,
        image_norm: tuple | None = None,
        resampler: str = "swr",
        merge_tail: bool = True,
        frames: str = "central",
        channels: str = "mean",
        clip: tuple[int, float] | None = None,
        *,
        max_pending: int | None = None,
        spill_dir: str | None = None,
        early_sound: bool = False,
    ) -> None:
        if early_sound and spill_dir is None:
            raise ValueError("early_sound needs a spill_dir")
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        if timeout <= 0 or memory_mb <= 0:
            raise ValueError("timeout and memory_mb must be positive")
        self.workers = workers
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.max_pending = max(max_pending or 2 * workers, workers, 1)
        self.decode_options: dict[str, Any] = {
            "window_seconds": window_seconds,
            "image_size": image_size,
            "sample_rate": sample_rate,
            "image_norm": image_norm,
            "resampler": resampler,
            "merge_tail": merge_tail,
            "frames": frames,
            "channels": channels,
            "clip": clip,
        }
        self.spill_dir = spill_dir
        self.early_sound = early_sound
        self._spill_numbers = itertools.count()
        self._pool: list[_Worker] = []
        self._running: tuple[threading.Event, threading.Thread] | None = None

    # --- life cycle --------------------------------------------------------------------------

    def __enter__(self) -> DecodePool:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the worker processes (they import their libraries in parallel, in background)."""
        self._fill()

    def close(self) -> None:
        """Stop every worker: idle ones are asked to exit, stuck ones killed."""
        self._stop_dispatch()  # an imap left unfinished (the consumer raised) ends here
        pool, self._pool = self._pool, []
        for worker in pool:
            worker.ask_to_stop()
        deadline = time.monotonic() + STOP_GRACE
        for worker in pool:
            worker.stop(max(0.0, deadline - time.monotonic()))

    def busy(self, for_at_least: float = 0.0) -> int:
        """How many workers have been decoding their file for at least `for_at_least` seconds
        (a moment's reading, for sharing CPUs)."""
        since = time.monotonic() - for_at_least
        return sum(1 for w in self._pool if w.state == "busy" and w.sent <= since)

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for diagnostics)."""
        return [worker.process.pid for worker in self._pool if worker.process.poll() is None]

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> float:
        """Block until every worker has started; return the seconds waited. Optional: `imap`
        works as soon as the first worker is up."""
        began = time.monotonic()
        self._fill()
        for worker in self._pool:
            if worker.state == "starting":
                if not worker.results.poll(max(0.0, began + timeout - time.monotonic())):
                    raise XSearchError(f"decode worker did not start within {timeout:g} s")
                worker.receive_ready()
        return time.monotonic() - began

    # --- decoding ----------------------------------------------------------------------------

    def imap(self, paths: Iterable[P]) -> Iterator[Result]:
        """Yield (path, Decoded, None) or (path, None, reason) for each path, as each finishes
        (with `early_sound`, a video's partial Decoded may come before).

        `paths` may be a lazy iterable (`find_files`): it is read only as workers free up. The
        reason is the MediaError's message, "timed out after N s", "exceeded the memory limit
        (N MB)" or "worker crashed (signal N)". Stopping the iteration early kills the files
        still being decoded.
        """
        if self.workers == 0:
            return self._imap_inline(paths)
        return self._imap_pool(paths)

    def _imap_inline(self, paths: Iterable[P]) -> Iterator[Result]:
        from xsearch.ingest.decode import decode_file

        for path in paths:
            try:
                decoded = decode_file(path, **self.decode_options, spill_to=self._spill_path())
                yield path, decoded, None
            except MediaError as exc:
                yield path, None, str(exc)

    def _spill_path(self) -> str | None:
        """A new stem in `spill_dir` for one file's spill files (None: all stays in memory)."""
        if self.spill_dir is None:
            return None
        return os.path.join(self.spill_dir, str(next(self._spill_numbers)))

    def _imap_pool(self, paths: Iterable[P]) -> Iterator[Result]:
        if self._running is not None:
            raise RuntimeError("DecodePool.imap is already running")
        results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        slots = threading.Semaphore(self.max_pending)
        stop = threading.Event()
        thread = threading.Thread(
            target=self._dispatch,
            args=(iter(paths), results, slots, stop),
            name="xsearch-decode-dispatch",
            daemon=True,
        )
        thread.start()
        self._running = stop, thread
        try:
            while True:
                item = results.get()
                if item is _DONE:
                    return
                if isinstance(item, _Raise):
                    raise item.error
                if not (item[1] is not None and item[1].partial):  # the file is done
                    slots.release()
                yield item
        finally:
            stop.set()
            thread.join()
            if self._running is not None and self._running[1] is thread:
                self._running = None

    def _stop_dispatch(self) -> None:
        if self._running is not None:
            stop, thread = self._running
            stop.set()
            thread.join()
            self._running = None

    def _dispatch(self, paths: Iterator[P], results: queue.SimpleQueue, slots, stop) -> None:
        """The background thread: feed idle workers, collect results, enforce timeouts."""
        try:
            self._run(paths, results, slots, stop)
        except BaseException as exc:
            results.put(_Raise(exc))
        else:
            results.put(_DONE)
        finally:
            # Files still being decoded when the consumer stopped early are abandoned.
            for worker in self._pool:
                if worker.state == "busy":
                    worker.kill()

    def _run(self, paths: Iterator[P], results: queue.SimpleQueue, slots, stop) -> None:
        self._fill()
        exhausted = False
        while not stop.is_set():
            waiting_for_consumer = False
            for index, worker in enumerate(self._pool):
                if exhausted or worker.state != "idle":
                    continue
                if not slots.acquire(blocking=False):
                    waiting_for_consumer = True
                    break
                try:
                    path = next(paths)
                except StopIteration:
                    exhausted = True
                    slots.release()
                    break
                try:
                    worker.send(path, self.timeout, self._spill_path(), self.early_sound)
                except OSError:  # it died while idle (the OOM killer, say)
                    results.put((path, None, _crash_reason(worker.process.wait())))
                    self._replace(index)
            if exhausted and not any(w.state == "busy" for w in self._pool):
                return

            now = time.monotonic()
            deadlines = [w.deadline for w in self._pool if w.state in ("busy", "starting")]
            timeout = min([POLL, *(d - now for d in deadlines)])
            if waiting_for_consumer:
                timeout = min(timeout, 0.02)
            ready = wait([w.results for w in self._pool], max(0.0, timeout))

            for index, worker in enumerate(self._pool):
                if worker.results in ready:
                    self._collect(index, results)
            now = time.monotonic()
            for index, worker in enumerate(self._pool):
                if worker.state == "starting" and now >= worker.deadline:
                    raise XSearchError(f"decode worker did not start within {STARTUP_TIMEOUT:g} s")
                if worker.state == "busy" and now >= worker.deadline:
                    worker.kill()
                    results.put((worker.path, None, f"timed out after {worker.allowed:g} s"))
                    self._replace(index)

    def _collect(self, index: int, results: queue.SimpleQueue) -> None:
        """Take what worker `index` sent: ready, a result, or (at EOF) its death."""
        worker = self._pool[index]
        try:
            message = worker.results.recv()
        except (EOFError, OSError):
            status = worker.process.wait()
            if worker.state == "starting":
                raise XSearchError(
                    f"decode worker exited while starting ({_exit_description(status)})"
                ) from None
            if worker.state == "busy":
                results.put((worker.path, None, _crash_reason(status)))
            self._replace(index)
            return
        if worker.state == "starting":
            worker.mark_ready(message)
            return
        status, payload = message
        if status == "duration":  # a long video's frames: more time (the file is not done)
            worker.allow(self.timeout + payload * SECONDS_PER_VIDEO_SECOND)
            return
        if status == "sound":  # a video's sound, ahead of its frames (the file is not done)
            results.put((worker.path, payload, None))
            return
        path = worker.path
        worker.finish(keep_spill=status == "ok")
        if status == "ok":
            results.put((path, payload, None))
        elif status == "error":
            results.put((path, None, payload))
        else:  # "memory": the worker exits, as its heap may be in pieces
            results.put((path, None, f"exceeded the memory limit ({self.memory_mb} MB)"))
            self._replace(index)

    def _fill(self) -> None:
        """Start workers until `workers` of them are alive or starting."""
        self._pool = [worker for worker in self._pool if worker.state != "dead"]
        while len(self._pool) < self.workers:
            self._pool.append(_Worker(self._config()))

    def _replace(self, index: int) -> None:
        self._pool[index].kill()
        self._pool[index] = _Worker(self._config())

    def _config(self) -> dict[str, Any]:
        return {
            "parent": os.getpid(),
            "memory_mb": self.memory_mb,
            "decode": self.decode_options,
        }


class _Raise:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


class _Worker:
    """The main process's handle on one worker: its process, pipes and current file."""

    def __init__(self, config: dict[str, Any]) -> None:
        task_read, self._task_write = os.pipe()
        self._result_read, result_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _CHILD_CODE,
                    json.dumps(sys.path),
                    str(task_read),
                    str(result_write),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(task_read, result_write),
                env=_child_environment(),
            )
        except BaseException:
            os.close(self._task_write)
            os.close(self._result_read)
            raise
        finally:
            os.close(task_read)
            os.close(result_write)
        self.tasks = Connection(self._task_write, readable=False)
        self.results = Connection(self._result_read, writable=False)
        self.state = "starting"  # then "idle" <-> "busy"; "dead" once killed
        self.spawned = time.monotonic()
        self.deadline = self.spawned + STARTUP_TIMEOUT
        self.startup_seconds: float | None = None
        self.path: Any = None
        self.spill: str | None = None  # the stem of the current file's spill files
        self.sent = self.allowed = 0.0
        self.tasks.send(config)

    def receive_ready(self) -> None:
        self.mark_ready(self.results.recv())

    def mark_ready(self, message: Any) -> None:
        if message != "ready":
            raise XSearchError(f"decode worker sent {message!r} instead of starting")
        self.state = "idle"
        self.startup_seconds = time.monotonic() - self.spawned

    def send(
        self, path: Any, timeout: float, spill: str | None = None, early_sound: bool = False
    ) -> None:
        self.tasks.send((os.fspath(path), spill, early_sound))
        self.path, self.spill = path, spill
        self.state = "busy"
        self.sent = time.monotonic()
        self.allow(timeout)

    def allow(self, seconds: float) -> None:
        """Let the current file take `seconds` from when it was sent."""
        self.allowed = seconds
        self.deadline = self.sent + seconds

    def finish(self, keep_spill: bool) -> None:
        """The current file is done; its spill files stay only for a result that uses them."""
        if not keep_spill:
            remove_spilled(self.spill)
        self.path = self.spill = None
        self.state = "idle"

    def ask_to_stop(self) -> None:
        if self.state == "idle":
            try:
                self.tasks.send(None)
            except OSError:
                pass
        else:
            self.kill()

    def stop(self, grace: float) -> None:
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.state == "busy":  # killed half-way through a file: what it spilled is no use
            remove_spilled(self.spill)
            self.spill = None
        self.tasks.close()
        self.results.close()
        self.state = "dead"


def _child_environment() -> dict[str, str]:
    env = dict(os.environ)
    for key, value in _CHILD_ENV.items():
        env.setdefault(key, value)
    return env


def _crash_reason(status: int) -> str:
    return f"worker crashed ({_exit_description(status)})"


def _exit_description(status: int) -> str:
    return f"signal {-status}" if status < 0 else f"exit status {status}"


# --- the worker process ----------------------------------------------------------------------


def _worker_main(argv: list[str]) -> None:
    """Entry point of a worker process: decode the paths it is sent until told to stop."""
    # Ctrl-C reaches the whole process group; the main process decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tasks = Connection(int(argv[0]), writable=False)
    results = Connection(int(argv[1]), readable=False)
    config = tasks.recv()

    import warnings

    from PIL import Image

    from xsearch.ingest.decode import decode_file

    warnings.simplefilter("ignore")  # the main process shows progress on this terminal
    Image.init()  # load Pillow's plugins before the memory limit is measured
    _exit_with_parent(config["parent"])  # its thread's stack counts as the worker's own
    _limit_memory(config["memory_mb"])
    results.send("ready")

    options = config["decode"]
    while True:
        try:
            task = tasks.recv()
        except EOFError:
            return
        if task is None:
            return
        path, spill_to, early_sound = task
        status, payload = _decode(decode_file, path, options, results, spill_to, early_sound)
        try:
            results.send((status, payload))
        except MemoryError:  # pickling the result did not fit
            status = "memory"
            payload = None
            results.send((status, payload))
        if status == "memory":
            return


def _decode(
    decode_file,
    path: str,
    options: dict[str, Any],
    results: Connection,
    spill_to: str | None = None,
    early_sound: bool = False,
) -> tuple[str, Any]:
    def tell_duration(seconds: float) -> None:
        results.send(("duration", seconds))

    def send_sound(partial: Decoded) -> None:
        results.send(("sound", partial))

    try:
        return "ok", decode_file(
            path,
            **options,
            on_duration=tell_duration,
            spill_to=spill_to,
            on_sound=send_sound if early_sound else None,
        )
    except MemoryError:
        return "memory", None
    except MediaError as exc:
        if _caused_by_memory(exc):  # PyAV's MemoryError turned into a MediaError by load_audio
            return "memory", None
        return "error", str(exc)
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return "error", f"{path}: unexpected {type(exc).__name__}: {reason}"


def _caused_by_memory(exc: BaseException) -> bool:
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 10:
        if isinstance(cause, MemoryError):
            return True
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return False


def _limit_memory(memory_mb: int) -> None:
    """Cap the address space at what the worker maps now plus `memory_mb`."""
    try:
        import resource
    except ImportError:  # not on POSIX: no limit
        return
    limit = _mapped_bytes() + memory_mb * 1024 * 1024
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):  # e.g. macOS, which does not enforce RLIMIT_AS
        pass


def _mapped_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _exit_with_parent(parent: int) -> None:
    """Exit when the main process is gone, even in the middle of a hung decode."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
