"""A small media tree (sounds, a picture, a video with a sidecar, two broken files) made from
xsearch's own generated samples: what the ingest tests walk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from xsearch.samples import audio_samples, image_samples, write_video, write_wav


def make_media(root: Path) -> Path:
    (root / "dogs").mkdir(parents=True)
    (root / "rain").mkdir()
    waves = audio_samples(seconds=1.0)
    write_wav(root / "dogs" / "bark.wav", waves["clock_ticks.wav"])
    write_wav(root / "rain" / "drops.wav", waves["white_noise.wav"])
    long = np.concatenate([waves["siren.wav"]] * 25)  # 25 s -> windows 0-10, 10-20, 20-25
    write_wav(root / "rain" / "storm.wav", long)
    image_samples((96, 64))["blue_sky.png"].save(root / "rain" / "sky.png")
    write_video(root / "dogs" / "walk.mp4", seconds=2.0)
    (root / "dogs" / "walk.json").write_text(
        json.dumps({"text": "a dog on a walk", "labels": ["dog"]})
    )
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 500)
    (root / "empty.wav").write_bytes(b"")
    return root
