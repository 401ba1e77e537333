"""Shared test helpers (corrupt artefacts): the kinds of file an index keeps, the damages
done to them, and the matrix of cases, run in a child process by
tests/reliability/test_corruption.py (see its docstring)."""

from __future__ import annotations

import json
import shutil
import sys
import traceback
from pathlib import Path

# kind of file -> its role in the manifest of the base index (generation 2: segment 1 from the
# first ingest, shared by both generations, and segment 2, two audio items), or its name
KINDS = {
    "manifest": "manifest.json",
    "assets": "seg/2/assets",
    "items": "seg/2/items",
    "failures": "failures",
    "embeddings audio g1": "seg/1/embeddings/audio",  # shared by both generations
    "embeddings audio g2": "seg/2/embeddings/audio",
    "embeddings image": "seg/1/embeddings/image",
    "faiss audio": "seg/1/faiss/audio",
    "faiss audio g2": "seg/2/faiss/audio",
    "faiss text": "seg/1/faiss/text",
    "reference audio": "reference/audio",
    "reference image": "reference/image",
    "writer.lock": "writer.lock",
}
DAMAGES = ("empty", "16 bytes", "half", "flipped", "deleted")
CASES = [(kind, damage) for kind in KINDS for damage in DAMAGES] + [("manifest", "edited")]

QUERIES = [
    {"text": "a dog on a walk", "target": "audio"},
    {"text": "a dog on a walk", "target": "image"},
    {"text": "rain on a roof", "target": "text"},
    {"text": "rain on a roof", "target": "all"},
    {"like": "first audio item", "target": "audio", "k": 5},
]


def case_id(kind: str, damage: str) -> str:
    return f"{kind}: {damage}"


def cls(kind: str) -> str:
    """What a repair can do about the kind: re-derive, restore, reset, or fall back."""
    role = KINDS[kind].split("/", 2)[-1] if KINDS[kind].startswith("seg/") else KINDS[kind]
    if role.startswith(("faiss/", "reference/")):
        return "derived"
    if role.startswith("embeddings/"):
        return "embeddings"  # re-created from the exact (Flat) FAISS index
    return {"assets": "source", "items": "source", "writer.lock": "lock"}.get(role, role)


