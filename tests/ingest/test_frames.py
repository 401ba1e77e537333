"""Frames over time (`--frames`): the policy's text, the frames each policy picks with their
spans, ingest of every:S frames as image items, and the recipe guard against mixing policies."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.helpers.media_factory import frame_index, write_video
from xsearch.cli.main import app
from xsearch.errors import ParameterError, UsageError
from xsearch.ingest import workers
from xsearch.ingest.decode import decode_file
from xsearch.ingest.pipeline import IngestOptions, ingest
from xsearch.ingest.scan import find_files
from xsearch.ingest.workers import DecodePool
from xsearch.media.frames import FramePolicy, pick_every, pick_scenes, spans
from xsearch.media.video import frame_picture, video_frames
from xsearch.store.store import Store


def approx_spans(frames) -> list[tuple[float, float]]:
    return [(round(f.start, 3), round(f.end, 3)) for f in frames]


# --- the policy's text ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("central", "central"),
        ("every:2", "every:2"),
        ("every:2.0", "every:2"),
        ("every:0.5", "every:0.5"),
        ("scenes", "scenes:32"),
        ("scenes:5", "scenes:5"),
        ("mean", "mean:10"),
        ("mean:4", "mean:4"),
    ],
)
def test_policy_text_round_trips_to_one_spelling(text, canonical):
    policy = FramePolicy.parse(text)
    assert str(policy) == canonical
    assert FramePolicy.parse(str(policy)) == policy


@pytest.mark.parametrize(
    "text",
    ["every:0", "every:-1", "every:x", "every:", "every:nan", "every:inf", "scenes:0",
     "scenes:x", "scenes:1.5", "sometimes", "central:3", "", "mean:0", "mean:x"],
)  # fmt: skip
def test_bad_policy_text_is_a_parameter_error(text):
    with pytest.raises(ParameterError) as caught:
        FramePolicy.parse(text)
    assert caught.value.param == "frames" and "\n" not in str(caught.value)


def test_ingest_options_keep_the_canonical_text_and_refuse_bad_text():
    assert IngestOptions(frames="scenes").frames == "scenes:32"
    assert IngestOptions().frames_for({"frames": "every:3"}) == "every:3"  # the index's
    assert IngestOptions(frames="every:1").frames_for({"frames": "every:3"}) == "every:1"
    assert IngestOptions().frames_for(None) == "central"
    with pytest.raises(ParameterError):
        IngestOptions(frames="every:0")


def test_cli_names_the_option_in_one_line(tmp_path):
    result = CliRunner().invoke(
        app,
        ["ingest", str(tmp_path), "--frames", "every:x", "-w", "random"],
        env={"COLUMNS": "200", "XSEARCH_HOME": str(tmp_path / "home")},
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --frames: 'every:x'"), result.output


# --- choosing frames from a stream -----------------------------------------------------------


def test_every_takes_the_first_frame_at_or_after_each_step():
    times = [0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 5.1, 5.5, 6.0]  # a gap from 2.4 to 5.1 s
    picked = pick_every([(t, t) for t in times], 1.0, prepare=lambda t: f"at {t}")
    assert [p.seconds for p in picked] == [0.0, 1.2, 2.0, 5.1, 6.0]  # 3, 4 and 5 s: one frame
    assert picked[1].pixels == "at 1.2"


def test_scenes_keeps_the_first_frame_and_the_strongest_cuts():
    # Grey levels: cuts of 100 at 1 s, 40 at 2 s, 200 at 3 s; small changes elsewhere.
    levels = {0.0: 10, 0.5: 12, 1.0: 112, 1.5: 110, 2.0: 150, 2.5: 151, 3.0: 0, 3.5: 2}
    frames = [(t, np.full((36, 64), v, np.uint8)) for t, v in levels.items()]
    prepared: list[float] = []

    def prepare(frame):
        prepared.append(float(frame[0, 0]))
        return frame

    every_cut = pick_scenes(frames, 10, prepare, grey=lambda f: f)
    assert [p.seconds for p in every_cut] == [0.0, 1.0, 2.0, 3.0]
    capped = pick_scenes(frames, 2, prepare, grey=lambda f: f)
    assert [p.seconds for p in capped] == [0.0, 3.0]  # the first frame and the 200 cut
    weakest_dropped = pick_scenes(frames, 3, prepare, grey=lambda f: f)
    assert [p.seconds for p in weakest_dropped] == [0.0, 1.0, 3.0]
    assert len(prepared) <= 4 + 4 + 4  # only frames that were chosen, when chosen


def test_spans_run_to_the_next_frame_and_the_last_to_the_end():
    picked = pick_every([(t / 10, None) for t in range(35)], 1.0, prepare=lambda f: f)
    assert spans(picked, 3.5) == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 3.5)]
    assert spans(picked, None)[-1] == (3.0, 3.0)  # length unknown: the frame's own time


# --- decoding videos -----------------------------------------------------------------------


def test_every_second_of_a_video(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 35, fps=10)  # 3.5 s; frame i has colour i
    decoded = decode_file(path, frames="every:1", image_norm=None)
    assert [frame_index(f.pixels) for f in decoded.frames] == [0, 10, 20, 30]
    assert approx_spans(decoded.frames) == [(0, 1), (1, 2), (2, 3), (3, 3.5)]
    assert all(f.pixels.shape == (224, 224, 3) for f in decoded.frames)
    halves = decode_file(path, frames="every:0.5", image_norm=None)
    assert [frame_index(f.pixels) for f in halves.frames] == [0, 5, 10, 15, 20, 25, 30]


def test_mean_stacks_frames_spread_over_the_video_into_one_item(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 40, fps=10)  # 4 s; frame i has colour i
    decoded = decode_file(path, frames="mean:4", image_norm=None, spill_to=str(tmp_path / "s"))
    [item] = decoded.frames  # held, not spilled: one item
    assert item.pixels.shape == (4, 224, 224, 3)
    assert [frame_index(p) for p in item.pixels] == [0, 10, 20, 30]
    assert (item.start, item.end) == (0.0, pytest.approx(4.0, abs=0.1))
    norm = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    prepared = decode_file(path, frames="mean:4", image_norm=norm).frames[0].pixels
    assert prepared.shape == (4, 3, 224, 224) and prepared.dtype == np.float32
    short = decode_file(path, frames="mean:100", image_norm=None).frames[0].pixels
    assert len(short) == 40  # no more frames than the video has


def test_a_stack_of_frames_is_embedded_as_the_mean_of_its_frames(tiny_audioclip):
    from xsearch.ingest.pipeline import embed_batch

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 224, 224, 3), dtype=np.uint8)
    single = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
    rows = embed_batch(tiny_audioclip, "image", [frames, Image.fromarray(single)])
    each = tiny_audioclip.embed("image", [Image.fromarray(f) for f in frames])
    mean = each.sum(axis=0) / np.linalg.norm(each.sum(axis=0))
    np.testing.assert_allclose(rows[0], mean, atol=1e-5)
    np.testing.assert_allclose(
        rows[1], tiny_audioclip.embed("image", [Image.fromarray(single)])[0], atol=1e-6
    )


def test_frames_over_time_stay_uint8_when_the_model_normalises(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 20, fps=10)
    norm = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    central = decode_file(path, image_norm=norm)
    assert len(central.frames) == 1 and central.image.dtype == np.float32  # as before
    over_time = decode_file(path, frames="every:1", image_norm=norm)
    assert [f.pixels.dtype for f in over_time.frames] == [np.uint8, np.uint8]


def test_frames_over_time_are_turned_as_the_phone_stored_them(tmp_path):
    path = tmp_path / "portrait.mp4"
    write_video(path, 10, size=(64, 48), rotation=90, with_audio=False)
    seconds, frame = next(iter(video_frames(path)))
    assert seconds == 0.0 and frame_picture(frame).size == (48, 64)  # (width, height)


def test_central_is_unchanged(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 24, fps=2)  # 12 s
    decoded = decode_file(path)
    assert len(decoded.frames) == 1 and frame_index(decoded.image) == 12
    assert decoded.frames[0].start == decoded.frames[0].end == pytest.approx(6.0)


def write_shots(path: Path, cuts: list[float], seconds: float, fps: int = 10) -> None:
    """A video of solid shots that change at `cuts` seconds, with a small square moving in
    every frame (motion that is no cut). Shot k has grey level `levels[k]`: the cuts change it
    by 50, 160, 100 and 130."""
    levels = [40, 90, 250, 150, 20]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 160, 96, "yuv420p"
        video.codec_context.options = {"crf": "10"}
        for i in range(round(seconds * fps)):
            shot = sum(1 for cut in cuts if i / fps >= cut - 1e-9)
            rgb = np.full((96, 160, 3), levels[shot % len(levels)], np.uint8)
            x = (4 * i) % 140
            rgb[40:56, x : x + 16] = 128
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))


def test_scenes_finds_planted_cuts_and_respects_the_cap(tmp_path):
    path = tmp_path / "shots.mp4"
    cuts = [1.0, 2.5, 3.2, 4.7]
    write_shots(path, cuts, seconds=6.0)
    found = decode_file(path, frames="scenes", image_norm=None)
    assert [f.start for f in found.frames] == pytest.approx([0.0, *cuts])
    assert approx_spans(found.frames)[-1] == (4.7, 6.0)
    capped = decode_file(path, frames="scenes:3", image_norm=None)
    assert len(capped.frames) == 3 and capped.frames[0].start == 0.0
    # The strongest cuts: 90 -> 250 at 2.5 s (160) and 150 -> 20 at 4.7 s (130).
    assert [f.start for f in capped.frames] == pytest.approx([0.0, 2.5, 4.7])
    assert approx_spans(capped.frames) == [(0, 2.5), (2.5, 4.7), (4.7, 6.0)]


def test_worker_says_a_video_is_long_before_its_frames_only_then(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 30, fps=10)

    class Pipe:
        def __init__(self) -> None:
            self.sent: list = []

        def send(self, message) -> None:
            self.sent.append(message)

    cases = [("every:1", [("duration", pytest.approx(3.0))], 3), ("central", [], 1)]
    for policy, told, frames in cases:
        pipe = Pipe()
        status, decoded = workers._decode(decode_file, str(path), {"frames": policy}, pipe)
        assert status == "ok" and pipe.sent == told and len(decoded.frames) == frames


@pytest.mark.slow  # two worker processes decode 20 large frames each
def test_a_long_video_gets_time_for_its_frames(tmp_path, monkeypatch):
    """Decoding every frame of large frames takes longer than the time limit; the video's
    length buys it more time (SECONDS_PER_VIDEO_SECOND), the central frame needs none."""
    path = tmp_path / "large.mp4"
    write_video(path, 20, fps=1, size=(3840, 2160), codec="mpeg4", with_audio=False)
    with DecodePool(1, timeout=0.4, frames="every:0.5") as pool:
        [(_, decoded, reason)] = list(pool.imap([str(path)]))
    assert reason is None and len(decoded.frames) == 20
    monkeypatch.setattr(workers, "SECONDS_PER_VIDEO_SECOND", 0.0)
    with DecodePool(1, timeout=0.4, frames="every:0.5") as pool:
        [(_, decoded, reason)] = list(pool.imap([str(path)]))
    assert decoded is None and reason == "timed out after 0.4 s"


# --- ingest --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "long.mp4", 25, fps=10)  # 2.5 s
    write_video(root / "short.mp4", 12, fps=10, with_audio=False)  # 1.2 s
    return root


def frame_items(index: Path) -> dict[str, list[tuple[float, float]]]:
    store = Store.open(index)
    names = {a["asset_id"]: Path(a["path"]).name for a in store.assets.to_pylist()}
    found: dict[str, list[tuple[float, float]]] = {}
    for item in store.items.to_pylist():
        if item["modality"] == "image":
            span = (round(item["start"], 3), round(item["end"], 3))
            found.setdefault(names[item["asset_id"]], []).append(span)
    return {name: sorted(s) for name, s in found.items()}


def test_ingest_every_second_stores_each_frame_with_its_span(tmp_path, videos, tiny_audioclip):
    index = tmp_path / "idx"
    options = IngestOptions(workers=1, frames="every:1")  # through a worker's pipe
    report = ingest(find_files([videos]), index, tiny_audioclip, options)
    assert report.failed == [] and report.items["image"] == 5
    assert frame_items(index) == {
        "long.mp4": [(0, 1), (1, 2), (2, 2.5)],
        "short.mp4": [(0, 1), (1, 1.2)],
    }
    store = Store.open(index)
    assert store.recipe["frames"] == "every:1"
    assert store.faiss_index("image").ntotal == 5


def test_ingest_mean_gives_one_image_item_per_video(tmp_path, videos, tiny_audioclip):
    index = tmp_path / "idx"
    options = IngestOptions(workers=1, frames="mean:4")
    report = ingest(find_files([videos]), index, tiny_audioclip, options)
    assert report.failed == [] and report.items["image"] == 2
    assert frame_items(index) == {"long.mp4": [(0, 2.5)], "short.mp4": [(0, 1.2)]}
    assert Store.open(index).recipe["frames"] == "mean:4"


def test_another_policy_is_refused_and_the_index_is_unchanged(tmp_path, videos, tiny_audioclip):
    index = tmp_path / "idx"
    first = ingest(find_files([videos]), index, tiny_audioclip, IngestOptions(workers=0))
    before = Store.open(index).items.to_pylist()
    with pytest.raises(UsageError) as refused:
        options = IngestOptions(workers=0, frames="scenes:4")
        ingest(find_files([videos]), index, tiny_audioclip, options)
    message = str(refused.value)
    assert "\n" not in message and "frames central" in message and "scenes:4" in message
    store = Store.open(index)
    assert store.generation == first.generation and store.items.to_pylist() == before


def test_an_ingest_without_a_policy_follows_the_index(tmp_path, videos, tiny_audioclip):
    root = tmp_path / "media"
    root.mkdir()
    write_video(root / "a.mp4", 15, fps=10)
    index = tmp_path / "idx"
    ingest(find_files([root]), index, tiny_audioclip, IngestOptions(workers=0, frames="every:1"))
    write_video(root / "b.mp4", 25, fps=10, audio_freq=660.0)
    ingest(find_files([root]), index, tiny_audioclip, IngestOptions(workers=0))
    assert frame_items(index)["b.mp4"] == [(0, 1), (1, 2), (2, 2.5)]


@pytest.mark.slow  # starts a Ray instance
def test_ray_ingest_gives_the_frames_of_a_local_ingest(tmp_path, videos, tiny_audioclip):
    pytest.importorskip("ray", reason="ray is not installed (the optional Ray extra)")
    from xsearch.ingest.ray_backend import RayBackend

    local, on_ray = tmp_path / "local", tmp_path / "ray"
    options = IngestOptions(workers=0, frames="every:1")
    ingest(find_files([videos]), local, tiny_audioclip, options)
    with pytest.MonkeyPatch.context() as env:
        env.delenv("RAY_ADDRESS", raising=False)
        with RayBackend() as backend:
            ingest(find_files([videos]), on_ray, tiny_audioclip, options, backend=backend)
    assert frame_items(on_ray) == frame_items(local)
    assert Store.open(on_ray).recipe == Store.open(local).recipe


def test_a_query_video_gives_the_frames_an_index_of_mean_averages(tmp_path):
    from xsearch.media.video import query_frames

    path = tmp_path / "clip.mp4"
    write_video(path, 40, fps=10)
    pictures = query_frames(path, FramePolicy.parse("mean:4"))
    assert [frame_index(np.asarray(p.resize((224, 224)))) for p in pictures] == [0, 10, 20, 30]
