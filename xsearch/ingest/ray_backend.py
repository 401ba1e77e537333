"""Ingest on a Ray cluster: files decoded by Ray tasks on the cluster's CPUs, batches embedded
by Ray actors that each hold the model (on a GPU when the cluster has them).

`RayBackend` is a `Backend` for `xsearch.ingest.pipeline.ingest`: planning (new, renamed,
changed, gone, failed before), asset and item ids, sidecars and labels, periodic commits and the
final commit all stay in the driver, the very code of a local ingest, so an index built on Ray
is the index a local ingest builds, with the same atomic generations.

What runs where:
- decode: one Ray task per file (retried by Ray when its worker process dies). The task runs
  `decode_file` in its Ray worker's own DecodePool process, with the same per-file time and
  memory limits as a local ingest: a file that hangs, blows up or crashes the decoder is a
  recorded failure there too. At most two tasks per cluster CPU are in flight.
- embed: `actors` Ray actors, each loading the encoder once from what the driver resolved (the
  weights file's path, or random weights from the same seed); a probe input embedded on both
  sides checks that they hold the same model. Batches go to the least busy actor, at most two
  per actor in flight. A killed actor is restarted and its batches retried.
- The vectors come back to the driver through Ray's object store (4 KB per item); the driver's
  Writer writes them into the generation's files and publishes them with one manifest swap.
  Nothing is written to the index by a worker, so nothing of a crashed run can be half there.

A cluster's nodes need this environment (xsearch and its dependencies), the media at the same
paths (a shared file system), and the weights file at the same path.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from xsearch.errors import UsageError, XSearchError
from xsearch.ingest.pipeline import DecodeResult, IngestOptions, decode_settings, embed_batch
from xsearch.models.spec import EncoderSpec

# The distribution is xsearch-media (the import package and the command are xsearch).
INSTALL_HINT = "install the ray extra: pip install -e '.[ray]' in the xsearch checkout"
RETRIES = 3  # Ray's retries of a decode task, restarts of an actor and retries of its batch
IN_FLIGHT_PER_ACTOR = 2  # one being embedded, one waiting: an actor never idles
IN_FLIGHT_PER_CPU = 2  # decode tasks queued or running, per cluster CPU
PROBE = "a probe that checks the embedding actors hold the driver's model"
PROBE_MIN_COSINE = 0.99  # fp16 on a GPU against fp32 here still agrees to ~1e-3
# Test hook: a folder. The first decode task and the first embedding call of a run each kill
# their own process (SIGKILL, once per stage: a marker file says it happened), as a lost
# worker would die, so that tests can see Ray retry them.
KILL_ONCE_ENV = "XSEARCH_RAY_KILL_ONCE"
# Ray's own switch to run a local instance on 127.0.0.1 only (its default on macOS and
# Windows); read when Ray is first imported.
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray(local: bool = True):
    """Import Ray, or raise UsageError saying how to install it.

    Usage statistics are off (no network calls). When Ray is imported here first and `local`,
    the local instance it will start binds to loopback only, and uses token authentication
    (Ray's default for a local instance; saying so silences its warning on every run).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if local and "ray" not in sys.modules:
        os.environ.setdefault(_LOOPBACK_ENV, "0")
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


def starts_local(address: str | None) -> bool:
    """Whether `ray.init(address)` starts a new local instance (rather than joining one)."""
    return not (address or os.environ.get("RAY_ADDRESS"))


def init_ray(address: str | None = None, num_cpus: int | None = None):
    """Join the Ray cluster at `address` (HOST:PORT or 'auto'), or start a local instance
    (loopback only, no dashboard, `num_cpus` CPUs, default all); returns the ray module."""
    local = starts_local(address)
    ray = import_ray(local)
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if local:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **quiet)
    else:
        ray.init(address=address, **quiet)
    return ray


