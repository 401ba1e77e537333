"""MMV's architecture as data (`MmvConfig`, read from a config's "towers" block, and the S3D-G
tables) and its official parameter trees (Haiku, `{'params': ..., 'state': ...}`) converted to
`MmvModel` state dicts. Nothing here needs torch until a tree is converted, so the test recipe
and tools outside the repository's venv can list the official keys.

An official checkpoint (`mmv_s3d.pkl`, `mmv_tsm_resnet_x1.pkl`, `..._x2.pkl`) is a pickle of
two Haiku trees, each `{module_path: {name: array}}`, read here by
`xsearch.models.pickled_params` without running anything. The key set, with shapes, follows
from the config (`expected_haiku_keys`); the conversion checks all of it and drops nothing
silently:
- every expected key must be there with its shape, and no other key (nor other top-level entry)
  may be: otherwise a CheckpointError in one line naming the first offending key;
- keys the inference does not read are checked, then left out on purpose: each batch norm's
  EMA `hidden` and `counter` (the model uses the debiased `average`, as Haiku's BatchNorm does
  with is_training=False), and the "audio2txt_embd" head, which the official training-mode
  init creates but the fac graph never uses at inference (optional: it may be absent).

Layouts: Conv3D w [kt, kh, kw, in, out] -> [out, in, kt, kh, kw]; Conv2D w [kh, kw, in, out] ->
[out, in, kh, kw]; Linear w [in, out] -> [out, in]; the text tower's Conv1D w [1, in, out] ->
[out, in]; batch-norm scale and offset [1, ..., 1, C] -> [C].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from xsearch.errors import CheckpointError
from xsearch.models.registry import raw_config

if TYPE_CHECKING:
    import torch

FAMILY = "mmv"
S3D_BACKBONE = "s3d-g"  # on space-to-depth clips
TSM_BACKBONE = "tsm-resnet50"  # ResNet-50 v2 per frame, with temporal channel shifts
RESNET_STRIDES = (1, 2, 2, 2)

# S3D-G as the checkpoint has it. Units: (name, kernel, separable); widths at width_mult 1.
S3D_STEM = 64  # Conv2d_1a_7x7 (a (2, 4, 4) conv on the space-to-depth input) and Conv2d_2b_1x1
S3D_CONV2C = 192
# Inception blocks: widths of Branch_0 1x1, Branch_1 1x1 -> 3x3, Branch_2 1x1 -> 3x3, Branch_3 1x1
S3D_INCEPTION = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# Max-pools: (window, stride) over (T, H, W), each placed before the block named.
S3D_POOLS = {
    "MaxPool_2a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool_3a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool_4a_3x3": ((3, 3, 3), (2, 2, 2)),
    "MaxPool_5a_2x2": ((2, 2, 2), (2, 2, 2)),
}
S3D_ORDER = (
    "Conv2d_1a_7x7",
    "MaxPool_2a_3x3",
    "Conv2d_2b_1x1",
    "Conv2d_2c_3x3",
    "MaxPool_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
)
INCEPTION_BRANCHES = (
    # (name, index into the widths, input: block input or the previous unit, separable 3x3)
    ("Branch_0_Conv2d_0a_1x1", 0, False),
    ("Branch_1_Conv2d_0a_1x1", 1, False),
    ("Branch_1_Conv2d_0b_3x3", 2, True),
    ("Branch_2_Conv2d_0a_1x1", 3, False),
    ("Branch_2_Conv2d_0b_3x3", 4, True),
    ("Branch_3_Conv2d_0b_1x1", 5, False),
)
SPACE_TO_DEPTH = 2  # the factor on T, H and W


@dataclass(frozen=True)
class MmvConfig:
    name: str
    va_width: int
    vat_width: int
    frames: int
    image_size: int
    video_backbone: str
    video_width_mult: float
    video_dim: int
    audio_stem_width: int
    audio_widths: tuple[int, ...]
    audio_blocks: tuple[int, ...]
    vocab_size: int
    word_dim: int
    context_length: int
    sentence_dim: int
    video_va_inner: int
    bn_eps: float
    # TSM-ResNet only: its stem, unit widths (the width multiplier applied), blocks per unit
    video_stem_width: int = 0
    video_widths: tuple[int, ...] = ()
    video_blocks: tuple[int, ...] = ()
    video_shift_fraction: float = 0.0

    @property
    def is_s3d(self) -> bool:
        return self.video_backbone == S3D_BACKBONE

    def width(self, channels: int) -> int:
        """An S3D channel count at this config's width multiplier."""
        return max(1, round(channels * self.video_width_mult))

    @property
    def text_tokens(self) -> int:
        """The word ids one text takes (the official input pads to this many)."""
        return self.context_length

    @property
    def audio_dim(self) -> int:
        return self.audio_widths[-1]


