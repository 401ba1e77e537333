"""The models xsearch knows, as data: one JSON file per named model in `configs/`.

Each file names its `family` (audioclip, laion-clap, msclap, cav-mae, mmv), says what the model
embeds and what input each modality expects, and lists its official weights and tokenizer
files. This module reads those facts without importing torch, so a command can check a model
name, plan its decoding and refuse a query the model cannot embed before anything heavy
loads. A model name is also the config name an index records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from xsearch.errors import UsageError
from xsearch.models.spec import AudioInput, EncoderSpec, ImageInput, Space, TextInput

DEFAULT_MODEL = "audioclip"
# family -> the input facts its JSON spells out; each family's architecture details are read
# by its own module (config.py for AudioCLIP, clap_config.py for the CLAP families, cav_mae.py).
FAMILIES = ("audioclip", "laion-clap", "msclap", "cav-mae", "mmv")


@dataclass(frozen=True)
class Release:
    """A file published with a model: a checkpoint or a tokenizer file."""

    name: str  # what `xsearch model fetch MODEL NAME` calls it, e.g. full, 630k-audioset-best
    filename: str
    url: str
    size: int | None = None  # bytes, when recorded
    sha256: str | None = None  # of the published file, when recorded

    @property
    def installed(self) -> str:
        """The name the weights have in the cache: the published file's, or for a pickled
        release (MMV's .pkl) that of its copy converted by `xsearch model convert`."""
        if self.filename.endswith(".pkl"):
            return self.filename[: -len(".pkl")] + ".pt"
        return self.filename


@dataclass(frozen=True)
class ModelCard:
    """One named model: its family, what it embeds, its weights and licence."""

    name: str
    family: str
    description: str
    licence: str
    spec: EncoderSpec
    releases: tuple[Release, ...]  # official checkpoints, the default first
    tokenizer: tuple[Release, ...]  # files its tokenizer needs, fetched beside the weights
    # what is not reproduced from the official model (said by `xsearch model list`)
    gaps: tuple[str, ...] = ()

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.spec.modalities

    @property
    def dim(self) -> int:
        return self.spec.dim

    def release(self, name: str | None = None) -> Release:
        """The checkpoint called `name` (default: the first); UsageError naming the known."""
        if not self.releases:
            raise UsageError(f"model {self.name} has no published weights (random weights only)")
        if name is None:
            return self.releases[0]
        for release in self.releases:
            if release.name == name:
                return release
        known = ", ".join(r.name for r in self.releases)
        raise UsageError(f"model {self.name} has no weights {name!r}; known: {known}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "modalities": list(self.modalities),
            "dim": self.dim,
            "weights": [r.name for r in self.releases],
            "licence": self.licence,
            "description": self.description,
            "gaps": list(self.gaps),
        }


def model_names() -> list[str]:
    """Every registered model name, sorted."""
    folder = resources.files("xsearch.models") / "configs"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def raw_config(name: str) -> dict[str, Any]:
    """The JSON of model `name`; an unknown name is a UsageError listing the known ones."""
    return dict(_raw(name))


@cache
def _raw(name: str) -> dict[str, Any]:
    known = model_names()
    if name not in known:
        raise UsageError(f"unknown model {name!r}; known models: {', '.join(known)}")
    text = (resources.files("xsearch.models") / "configs" / f"{name}.json").read_text()
    raw = json.loads(text)
    if raw.get("family") not in FAMILIES:
        raise UsageError(f"model {name}: unknown family {raw.get('family')!r}")
    return raw


def family_of(name: str) -> str:
    return str(_raw(name)["family"])


def names_of_family(family: str) -> list[str]:
    return [n for n in model_names() if family_of(n) == family]


def model_card(name: str) -> ModelCard:
    """The card of model `name` (UsageError listing the known names when there is none)."""
    raw = _raw(name)
    return ModelCard(
        name=name,
        family=raw["family"],
        description=raw.get("description", ""),
        licence=raw.get("licence", "unknown"),
        spec=_spec(name, raw),
        releases=tuple(Release(**r) for r in raw.get("weights", ())),
        tokenizer=tuple(Release(name=r["filename"], **r) for r in raw.get("tokenizer", ())),
        gaps=tuple(raw.get("gaps", ())),
    )


def spec_for(name: str) -> EncoderSpec:
    """What model `name` embeds and expects, without building it or importing torch."""
    return model_card(name).spec


def _image_input(vision: dict[str, Any]) -> ImageInput:
    """The image size, the normalisation when the model has its own (else CLIP's), and the
    frames of a clip for a model of video clips."""
    clip = {"frames": vision["frames"], "fps": float(vision["fps"])} if "frames" in vision else {}
    if "mean" in vision:
        mean, std = tuple(vision["mean"]), tuple(vision["std"])
        return ImageInput(vision["image_size"], mean, std, **clip)
    return ImageInput(vision["image_size"], **clip)


def _spaces(raw: list[dict[str, Any]]) -> tuple[Space, ...]:
    """The spaces of a model of several, laid side by side in the order the JSON lists them."""
    spaces, start = [], 0
    for space in raw:
        spaces.append(Space(space["name"], start, space["width"], tuple(space["modalities"])))
        start += space["width"]
    return tuple(spaces)


def _spec(name: str, raw: dict[str, Any]) -> EncoderSpec:
    audio = raw.get("audio")
    text = raw.get("text")
    vision = raw.get("vision")
    return EncoderSpec(
        family=raw["family"],
        config=name,
        dim=raw["embed_dim"],
        image=_image_input(vision) if vision else None,
        audio=AudioInput(
            audio["sample_rate"],
            audio.get("clip_seconds"),
            audio.get("resampler", "swr"),
            audio.get("channels", "mean"),
        )
        if audio
        else None,
        text=TextInput(text["context_length"]) if text else None,
        spaces=_spaces(raw.get("spaces", ())),
    )
