"""Small generated media for the demo and for trying xsearch without a collection of one's own.

Everything is synthesised (tones, noise, drawn pictures, a short video), so nothing is
downloaded and the files are the same on every machine.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

RATE = 44100

# What each sample is, in words: the demo's text queries.
DESCRIPTIONS = {
    "tone_440hz.wav": "a pure sine tone",
    "white_noise.wav": "white noise",
    "siren.wav": "a police siren",
    "clock_ticks.wav": "a ticking clock",
    "red_circle.png": "a red circle",
    "blue_sky.png": "a clear blue sky",
    "green_stripes.png": "green stripes",
    "checkerboard.png": "a black and white checkerboard",
    "sunset_beeps.mp4": "beeps over an orange sunset",
}


def _tone(freq: np.ndarray | float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(np.broadcast_to(freq, t.shape)) / RATE
    return np.sin(phase)


def audio_samples(seconds: float = 5.0) -> dict[str, np.ndarray]:
    """Name -> float waveform in [-1, 1] at 44.1 kHz."""
    rng = np.random.default_rng(0)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    ticks = np.zeros(n)
    for start in range(0, n, RATE // 2):  # two ticks a second, each a 5 ms decaying burst
        burst = rng.standard_normal(220) * np.exp(-np.arange(220) / 40)
        ticks[start : start + 220] = burst[: n - start]
    return {
        "tone_440hz.wav": 0.5 * _tone(440.0, seconds),
        "white_noise.wav": 0.3 * rng.standard_normal(n).clip(-3, 3) / 3,
        "siren.wav": 0.5 * _tone(900 + 300 * np.sin(2 * np.pi * 0.5 * t), seconds),
        "clock_ticks.wav": 0.8 * ticks / np.abs(ticks).max(),
    }


def image_samples(size: tuple[int, int] = (320, 240)) -> dict[str, Image.Image]:
    w, h = size
    circle = Image.new("RGB", size, "white")
    ImageDraw.Draw(circle).ellipse((w / 2 - h / 3, h / 6, w / 2 + h / 3, 5 * h / 6), fill="red")
    sky = np.zeros((h, w, 3), np.uint8)
    sky[...] = np.linspace([70, 130, 230], [190, 220, 255], h)[:, None, :].astype(np.uint8)
    stripes = np.zeros((h, w, 3), np.uint8)
    stripes[:, (np.arange(w) // 20) % 2 == 0] = (30, 160, 60)
    cells = ((np.arange(h)[:, None] // 30) + (np.arange(w)[None, :] // 30)) % 2
    board = np.repeat((cells * 255).astype(np.uint8)[..., None], 3, axis=2)
    return {
        "red_circle.png": circle,
        "blue_sky.png": Image.fromarray(sky),
        "green_stripes.png": Image.fromarray(stripes),
        "checkerboard.png": Image.fromarray(board),
    }


def write_wav(path: Path, wave_data: np.ndarray, rate: int = RATE) -> None:
    """16-bit mono PCM WAV."""
    pcm = (np.clip(wave_data, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def write_video(path: Path, seconds: float = 3.0, fps: int = 10) -> None:
    """An H.264/AAC (or MPEG-4/AAC) clip: an orange gradient with a beeping tone."""
    import av

    beeps = _tone(1000.0, seconds) * ((np.arange(int(seconds * RATE)) // (RATE // 4)) % 2 == 0)
    with av.open(str(path), "w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        audio = container.add_stream("aac", rate=RATE)
        audio.layout = "mono"
        for i in range(int(seconds * fps)):
            glow = np.linspace(255, 90, 240)[:, None] * np.ones((1, 320))
            rgb = np.stack([glow, glow * 0.55, glow * 0.2], axis=-1).astype(np.uint8)
            rgb[200 - i : 240 - i, 140:180] = (255, 220, 120)  # the sun, sinking
            container.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        samples = (0.4 * beeps).astype(np.float32)
        step = 1024
        for start in range(0, len(samples), step):
            chunk = samples[start : start + step][None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            frame.sample_rate = RATE
            frame.pts = start
            container.mux(audio.encode(frame))
        container.mux(video.encode())
        container.mux(audio.encode())


def write_samples(folder: Path) -> list[Path]:
    """Write every sample into `folder`; returns the paths in DESCRIPTIONS order."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in audio_samples().items():
        write_wav(folder / name, data)
    for name, image in image_samples().items():
        image.save(folder / name)
    write_video(folder / "sunset_beeps.mp4")
    # a text sidecar: ingest turns it into a text item of the video
    (folder / "sunset_beeps.txt").write_text(DESCRIPTIONS["sunset_beeps.mp4"] + "\n")
    return [folder / name for name in DESCRIPTIONS]
