"""Finding media files (order, hidden files, symlinks) and reading their sidecar texts."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from xsearch.errors import MediaError, UsageError
from xsearch.ingest.scan import find_files, folder_label, read_file_list, sidecar_texts


def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """root/ with media, hidden entries, text, odd files and symlinks; outside/ next to it."""
    tmp_path = tmp_path.resolve()  # find_files yields real paths
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    for name in [
        "b.wav",
        "a.png",
        "Z.mp4",
        "sub/c.flac",
        "sub/deeper/d.JPG",
        "sub/notes.txt",
        "sub/meta.json",
        "archive.zip",
        "README",
        ".hidden.wav",
        ".git/e.wav",
        "sub/.cache/f.png",
    ]:
        touch(root / name)
    touch(outside / "secret.wav")
    touch(outside / "dir" / "g.png")
    os.mkfifo(root / "pipe.wav")  # not a regular file: would block whoever opens it
    os.symlink(root / "sub" / "deeper", root / "link_in_dir")  # inside: followed
    os.symlink(root / "b.wav", root / "link_in_file.wav")  # inside: same file, once
    os.symlink(outside / "secret.wav", root / "link_out.wav")  # outside: skipped
    os.symlink(outside / "dir", root / "link_out_dir")  # outside: skipped
    os.symlink(root, root / "sub" / "loop")  # a loop back to the root
    os.symlink(root / "missing.wav", root / "broken.wav")  # dangling
    os.symlink("self.wav", root / "self.wav")  # points at itself
    return root, outside


def test_find_files_order_hidden_kinds_and_symlinks(tree):
    root, _ = tree
    errors = []
    found = list(find_files([root], on_error=lambda path, exc: errors.append(path)))
    rel = [p.relative_to(root).as_posix() for p in found]
    assert rel == ["Z.mp4", "a.png", "b.wav", "sub/c.flac", "sub/deeper/d.JPG"]
    assert all(p.is_absolute() and p == p.resolve() for p in found)
    assert errors == [root / "self.wav"]  # the self-loop is reported, not fatal


def test_find_files_without_symlinks(tree):
    root, _ = tree
    rel = [p.relative_to(root).as_posix() for p in find_files([root], False)]
    assert rel == ["Z.mp4", "a.png", "b.wav", "sub/c.flac", "sub/deeper/d.JPG"]


def test_symlink_into_another_root_is_followed(tree):
    root, outside = tree
    found = list(find_files([root, outside]))
    # Reached through link_out*, inside the second root: yielded once, as the real path.
    assert outside / "secret.wav" in found
    assert outside / "dir" / "g.png" in found
    assert len(found) == len(set(found)) == 7


def test_symlinks_reach_hidden_folders_inside_the_root_last(tmp_path):
    root = tmp_path.resolve() / "root"
    touch(root / "z.wav")
    touch(root / ".stash" / "x.wav")
    os.symlink(root / ".stash", root / "a_link")  # a named way into a hidden folder
    os.symlink(root / "a_link", root / "b_link")  # a link to that link: walked once
    assert list(find_files([root])) == [root / "z.wav", root / ".stash" / "x.wav"]
    assert list(find_files([root], follow_symlinks_within_roots=False)) == [root / "z.wav"]


def test_plain_files_and_missing_roots(tree, tmp_path):
    root, _ = tree
    given = [root / "b.wav", root / "sub" / "notes.txt", root / ".hidden.wav", root / "b.wav"]
    # A file named directly is taken even if hidden; text is not media; duplicates go.
    assert list(find_files(given)) == [root / "b.wav", root / ".hidden.wav"]
    with pytest.raises(UsageError, match="no such file"):
        list(find_files([tmp_path / "nope"]))


def test_root_given_through_a_symlink(tree):
    root, outside = tree
    os.symlink(root / "sub", outside / "alias")
    found = list(find_files([outside / "alias"]))
    assert found == [root / "sub" / "c.flac", root / "sub" / "deeper" / "d.JPG"]


def test_read_file_list():
    stream = io.StringIO("a.wav\n\n  \n/abs/b c.png\r\n with space.mp4 \nlast.flac")
    assert read_file_list(stream) == [
        Path("a.wav"),
        Path("/abs/b c.png"),
        Path(" with space.mp4 "),
        Path("last.flac"),
    ]


def test_sidecar_txt(tmp_path):
    media = touch(tmp_path / "song.mp3")
    assert sidecar_texts(media) == ([], [])
    (tmp_path / "song.txt").write_text("\n  A dog barks twice.\n\nThen silence.  \n")
    assert sidecar_texts(media) == (["A dog barks twice.\n\nThen silence."], [])
    (tmp_path / "song.txt").write_text("   \n")
    assert sidecar_texts(media) == ([], [])


@pytest.mark.parametrize(
    ("data", "texts", "labels"),
    [
        ({"text": "rain on a roof"}, ["rain on a roof"], []),
        ({"text": ["one", " ", "two "]}, ["one", "two"], []),
        ({"labels": ["dog", " bark "]}, [], ["dog", "bark"]),
        ({"labels": "dog, bark,, night "}, [], ["dog", "bark", "night"]),
        ({"text": "t", "labels": ["l"], "other": 3}, ["t"], ["l"]),
        ({}, [], []),
    ],
)
def test_sidecar_json(tmp_path, data, texts, labels):
    media = touch(tmp_path / "clip.mp4")
    (tmp_path / "clip.json").write_text(json.dumps(data))
    assert sidecar_texts(media) == (texts, labels)


def test_sidecar_txt_and_json_together(tmp_path):
    media = touch(tmp_path / "x.png")
    (tmp_path / "x.txt").write_text("from txt")
    (tmp_path / "x.json").write_text('{"text": "from json", "labels": "a,b"}')
    assert sidecar_texts(media) == (["from txt", "from json"], ["a", "b"])


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '["a list"]',
        '{"text": 3}',
        '{"labels": ["ok", 2]}',
        b"\xff\xfe\x00bad utf-8",
    ],
)
def test_bad_sidecar_raises_naming_it(tmp_path, content):
    media = touch(tmp_path / "x.wav")
    sidecar = tmp_path / "x.json"
    if isinstance(content, bytes):
        sidecar.write_bytes(content)
    else:
        sidecar.write_text(content)
    with pytest.raises(MediaError) as info:
        sidecar_texts(media)
    message = str(info.value)
    assert message.startswith(str(sidecar))
    assert "\n" not in message


def test_folder_label(tmp_path):
    assert folder_label(tmp_path / "dogs" / "rex.jpg") == "dogs"
    assert folder_label("birds/robin.wav") == "birds"


def test_a_fifo_named_directly_is_skipped_not_read(tmp_path):
    fifo = tmp_path / "stream.wav"
    os.mkfifo(fifo)
    errors = []
    assert list(find_files([fifo], on_error=lambda p, e: errors.append(str(e)))) == []
    assert errors == [f"{fifo}: not a regular file"]