@cache
def mmv_config(name: str) -> MmvConfig:
    raw = raw_config(name)
    if raw.get("family") != FAMILY:
        raise ValueError(f"model {name} is not an mmv model")
    towers = raw["towers"]
    video, audio, text, heads = towers["video"], towers["audio"], towers["text"], towers["heads"]
    spaces = {space["name"]: space["width"] for space in raw["spaces"]}
    backbone = video["backbone"]
    if backbone not in (S3D_BACKBONE, TSM_BACKBONE):
        raise ValueError(f"model {name}: video backbone {backbone!r} is not supported")
    if video.get("space_to_depth", False) != (backbone == S3D_BACKBONE):
        raise ValueError(f"model {name}: space-to-depth goes with (only) the S3D backbone")
    tsm = {}
    if backbone == TSM_BACKBONE:
        tsm = {
            "video_stem_width": video["stem_width"],
            "video_widths": tuple(video["widths"]),
            "video_blocks": tuple(video["blocks"]),
            "video_shift_fraction": float(video["shift_fraction"]),
        }
    if audio["backbone"] != "resnet50-v2" or heads["graph"] != "fac_relu":
        raise ValueError(f"model {name}: only the resnet50-v2 audio tower and fac_relu heads")
    config = MmvConfig(
        name=name,
        va_width=spaces["va"],
        vat_width=spaces["vat"],
        frames=raw["vision"]["frames"],
        image_size=raw["vision"]["image_size"],
        video_backbone=video["backbone"],
        video_width_mult=float(video.get("width_mult", 1)),
        video_dim=video["output_dim"],
        audio_stem_width=audio["stem_width"],
        audio_widths=tuple(audio["widths"]),
        audio_blocks=tuple(audio["blocks"]),
        vocab_size=raw["text"]["vocab_size"],
        word_dim=raw["text"]["word_dim"],
        context_length=raw["text"]["context_length"],
        sentence_dim=text["sentence_dim"],
        video_va_inner=heads["video_va_inner"],
        bn_eps=float(towers["bn_eps"]),  # every batch norm's
        **tsm,
    )
    if config.is_s3d:
        widths = S3D_INCEPTION["Mixed_5c"]
        computed = sum(config.width(widths[i]) for i in (0, 2, 4, 5))
    else:
        computed = config.video_widths[-1]
    if computed != config.video_dim:
        raise ValueError(
            f"model {name}: the video tower gives {computed} channels, not {config.video_dim}"
        )
    return config


def inception_widths(config: MmvConfig, name: str) -> tuple[int, ...]:
    return tuple(config.width(c) for c in S3D_INCEPTION[name])


def inception_output(widths: tuple[int, ...]) -> int:
    return widths[0] + widths[2] + widths[4] + widths[5]


ROOT = "text_audio_video"
VIDEO = f"{ROOT}/visual_module/~/S3D"
TSM = f"{ROOT}/visual_module/~/TSMResNetV2"
AUDIO = f"{ROOT}/audio_module/~/res_net_v2"
TEXT = f"{ROOT}/text_module/~"
HEADS = f"{ROOT}/~_get_pair_embedding_heads"
BN = "__cross_replica_batch_norm"
OPTIONAL_MODULES = (f"{HEADS}/audio2txt_embd/final_projection",)

