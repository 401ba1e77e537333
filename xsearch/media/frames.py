"""Which frames of a video become image items: the frame policy (`--frames`) and the choice of
frames as they stream out of the decoder.

- `central`: the frame at half the duration, alone (the default; the paper's protocol).
- `every:SECONDS`: the first frame at or after 0, S, 2S, ... seconds.
- `scenes[:MAX]`: the first frame, and the first frame of each shot, found where consecutive
  frames differ a lot (see SCENE_THRESHOLD); at most MAX frames per video, the strongest cuts.
- `mean[:N]`: N frames spread evenly over the video (at 0, D/N, 2D/N, ... seconds), embedded
  and averaged into one image item that stands for the whole video: CAV-MAE's classification
  protocol averages 10 frames so (`spread` turns it into the `every` choice that picks them).

The choosers take frames one at a time and turn a chosen frame into the model's input at once
(`prepare`), so they never hold a decoded full-size frame; `stream` hands each chosen frame on
as soon as it is known (`every` at once, `scenes`, which never holds more than MAX chosen ones,
at the end), so that a caller can write it away rather than keep a video's worth of frames.
Nothing here imports PyAV: the policy is parsed by the CLI as well.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from xsearch.errors import ParameterError

# A cut is where the mean absolute difference of consecutive frames, shrunk to SCENE_THUMB
# greyscale pixels, exceeds this (on the 0-255 scale). Encoding noise and camera motion stay
# well below it (about 1-15); a hard cut between two shots is typically 30-100.
SCENE_THRESHOLD = 30.0
SCENE_THUMB = (64, 36)  # width, height: enough to see a shot change, cheap to compare
DEFAULT_SCENES_MAX = 32  # frames per video when `scenes` names no cap
DEFAULT_MEAN_FRAMES = 10  # frames averaged when `mean` names no count
POLICY_FORMS = "central, every:SECONDS, scenes[:MAX] or mean[:N]"


class Picked(NamedTuple):
    """A chosen frame: its time in seconds and what `prepare` made of it."""

    seconds: float
    pixels: Any


@dataclass(frozen=True)
class FramePolicy:
    """Which frames of a video are embedded; `str()` gives the text an index records."""

    kind: str  # "central", "every", "scenes" or "mean"
    seconds: float | None = None  # every: the step between frames
    max_frames: int | None = None  # scenes: the cap on frames per video; mean: the count

    @classmethod
    def parse(cls, text: str) -> FramePolicy:
        """`central`, `every:SECONDS` (> 0), `scenes[:MAX]` (MAX >= 1, default
        DEFAULT_SCENES_MAX) or `mean[:N]` (N >= 1, default DEFAULT_MEAN_FRAMES). Raises
        ParameterError('frames', ...) for anything else."""
        kind, _, value = text.strip().partition(":")
        if kind == "central" and not value:
            return cls("central")
        if kind == "every":
            return cls("every", seconds=_positive_seconds(text, value))
        if kind == "scenes":
            cap = _positive_count(text, value) if value else DEFAULT_SCENES_MAX
            return cls("scenes", max_frames=cap)
        if kind == "mean":
            count = _positive_count(text, value, "mean:N") if value else DEFAULT_MEAN_FRAMES
            return cls("mean", max_frames=count)
        raise ParameterError("frames", f"{text!r} is not one of {POLICY_FORMS}")

    def __str__(self) -> str:
        if self.kind == "every":
            assert self.seconds is not None
            return f"every:{_number(self.seconds)}"
        if self.kind in ("scenes", "mean"):
            return f"{self.kind}:{self.max_frames}"
        return self.kind

    def spread(self, duration: float | None) -> FramePolicy:
        """`mean:N` over a video of `duration` seconds: the `every` choice of its N frames
        (one a second when the length is unknown; take the first N it gives)."""
        assert self.kind == "mean" and self.max_frames is not None
        if not duration or duration <= 0:
            return FramePolicy("every", seconds=1.0)
        return FramePolicy("every", seconds=duration / self.max_frames)

    def pick(
        self,
        frames: Iterable[tuple[float, Any]],
        prepare: Callable[[Any], Any],
        grey: Callable[[Any], np.ndarray],
    ) -> list[Picked]:
        """The frames this policy keeps of (seconds, frame) pairs in time order, in time
        order (`stream`, held in a list)."""
        return list(self.stream(frames, prepare, grey))

    def stream(
        self,
        frames: Iterable[tuple[float, Any]],
        prepare: Callable[[Any], Any],
        grey: Callable[[Any], np.ndarray],
    ) -> Iterator[Picked]:
        """The frames this policy keeps of (seconds, frame) pairs in time order, in time
        order, each given as soon as it is chosen for good. `grey(frame)` gives the small
        greyscale picture `scenes` compares. Not for `central`, which seeks its one frame
        instead of decoding them all."""
        if self.kind == "every":
            assert self.seconds is not None
            return stream_every(frames, self.seconds, prepare)
        if self.kind == "scenes":
            assert self.max_frames is not None
            return iter(pick_scenes(frames, self.max_frames, prepare, grey))
        raise ValueError(f"policy {self} does not pick frames from a stream")


def pick_every(
    frames: Iterable[tuple[float, Any]], step: float, prepare: Callable[[Any], Any]
) -> list[Picked]:
    """`stream_every` held in a list."""
    return list(stream_every(frames, step, prepare))


def stream_every(
    frames: Iterable[tuple[float, Any]], step: float, prepare: Callable[[Any], Any]
) -> Iterator[Picked]:
    """The first frame at or after each of 0, step, 2 step, ... seconds, each as it comes. A
    gap longer than `step` gives one frame, not the same frame twice."""
    due = 0.0
    for seconds, frame in frames:
        if seconds < due - 1e-9:  # times are exact fractions turned to floats
            continue
        yield Picked(seconds, prepare(frame))
        due = (math.floor(seconds / step + 1e-9) + 1) * step


def pick_scenes(
    frames: Iterable[tuple[float, Any]],
    max_frames: int,
    prepare: Callable[[Any], Any],
    grey: Callable[[Any], np.ndarray],
    threshold: float = SCENE_THRESHOLD,
) -> list[Picked]:
    """The first frame, and each frame whose difference from the one before exceeds
    `threshold`; when there are more than `max_frames`, the strongest cuts (the first frame
    always stays). Holds at most `max_frames` prepared frames at any time."""
    kept: list[tuple[float, int, Picked]] = []  # a min-heap: the weakest cut comes first
    previous: np.ndarray | None = None
    for order, (seconds, frame) in enumerate(frames):
        thumb = grey(frame).astype(np.int16)
        cut = math.inf if previous is None else float(np.abs(thumb - previous).mean())
        previous = thumb
        if cut <= threshold or (len(kept) == max_frames and cut <= kept[0][0]):
            continue
        entry = (cut, order, Picked(seconds, prepare(frame)))
        if len(kept) == max_frames:
            heapq.heapreplace(kept, entry)
        else:
            heapq.heappush(kept, entry)
    return sorted((entry[2] for entry in kept), key=lambda p: p.seconds)


def spans(picked: list[Picked], end: float | None) -> list[tuple[float, float]]:
    """(start, end) of each picked frame (there is one at least): see `time_spans`."""
    return time_spans([p.seconds for p in picked], end)


def time_spans(starts: Sequence[float], end: float | None) -> list[tuple[float, float]]:
    """(start, end) of frames at `starts` seconds (one at least): until the next one, the
    last until `end` (the video's length; when unknown or shorter, the last frame's time)."""
    last = starts[-1] if end is None else max(end, starts[-1])
    return list(zip(starts, [*starts[1:], last]))


def _positive_seconds(text: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ParameterError("frames", f"{text!r}: every:SECONDS needs a number of seconds > 0")
    return seconds


def _positive_count(text: str, value: str, form: str = "scenes:MAX") -> int:
    if not value.isdigit() or int(value) < 1:
        raise ParameterError("frames", f"{text!r}: {form} needs a whole number >= 1")
    return int(value)


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def clip_window(
    start: float, end: float, duration: float | None, seconds: float
) -> tuple[float, float]:
    """Where the clip of `seconds` that stands for the moment (start, end) lies, for a model
    of clips (MMV): centred on a moment shorter than a clip (the central frame's is a point),
    else over the moment's first `seconds`; moved to lie within the video's `duration`."""
    middle = (start + end) / 2 if end - start <= seconds else start + seconds / 2
    first = middle - seconds / 2
    if duration is not None:
        first = min(first, duration - seconds)
    first = max(first, 0.0)
    last = first + seconds
    return first, min(last, duration) if duration is not None and duration > first else last


def stream_clips(
    frames: Iterable[tuple[float, Any]],
    firsts: Sequence[float],
    count: int,
    fps: float,
    prepare: Callable[[Any], np.ndarray],
) -> Iterator[np.ndarray]:
    """For each clip start in `firsts` (in time order), the clip of `count` frames at first,
    first + 1/fps, ... seconds, each the latest frame shown at that time (the first frame
    before it begins, the last after it ends), stacked: [count, *prepared shape]. Clips come
    in order as each is complete; each frame is prepared once, however many clips share it."""
    samples = sorted(
        (first + i / fps, c, i) for c, first in enumerate(firsts) for i in range(count)
    )
    slots: dict[int, list[np.ndarray | None]] = {}
    done = 0  # clips handed on
    at = 0  # samples filled
    shown: Any = None  # the latest frame, prepared when a sample first needs it
    prepared: np.ndarray | None = None

    def fill(upto: float | None) -> Iterator[np.ndarray]:
        nonlocal at, done, prepared
        while at < len(samples) and (upto is None or samples[at][0] < upto - 1e-9):
            if prepared is None:
                prepared = prepare(shown)
            _, c, i = samples[at]
            slots.setdefault(c, [None] * count)[i] = prepared
            at += 1
            while done in slots and all(p is not None for p in slots[done]):
                yield np.stack(slots.pop(done))  # type: ignore[arg-type]
                done += 1

    for seconds, frame in frames:
        if shown is None:
            shown = frame  # times before the first frame show the first
        yield from fill(seconds)  # the samples before this frame show the one shown
        if at == len(samples):
            return
        if shown is not frame:
            shown, prepared = frame, None
    if shown is not None:
        yield from fill(None)