class RayBackend:
    """Decode and embed on Ray; use as a context manager, which stops the embedding actors
    and shuts down the Ray instance it started, if any.

    Ray is started (or joined) when a run first has a file to decode, so an incremental run
    with nothing new costs no Ray start-up; the embedding actors start with the first batch
    and serve the next runs with the same model until `close`.

    `address`: the cluster to join; None starts a local Ray instance ($RAY_ADDRESS, when set,
    is joined instead, as Ray does). If this process is already connected to Ray, that
    connection is used as it is. `actors`: embedding actors (default: one per GPU, else one).
    `device`: 'auto' embeds on the cluster's GPUs when it has any, 'cpu' on CPUs, 'cuda'
    insists on GPUs.
    """

    def __init__(
        self, address: str | None = None, actors: int | None = None, device: str = "auto"
    ) -> None:
        if actors is not None and actors < 1:
            raise UsageError(f"the number of embedding actors must be >= 1, got {actors}")
        if device != "auto" and device != "cpu" and not device.startswith("cuda"):
            raise UsageError(f"unsupported device {device!r} on Ray; use auto, cpu or cuda")
        self.address = address
        self.actor_count = actors
        self.device = device
        self.kill_once = os.environ.get(KILL_ONCE_ENV) or None
        self._ray: Any = None
        self._started = False
        self._actors: list[Any] = []
        self._actors_spec: dict | None = None

    def __enter__(self) -> RayBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self):
        """Connect to Ray now (starting a local instance when there is no address); returns
        the ray module."""
        if self._ray is None:
            ray = import_ray(starts_local(self.address))
            if not ray.is_initialized():
                init_ray(self.address)
                self._started = True
            self._ray = ray
        return self._ray

    def close(self) -> None:
        """Stop the embedding actors; shut Ray down if `start` started it."""
        self._stop_actors()
        if self._started:
            self._ray.shutdown()
        self._ray, self._started = None, False

    # --- the stages ----------------------------------------------------------------------------

    @contextmanager
    def decoding(
        self, paths: list[str], options: IngestOptions, encoder
    ) -> Iterator[Iterator[DecodeResult]]:
        if not paths:
            yield iter(())
            return
        ray = self.start()
        task = ray.remote(decode_task).options(num_cpus=1, max_retries=RETRIES)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        results = self._decoded(task, paths, decode_settings(options, encoder), cpus)
        try:
            yield results
        finally:
            results.close()  # cancels the tasks of a run that stopped early

    def _decoded(
        self, task, paths: list[str], settings: dict, cpus: int
    ) -> Generator[DecodeResult, None, None]:
        ray = self._ray
        window = max(2, IN_FLIGHT_PER_CPU * cpus)
        todo = iter(paths)
        pending: dict[Any, str] = {}
        try:
            while True:
                for path in todo:
                    pending[task.remote(os.path.abspath(path), settings, self.kill_once)] = path
                    if len(pending) >= window:
                        break
                if not pending:
                    return
                [ref], _ = ray.wait(list(pending), num_returns=1)
                path = pending.pop(ref)
                try:
                    decoded, reason = ray.get(ref)
                except ray.exceptions.RayError as exc:  # retried RETRIES times, or a bug
                    raise XSearchError(
                        f"{path}: decoding it on Ray failed ({_reason(exc)})"
                    ) from exc
                yield path, decoded, reason
        finally:
            for ref in pending:
                ray.cancel(ref)

    @contextmanager
    def embedding(self, encoder) -> Iterator[_RayEmbedder]:
        try:
            yield _RayEmbedder(self, encoder)
        except BaseException:
            self._stop_actors()  # with whatever they were still embedding
            raise

    def embed_actors(self, encoder) -> list[Any]:
        """The actors holding `encoder`'s model, started now unless they are running."""
        ray = self.start()
        count, resources, device = self.actor_resources()
        choice = encoder.weights
        spec = {
            "weights": "random" if choice.is_random else str(choice.path.resolve()),
            "config": encoder.spec.config,
            "device": device,
            "batch_size": encoder.batch_size,
        }
        if spec != self._actors_spec or len(self._actors) != count:
            self._stop_actors()
            actor_class = ray.remote(EmbedActor).options(
                **resources, max_restarts=RETRIES, max_task_retries=RETRIES
            )
            self._actors = [actor_class.remote(spec, self.kill_once) for _ in range(count)]
            self._actors_spec = spec
        return self._actors

    def _stop_actors(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors, self._actors_spec = [], None

    def actor_resources(self) -> tuple[int, dict[str, float], str]:
        """(number of actors, Ray resources of each, the device they embed on)."""
        resources = self._ray.cluster_resources()
        gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
        on_gpu = self.device != "cpu" and gpus > 0
        if self.device.startswith("cuda") and not on_gpu:
            raise UsageError("--device cuda asked for, but the Ray cluster has no GPU")
        actors = self.actor_count or (max(1, int(gpus)) if on_gpu else 1)
        if cpus - actors < 1:
            raise UsageError(
                f"{actors} embedding actor(s) would leave none of the Ray cluster's "
                f"{cpus:g} CPUs to decode files: use fewer actors or a larger cluster"
            )
        options: dict[str, float] = {"num_cpus": 1}
        if on_gpu:
            options["num_gpus"] = min(1.0, gpus / actors)
        return actors, options, "cuda" if on_gpu else "cpu"


class _RayEmbedder:
    """Sends batches to the embedding actors, which it starts on the first batch."""

    def __init__(self, backend: RayBackend, encoder) -> None:
        self.ray: Any = None
        self.backend = backend
        self.encoder = encoder
        self.batch_size = encoder.batch_size
        self.actors: list[Any] = []
        self.in_flight: dict[Any, tuple[int, Callable[[np.ndarray], None]]] = {}
        self.probes: list[Any] = []  # each actor's row of the probe, checked with the first batch

    def submit(self, modality: str, payloads: list, done: Callable[[np.ndarray], None]) -> None:
        if not self.actors:
            self.ray = self.backend.start()
            self.actors = self.backend.embed_actors(self.encoder)
            probe = probe_input(self.encoder.spec)
            self.probes = [actor.probe.remote(*probe) for actor in self.actors]
        while len(self.in_flight) >= IN_FLIGHT_PER_ACTOR * len(self.actors):
            self._collect_one()
        busy = Counter(index for index, _ in self.in_flight.values())
        index = min(range(len(self.actors)), key=busy.__getitem__)
        ref = self.actors[index].embed.remote(modality, payloads)
        self.in_flight[ref] = (index, done)

    def wait(self) -> None:
        while self.in_flight:
            self._collect_one()

    def _collect_one(self) -> None:
        [ref], _ = self.ray.wait(list(self.in_flight), num_returns=1)
        _, done = self.in_flight.pop(ref)
        if self.probes:
            self._check_probes()
        done(self._get(ref))

    def _check_probes(self) -> None:
        probes, self.probes = self._get(self.probes), []
        modality, payload = probe_input(self.encoder.spec)
        expected = embed_batch(self.encoder, modality, [payload])[0]
        for row in probes:
            if float(row @ expected) < PROBE_MIN_COSINE:
                raise UsageError(
                    "the Ray embedding actors do not hold this process's model: are the same "
                    "weights file and xsearch at the same paths on every node?"
                )

    def _get(self, refs):
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayActorError as exc:
            raise XSearchError(f"a Ray embedding actor is lost: {_reason(exc)}") from exc
        except self.ray.exceptions.RayError as exc:
            raise XSearchError(f"embedding on Ray failed: {_reason(exc)}") from exc


class EmbedActor:
    """Runs in a Ray actor process: holds one encoder, embeds the batches it is sent."""

    def __init__(self, spec: dict, kill_once: str | None = None) -> None:
        from xsearch.models import load_encoder

        # Random weights: load_encoder seeds torch with its default seed, as the driver's did.
        self.encoder = load_encoder(
            spec["weights"],
            config=spec["config"],
            device=spec["device"],
            batch_size=spec["batch_size"],
        )
        self.kill_once = kill_once

    def embed(self, modality: str, payloads: list) -> np.ndarray:
        _maybe_die(self.kill_once, "embed")
        return embed_batch(self.encoder, modality, payloads)

    def probe(self, modality: str, payload: Any) -> np.ndarray:
        """The probe's row (see `probe_input`), to compare with the driver's."""
        return embed_batch(self.encoder, modality, [payload])[0]


def probe_input(spec: EncoderSpec) -> tuple[str, Any]:
    """What both sides embed to check they hold one model: PROBE when the model embeds text,
    else one second of a tone at its sample rate, else a gradient picture of its size."""
    if spec.text is not None:
        return "text", PROBE
    if spec.audio is not None:
        rate = spec.audio.sample_rate
        return "audio", (8000 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    from PIL import Image

    assert spec.image is not None  # a model embeds one modality at least
    ramp = np.linspace(0, 255, spec.image.size, dtype=np.uint8)
    pixels = np.stack([np.tile(ramp, (spec.image.size, 1))] * 3, axis=-1)
    return "image", Image.fromarray(pixels)


def decode_task(path: str, settings: dict, kill_once: str | None = None) -> tuple:
    """Runs in a Ray worker: (Decoded, None) or (None, reason) for one file, decoded in this
    worker's DecodePool process, as a local ingest decodes it."""
    _maybe_die(kill_once, "decode")
    [(_, decoded, reason)] = list(_decode_pool(settings).imap([path]))
    return decoded, reason


# This Ray worker process's (settings, DecodePool): started on its first file, kept for the
# next ones (Ray reuses worker processes); its decode process exits with the worker.
_POOL: list[tuple[dict, Any]] = []


def _decode_pool(settings: dict):
    from xsearch.ingest.workers import DecodePool

    if _POOL and _POOL[0][0] == settings:
        return _POOL[0][1]
    if _POOL:
        _POOL.pop()[1].close()
    pool = DecodePool(1, **settings)
    _POOL.append((settings, pool))
    return pool


def _maybe_die(kill_once: str | None, stage: str) -> None:
    """The test hook of KILL_ONCE_ENV: the first call per `stage` kills this process."""
    if not kill_once:
        return
    try:
        fd = os.open(os.path.join(kill_once, stage), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def _reason(exc: BaseException) -> str:
    """One line of a Ray error: the exception a remote traceback ends with, else its first."""
    exc = getattr(exc, "cause", None) or exc  # a RayTaskError's own exception
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # Ray colours names
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[-1] if '\n  File "' in text else lines[0]