Key = tuple[str, str, str]  # (collection: params | state, module path, name)


@dataclass(frozen=True)
class _Entry:
    collection: str
    module: str
    name: str
    shape: tuple[int, ...]
    dtype: str
    torch_key: str | None  # None: checked, not loaded
    layout: str  # conv, linear, conv1d, flat, as_is


class _Plan:
    def __init__(self, config: MmvConfig) -> None:
        self.config = config
        self.entries: list[_Entry] = []

    def add(self, module: str, name: str, shape, torch_key: str | None, layout: str) -> None:
        self.entries.append(
            _Entry("params", module, name, tuple(shape), "float32", torch_key, layout)
        )

    def conv(
        self, module: str, kernel: tuple[int, ...], cin: int, cout: int, torch_key: str
    ) -> None:
        self.add(module, "w", (*kernel, cin, cout), f"{torch_key}.weight", "conv")

    def linear(self, module: str, cin: int, cout: int, torch_key: str | None, bias: bool = True):
        self.add(module, "w", (cin, cout), torch_key and f"{torch_key}.weight", "linear")
        if bias:
            self.add(module, "b", (cout,), torch_key and f"{torch_key}.bias", "as_is")

    def batch_norm(self, module: str, channels: int, rank: int, torch_key: str) -> None:
        shape = (1,) * (rank - 1) + (channels,)
        self.add(module, "scale", shape, f"{torch_key}.weight", "flat")
        self.add(module, "offset", shape, f"{torch_key}.bias", "flat")
        for ema, buffer in (("mean_ema", "running_mean"), ("var_ema", "running_var")):
            state = f"{module}/~/{ema}"
            for name, dims, dtype, key in (
                ("average", shape, "float32", f"{torch_key}.{buffer}"),
                ("hidden", shape, "float32", None),
                ("counter", (), "int32", None),
            ):
                self.entries.append(_Entry("state", state, name, dims, dtype, key, "flat"))

    # towers
    def unit3d(self, path, torch_key, cin, cout, kernel, separable, gating) -> None:
        shapes = [(1, kernel[1], kernel[2]), (kernel[0], 1, 1)] if separable else [kernel]
        for i, shape in enumerate(shapes):
            suffix = f"_{i}" if i else ""
            self.conv(
                f"{path}/~/conv3_d{suffix}",
                shape,
                cin if i == 0 else cout,
                cout,
                f"{torch_key}.convs.{i}",
            )
            self.batch_norm(f"{path}/{BN}{suffix}", cout, 5, f"{torch_key}.bns.{i}")
        if gating:
            self.linear(f"{path}/self_gating", cout, cout, f"{torch_key}.gate")

    def resnet_blocks(self, prefix, key_prefix, cin, widths, blocks, tsm):
        """A pre-activation bottleneck ResNet's groups (`prefix`g/block_j); the channels out.
        TSM's blocks make their convs in __call__ (no `~/`) and always project in block 0."""
        for g, (channels, count) in enumerate(zip(widths, blocks)):
            for j in range(count):
                path, key = f"{prefix}{g}/block_{j}", f"{key_prefix}.{g}.{j}"
                inner = channels // 4
                for i, width in enumerate((cin, inner, inner)):
                    suffix = f"_{i}" if i else ""
                    self.batch_norm(f"{path}/{BN}{suffix}", width, 4, f"{key}.bns.{i}")
                shapes = (((1, 1), cin, inner), ((3, 3), inner, inner), ((1, 1), inner, channels))
                convs = "/" if tsm else "/~/"
                for i, (kernel, a, b) in enumerate(shapes):
                    self.conv(f"{path}{convs}conv_{i}", kernel, a, b, f"{key}.convs.{i}")
                if j == 0 and (tsm or channels != cin):
                    self.conv(
                        f"{path}{convs}shortcut_conv", (1, 1), cin, channels, f"{key}.shortcut"
                    )
                cin = channels
        return cin

    def tsm(self) -> None:
        c = self.config
        self.conv(f"{TSM}/tsm_resnet_stem", (7, 7), 3, c.video_stem_width, "video.stem")
        cin = self.resnet_blocks(
            f"{TSM}/tsm_resnet_unit_",
            "video.groups",
            c.video_stem_width,
            c.video_widths,
            c.video_blocks,
            tsm=True,
        )
        self.batch_norm(f"{TSM}/{BN}", cin, 4, "video.final_bn")

    def video(self) -> None:
        if not self.config.is_s3d:
            return self.tsm()
        w = self.config.width
        channels = 3 * SPACE_TO_DEPTH**3
        for name in S3D_ORDER:
            path, key = f"{VIDEO}/{name}", f"video.layers.{name}"
            if name in S3D_POOLS:
                continue
            if name == "Conv2d_1a_7x7":
                self.unit3d(path, key, channels, w(S3D_STEM), (2, 4, 4), False, False)
                channels = w(S3D_STEM)
            elif name == "Conv2d_2b_1x1":
                self.unit3d(path, key, channels, w(S3D_STEM), (1, 1, 1), False, False)
            elif name == "Conv2d_2c_3x3":
                self.unit3d(path, key, channels, w(S3D_CONV2C), (3, 3, 3), True, True)
                channels = w(S3D_CONV2C)
            else:
                widths = inception_widths(self.config, name)
                for branch, index, separable in INCEPTION_BRANCHES:
                    source = widths[index - 1] if branch.endswith("0b_3x3") else channels
                    kernel = (3, 3, 3) if separable else (1, 1, 1)
                    gating = not branch.endswith("_0a_1x1") or branch.startswith("Branch_0")
                    self.unit3d(
                        f"{path}/{branch}",
                        f"{key}.units.{branch}",
                        source,
                        widths[index],
                        kernel,
                        separable,
                        gating,
                    )
                channels = inception_output(widths)

    def audio(self) -> None:
        c = self.config
        self.conv(f"{AUDIO}/~/initial_conv", (7, 7), 1, c.audio_stem_width, "audio.stem")
        cin = self.resnet_blocks(
            f"{AUDIO}/~/block_group_",
            "audio.groups",
            c.audio_stem_width,
            c.audio_widths,
            c.audio_blocks,
            tsm=False,
        )
        self.batch_norm(f"{AUDIO}/{BN}", cin, 4, "audio.final_bn")

    def text(self) -> None:
        c = self.config
        vocab, words, sentence = (c.vocab_size, c.word_dim), c.word_dim, c.sentence_dim
        self.add(f"{TEXT}/embed", "embeddings", vocab, "text.embed.weight", "as_is")
        self.add(f"{TEXT}/text_conv1", "w", (1, words, sentence), "text.conv.weight", "conv1d")
        self.add(f"{TEXT}/text_conv1", "b", (sentence,), "text.conv.bias", "as_is")

    def heads(self) -> None:
        c = self.config
        va, vat, inner = c.va_width, c.vat_width, c.video_va_inner
        self.linear(f"{HEADS}/audio2txt_embd/final_projection", c.audio_dim, va, None)
        self.linear(f"{HEADS}/audio_embd/final_projection", c.audio_dim, va, "heads.audio_va")
        self.linear(f"{HEADS}/txt2audio_embd/final_projection", c.sentence_dim, va, "heads.text_va")
        self.linear(f"{HEADS}/txt_embd/final_projection", c.sentence_dim, vat, "heads.text_vat")
        v2a = f"{HEADS}/vid2audio_embd"
        self.batch_norm(f"{v2a}/{BN}", inner, 2, "heads.video_va_inner_bn")
        self.batch_norm(f"{v2a}/{BN}_1", va, 2, "heads.video_va_bn")
        self.linear(f"{v2a}/final_projection", inner, va, "heads.video_va", bias=False)
        self.linear(f"{v2a}/final_projection_inner", c.video_dim, inner, "heads.video_va_inner")
        self.batch_norm(f"{HEADS}/vis_embd/{BN}", vat, 2, "heads.va_vat_bn")
        self.linear(f"{HEADS}/vis_embd/final_projection", va, vat, "heads.va_vat")


