"""What an index records about its model: `model_identity` for loaded and fake encoders, and
the spec `load_encoder` gives."""

from __future__ import annotations

import hashlib

from xsearch.ingest.identity import model_identity
from xsearch.models import load_encoder
from xsearch.models.config import spec_for
from xsearch.models.weights import sidecar_path


def test_load_encoder_knows_its_spec(tiny_checkpoint, tiny_audioclip):
    from_file = load_encoder(str(tiny_checkpoint), device="cpu")
    assert from_file.spec == spec_for("audioclip-tiny")
    random = tiny_audioclip  # load_encoder("random", config="audioclip-tiny")
    assert random.spec == spec_for("audioclip-tiny") and random.weights.is_random


def test_identity_of_a_checkpoint_is_family_config_and_sha256(tiny_checkpoint, tmp_path):
    copy = tmp_path / "tiny.pt"
    copy.write_bytes(tiny_checkpoint.read_bytes())
    encoder = load_encoder(str(copy), device="cpu")
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()
    # The keys and values indexes have always recorded: old indexes still compare equal.
    expected = {"encoder": "audioclip", "config": "audioclip-tiny", "weights": digest}
    assert model_identity(encoder) == expected
    sidecar_path(copy).write_text(f"{'0' * 64}  tiny.pt\n")  # the recorded digest is used
    assert model_identity(encoder)["weights"] == "0" * 64


def test_identity_of_random_weights(tiny_audioclip):
    assert model_identity(tiny_audioclip) == {
        "encoder": "audioclip",
        "config": "audioclip-tiny",
        "weights": "random",
    }


def test_identity_of_a_fake_encoder_names_its_shape(fake_encoder):
    identity = model_identity(fake_encoder(dim=512, modalities=("audio", "text")))
    assert identity == {"encoder": "fake", "config": "fake-512-audio-text", "weights": "random"}
    assert model_identity(fake_encoder(dim=768, modalities=("audio", "image"))) != identity
