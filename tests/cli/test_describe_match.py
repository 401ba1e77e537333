"""How the table says which moment of a file matched."""

from __future__ import annotations

from cli.query import describe_match
from xsearch.search.hit import Hit


def hit(modality: str, start: float | None, end: float | None) -> Hit:
    return Hit(1, 3.0, 0.5, "/m/a.mp4", modality, start, end, [], 1, 1, "video")


def test_each_moment_says_its_time():
    assert describe_match(hit("image", 2.5, 2.5)) == "frame at 2.5 s"  # a central frame
    assert describe_match(hit("image", 4.0, 6.0)) == "frame 4.0-6.0 s"  # a frame over time
    assert describe_match(hit("audio", 10.0, 20.0)) == "audio 10.0-20.0 s"
    assert describe_match(hit("text", None, None)) == "text"
