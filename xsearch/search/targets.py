"""What a search can return: the targets of an index, from the modalities of its model.

Defined once here and read by the engine, the Python API, the command line, the server and
(through `/api/status`) the web page.
"""

from __future__ import annotations

from collections.abc import Iterable

from xsearch.errors import ParameterError

# Every target, in the order shells list them; each with the words the page shows for it.
LABELS = {
    "audio": "audio",
    "image": "images",
    "text": "texts",
    "video": "videos",
    "all": "everything",
}
ALL_TARGETS = tuple(LABELS)


def targets_for(modalities: Iterable[str]) -> tuple[str, ...]:
    """The targets of an index whose model embeds `modalities`: each modality, `video` when
    videos can match (by a frame or a sound), and `all`."""
    have = set(modalities)
    out: list[str] = [m for m in ("audio", "image", "text") if m in have]
    if have & {"audio", "image"}:
        out.append("video")
    return (*out, "all")


def check_target(target: str, modalities: Iterable[str]) -> None:
    """ParameterError, one line, for a target the index cannot answer."""
    allowed = targets_for(modalities)
    if target not in allowed:
        known = "unknown target" if target not in ALL_TARGETS else "this index has no target"
        raise ParameterError("target", f"{known} {target!r}; use one of {', '.join(allowed)}")