def _plan(config: MmvConfig) -> list[_Entry]:
    plan = _Plan(config)
    plan.video()
    plan.audio()
    plan.text()
    plan.heads()
    return sorted(plan.entries, key=lambda e: (e.collection, e.module, e.name))


def expected_haiku_keys(config: MmvConfig) -> dict[Key, tuple[tuple[int, ...], str]]:
    """(collection, module path, name) -> (shape, dtype) of every array the official tree of
    this config holds (the optional `OPTIONAL_MODULES` included), sorted."""
    return {(e.collection, e.module, e.name): (e.shape, e.dtype) for e in _plan(config)}


def _to_torch(array: np.ndarray, layout: str) -> torch.Tensor:
    import torch

    if layout == "conv":  # [*kernel, in, out] -> [out, in, *kernel]
        rank = array.ndim
        array = array.transpose(rank - 1, rank - 2, *range(rank - 2))
    elif layout == "linear":
        array = array.T
    elif layout == "conv1d":
        array = array[0].T
    elif layout == "flat":
        array = array.reshape(-1)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _problem(what: str, problems: list[str]) -> None:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise CheckpointError(f"{what}: {problems[0]}{more}")


def state_dict_from_haiku(tree: Any, config: MmvConfig) -> dict[str, torch.Tensor]:
    """The `MmvModel` state dict of the official tree `{'params': ..., 'state': ...}` (as
    `read_pickled_params` gives it); CheckpointError in one line for any missing, unexpected
    or misshapen entry."""
    what = f"not an {config.name} parameter tree"
    if not isinstance(tree, dict):
        raise CheckpointError(f"{what}: a {type(tree).__name__}, not a dict of params and state")
    extra = sorted(set(map(str, tree)) - {"params", "state"})
    problems = [f"missing top-level {c!r}" for c in ("params", "state") if c not in tree]
    problems += [f"unexpected top-level entry {k!r}" for k in extra]
    if problems:
        _problem(what, problems)
    found: dict[Key, Any] = {}
    for collection in ("params", "state"):
        modules = tree[collection]
        if not isinstance(modules, dict):
            _problem(what, [f"{collection} is a {type(modules).__name__}, not a dict"])
        for module, leaves in modules.items():
            if not isinstance(leaves, dict):
                _problem(what, [f"{collection} {module} is a {type(leaves).__name__}, not a dict"])
            for name, value in leaves.items():
                found[(collection, str(module), str(name))] = value
    plan = _plan(config)
    expected = {(e.collection, e.module, e.name): e for e in plan}
    problems = []
    for key, entry in expected.items():
        label = f"{key[0]} {key[1]}/{key[2]}"
        if key not in found:
            if entry.module not in OPTIONAL_MODULES:
                problems.append(f"missing {label} {entry.shape}")
            continue
        value = found[key]
        if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.kind not in "fiu":
            problems.append(f"{label} is not a numeric array ({type(value).__name__})")
        elif tuple(value.shape) != entry.shape:
            problems.append(f"{label} has shape {tuple(value.shape)}, expected {entry.shape}")
        elif entry.dtype == "float32" and value.dtype.kind != "f":
            problems.append(f"{label} has dtype {value.dtype}, expected float32")
    problems += [f"unexpected {k[0]} {k[1]}/{k[2]}" for k in sorted(set(found) - set(expected))]
    if problems:
        _problem(what, problems)
    return {
        e.torch_key: _to_torch(np.asarray(found[(e.collection, e.module, e.name)]), e.layout)
        for e in plan
        if e.torch_key is not None
    }