def damage_file(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "16 bytes":
        path.write_bytes(data[:16])
    elif how == "half":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        middle = bytearray(data)
        for i in range(len(middle) // 2, min(len(middle) // 2 + 8, len(middle))):
            middle[i] ^= 0xFF
        path.write_bytes(bytes(middle))
    elif how == "deleted":
        path.unlink()
    elif how == "edited":  # still valid JSON, one number changed: only a checksum tells
        raw = json.loads(data)
        raw["next_item_id"] -= 1
        path.write_bytes(json.dumps(raw, indent=1, sort_keys=True).encode())
    else:
        raise ValueError(how)


def damaged_path(directory: Path, kind: str) -> Path:
    role = KINDS[kind]
    if role in ("manifest.json", "writer.lock"):
        return directory / role
    manifest = json.loads((directory / "manifest.json").read_bytes())
    return directory / manifest["files"][role]["path"]


# --- the child: builds the index and runs every case ------------------------------------------


def _hits(index, like: int) -> list[list]:
    rows = []
    for query in QUERIES:
        query = {**query, "like": like} if "like" in query else query
        hits = index.search(**query)
        rows.append([[Path(h.path).name, h.modality, h.start, h.end, round(h.cosine, 5),
                      round(h.score, 4), h.item_id] for h in hits])  # fmt: skip
    return rows


class _Memo:
    """The encoder, remembering its answers: the cases embed the same few inputs again and
    again, and the model's time is not what this test measures."""

    def __init__(self, encoder) -> None:
        self._encoder = encoder
        self._known: dict[tuple, object] = {}

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)

    def _ask(self, method: str, inputs: list, keys: list):
        key = (method, *keys)
        if key not in self._known:
            self._known[key] = getattr(self._encoder, method)(inputs)
        return self._known[key].copy()

    def embed_text(self, texts):
        return self._ask("embed_text", list(texts), list(texts))

    def embed_audio(self, waves):
        return self._ask("embed_audio", list(waves), [_digest(w) for w in waves])

    def embed_images(self, images):
        return self._ask("embed_images", list(images), [_digest(i) for i in images])

    def embed(self, modality, payloads):
        return {"image": self.embed_images, "audio": self.embed_audio, "text": self.embed_text}[
            modality
        ](payloads)


def _digest(value) -> str:
    import hashlib

    import numpy as np

    return hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()


def _outcome(fn) -> dict:
    from xsearch.errors import XSearchError

    try:
        return {"ok": fn()}
    except XSearchError as e:
        return {"error": str(e)}
    except Exception as e:  # the promise is broken: keep what the test must show
        return {"crash": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}


def run_matrix(workdir: Path, out: Path) -> None:
    """Child process: build the base index (two generations), then damage a copy per case."""
    import numpy as np

    import xsearch
    from tests.helpers.media_tree import make_media
    from tests.helpers.store import check_invariants
    from xsearch.ingest.pipeline import IngestOptions, ingest
    from xsearch.ingest.scan import find_files
    from xsearch.models import load_encoder
    from xsearch.samples import audio_samples, write_wav
    from xsearch.store.repair import repair_index
    from xsearch.store.store import Store
    from xsearch.store.verify import verify_index

    # its own load, not the tiny_audioclip fixture: this runs in a child process
    encoder = _Memo(load_encoder("random", config="audioclip-tiny", device="cpu", batch_size=4))
    options = IngestOptions(workers=0)
    media = make_media(workdir / "media")
    base = workdir / "base"
    ingest(find_files([media]), base, encoder, options)
    shutil.copytree(base, workdir / "gen1")
    waves = audio_samples(seconds=1.0)
    write_wav(media / "rain" / "extra.wav", np.concatenate([waves["tone_440hz.wav"]] * 12))
    ingest(find_files([media]), base, encoder, options)  # generation 2: two audio items more
    late = workdir / "late.wav"  # what each case's ingest adds
    write_wav(late, waves["siren.wav"])
    shutil.copytree(base, workdir / "after")
    ingest([late], workdir / "after", encoder, options)
    like = int(Store.open(base).item_ids("audio")[0])

    def search(directory: Path):
        index = xsearch.open(directory.name, root=directory.parent)
        index.use_encoder(encoder)  # one model for every case
        return _hits(index, like)

    def add_late(directory: Path) -> int:
        return ingest([late], directory, encoder, options).added

    def invariants(directory: Path) -> str:
        check_invariants(Store.open(directory))
        return "ok"

    with open(out, "w") as f:
        facts = {
            "base": str(base),
            "late": str(late),
            "media": str(media),
            "baseline": search(base),
            "gen1": search(workdir / "gen1"),
            "after_ingest": search(workdir / "after"),
            "gen2_items": int(Store.open(base).items.num_rows),
            "gen1_items": int(Store.open(workdir / "gen1").items.num_rows),
        }
        f.write(json.dumps({"facts": facts}) + "\n")
        f.flush()
        for n, (kind, how) in enumerate(CASES):
            case = case_id(kind, how)
            print(f"BEGIN {case}", file=sys.stderr, flush=True)
            directory = workdir / "cases" / f"{n:02d}" / "idx"
            shutil.copytree(base, directory)
            damage_file(damaged_path(directory, kind), how)
            result = {"case": case, "query": _outcome(lambda d=directory: search(d))}
            ingested = directory.parent / "ingest" / "idx"
            shutil.copytree(directory, ingested)
            result["ingest"] = _outcome(lambda d=ingested: add_late(d))
            if "ok" in result["ingest"]:
                result["after_ingest"] = _outcome(lambda d=ingested: search(d))
            verdict = _outcome(lambda d=directory: verify_index(d))
            assert "ok" in verdict, verdict  # verify reports damage, it never fails on it
            result["verify"] = {
                "healthy": verdict["ok"].healthy,
                "bad": [[c.file, c.role, c.problem] for c in verdict["ok"].checks if not c.ok],
            }
            repaired = _outcome(lambda d=directory: repair_index(d))
            if "ok" in repaired:
                r = repaired["ok"]
                repaired = {"ok": {"healthy": r.healthy, "actions": r.actions, "lost": r.lost,
                                   "lost_items": r.lost_items}}  # fmt: skip
            result["repair"] = repaired
            result["after_repair"] = _outcome(lambda d=directory: search(d))
            result["invariants"] = _outcome(lambda d=directory: invariants(d))
            if repaired.get("ok", {}).get("lost"):
                result["reingest"] = _outcome(
                    lambda d=directory: ingest(find_files([media]), d, encoder, options).added
                )
                result["after_reingest"] = _outcome(lambda d=directory: search(d))
            f.write(json.dumps(result) + "\n")
            f.flush()
