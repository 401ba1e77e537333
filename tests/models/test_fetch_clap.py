"""`fetch_weights` for a CLAP model: its checkpoint and its tokenizer files, from loopback
servers, with the same guarantees as AudioCLIP's (verified, atomic, offline message)."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.helpers.file_server import serve_files
from xsearch.errors import DownloadError
from xsearch.models import fetch
from xsearch.models.registry import Release, model_card

MODEL = "laion-clap-tiny"
VOCAB = json.dumps({"<s>": 0, "<pad>": 1, "</s>": 2, "a": 3, "b": 4, "ab": 5}).encode()
MERGES = b"#version: 0.2\na b\n"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XSEARCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def checkpoint() -> bytes:
    """A laion-clap-tiny checkpoint in the official container ('state_dict', 'module.')."""
    from xsearch.models.clap import build_clap
    from xsearch.models.clap_config import clap_config

    torch.manual_seed(0)
    state = build_clap(clap_config(MODEL)).state_dict()
    buffer = io.BytesIO()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, buffer)
    return buffer.getvalue()


@pytest.fixture
def served(checkpoint: bytes) -> Iterator[tuple[str, dict[str, bytes], list[str]]]:
    files = {"/ckpt.pt": checkpoint, "/tok/vocab.json": VOCAB, "/tok/merges.txt": MERGES}
    with serve_files(files) as (base, asked):
        yield base, files, asked


def _publish(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    """Give the tiny model published files on the loopback server."""
    card = model_card(MODEL)
    card = replace(
        card,
        releases=(Release("seeded", "tiny-clap.pt", f"{base}/ckpt.pt"),),
        tokenizer=tuple(
            Release(name, name, f"{base}/tok/{name}") for name in ("vocab.json", "merges.txt")
        ),
    )
    monkeypatch.setattr(fetch, "model_card", lambda name: card)


def test_fetch_installs_checkpoint_and_tokenizer_files_once(served, monkeypatch, tmp_path):
    base, files, asked = served
    _publish(monkeypatch, base)
    result = fetch.fetch_weights(model=MODEL, dest_dir=tmp_path / "w")
    assert result.path == tmp_path / "w" / "tiny-clap.pt" and result.downloaded
    assert result.path.read_bytes() == files["/ckpt.pt"]
    assert [p.name for p in result.files] == ["vocab.json", "merges.txt"]
    assert (tmp_path / "w" / "vocab.json").read_bytes() == VOCAB
    assert (tmp_path / "w" / "tiny-clap.pt.sha256").read_text().split()[0] == result.sha256
    assert not list((tmp_path / "w").glob("*.part"))
    asked.clear()
    again = fetch.fetch_weights(model=MODEL, dest_dir=tmp_path / "w")
    assert not again.downloaded and asked == []  # valid copies are kept


def test_default_folder_is_the_models_own(served, monkeypatch, tmp_path):
    base, _, _ = served
    _publish(monkeypatch, base)
    result = fetch.fetch_weights(model=MODEL)
    assert result.path.parent == tmp_path / "cache" / "weights" / MODEL


def test_a_page_instead_of_a_vocabulary_is_refused_and_not_installed(served, monkeypatch, tmp_path):
    base, files, _ = served
    files["/tok/vocab.json"] = b"<html>captive portal</html>"
    _publish(monkeypatch, base)
    with pytest.raises(DownloadError, match=r"vocab\.json is not a tokenizer file") as caught:
        fetch.fetch_weights(model=MODEL, dest_dir=tmp_path / "w")
    assert "put vocab.json" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "w" / "vocab.json").exists()
    assert not list((tmp_path / "w").glob("*.part"))


def test_offline_names_the_file_and_where_to_put_it(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _publish(monkeypatch, f"http://127.0.0.1:{port}")
    with pytest.raises(DownloadError) as caught:
        fetch.fetch_weights(model=MODEL, dest_dir=tmp_path / "w")
    message = str(caught.value)
    assert "vocab.json" in message and str(tmp_path / "w") in message and "\n" not in message


def test_a_checkpoint_of_another_model_fails_verification(served, monkeypatch, tmp_path):
    base, files, _ = served
    buffer = io.BytesIO()
    torch.save({"state_dict": {"module.something.else": torch.zeros(2)}}, buffer)
    files["/ckpt.pt"] = buffer.getvalue()
    _publish(monkeypatch, base)
    with pytest.raises(DownloadError, match="failed verification") as caught:
        fetch.fetch_weights(model=MODEL, dest_dir=tmp_path / "w")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "w" / "tiny-clap.pt").exists()


def test_files_url_replaces_the_tokenizer_source(served, monkeypatch, tmp_path):
    base, _, asked = served
    _publish(monkeypatch, "http://127.0.0.1:9")  # unreachable: only the overrides can work
    fetch.fetch_weights(
        model=MODEL, dest_dir=tmp_path / "w", url=f"{base}/ckpt.pt", files_url=f"{base}/tok"
    )
    assert sorted(asked) == ["/ckpt.pt", "/tok/merges.txt", "/tok/vocab.json"]
