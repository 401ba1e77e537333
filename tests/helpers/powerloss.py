"""A model of what a power loss leaves on disk, for the store's crash tests.

`PowerLoss(root)` watches, inside this process, every file operation made under `root` and
keeps a model of the page cache: what has reached the disk and what is still only in memory.
It takes a *crash image* (the model's state, to be turned into directories later) before each
fsync, rename and unlink under `root`, and at each `crashpoint(step)` of a commit
(`xsearch.store.fsutil.crash_hook`). `CrashImage.state` gives one state a power loss at that
moment may leave (`materialize` writes it); `CrashImage.variants` lists those worth trying.

The model:
- When `PowerLoss` starts, everything under `root` is on disk (as after `sync`).
- A file's bytes are on disk as of its last `fsync` (`os.fsync`/`os.fdatasync` on any fd of
  it). A file never fsynced since it was created comes back empty, cut to a random prefix or
  whole (the `contents` of a variant: "zero", "prefix", "full"); a synced file written again
  since comes back as synced ("zero", "prefix") or as written ("full").
- Directory operations (create, rename, unlink, mkdir) are on disk once the directory holding
  the entry is fsynced. Those not yet synced reach the disk *in the order they were made*, any
  prefix of them (a journalling file system, ext4 or XFS, commits its transactions in order):
  a variant keeps the first `keep_ops` of them.
- File contents and directory entries are independent: a synced file whose entry was not synced
  is lost (stricter than ext4, where fsyncing a new file commits its entry too); an entry that
  reached the disk for a file never synced points to "zero"/"prefix" bytes.
- A crash between two hooked operations loses what a crash just before the next one loses:
  bytes written since the last fsync are dropped or cut anyway, so images at the hooks (and
  at the commit's named steps) cover every moment.

What a real file system may do that this model does not:
- reorder directory operations (ext2 without a journal, some network file systems) or persist
  a rename without the create before it;
- return garbage or stale blocks in an unsynced file instead of a prefix (ext4 data=writeback),
  tear a single sector write, or have the device lie about fsync (a disk write cache without
  barriers): no software can survive that last one;
- fail fsync (EIO) and drop the dirty pages: the store would see the error and not publish;
- and operations that bypass Python's `os` module (native code renaming or deleting files) are
  seen only as the listing changes they leave, in an order the model guesses (parents first,
  then by name). The store's native file operations are creations and writes (pyarrow's
  Parquet files, FAISS's index files and on-disk lists, mapped or not), which is fine: their
  bytes count from the fsync that follows, read back through the file then. Directories are
  never renamed (the model refuses to).
"""

from __future__ import annotations

import hashlib
import os
import random
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from xsearch.store import fsutil


@dataclass(eq=False)
class _Node:
    """A file or directory (an inode): what of it is on disk."""

    key: int
    kind: str  # "file" or "dir"
    ino: int
    synced: bytes | None = None  # file: its bytes at its last fsync (None: never synced)
    synced_stat: tuple[int, int] | None = None  # (size, mtime_ns) at that fsync
    entries: dict[str, _Node] = field(default_factory=dict)  # dir: entries at its last fsync
    synced_seq: int = 0  # dir: the operation count at its last fsync
    last_bytes: bytes | None = None  # file: its bytes when last seen (for unsynced ones)


@dataclass(frozen=True)
class _Op:
    """One directory operation: entries set to a node, or removed (None). A rename is one op
    of two changes (it reaches the disk whole or not at all)."""

    seq: int
    changes: tuple[tuple[int, str, int | None], ...]  # (directory key, name, node key)
    what: str


@dataclass(frozen=True)
class _NodeImage:
    kind: str
    synced: bytes | None
    dirty: bool  # a synced file written again since
    current: bytes | None  # its bytes at the crash (files not fully synced)
    entries: dict[str, int]  # dir: name -> node key, as of its last fsync


@dataclass(frozen=True)
class Variant:
    keep_ops: int  # how many of the unsynced directory operations reached the disk
    contents: str  # "zero", "prefix" or "full": what unsynced file bytes come back as
    seed: int = 0  # for "prefix"

    def __str__(self) -> str:
        seed = f", seed {self.seed}" if self.contents == "prefix" else ""
        return f"{self.keep_ops} unsynced ops kept, {self.contents} unsynced data{seed}"


@dataclass(frozen=True)
class CrashImage:
    """The model's state at one moment: enough to write every state a power loss then may
    leave. `context` is what the test's `context()` said at that moment."""

    label: str
    index: int
    root: int
    nodes: dict[int, _NodeImage]
    ops: tuple[_Op, ...]  # directory operations not on disk yet, in the order they were made
    context: dict

    def variants(self, seeds: int = 3, prefixes: int = 1) -> list[Variant]:
        """None, all, and `prefixes` seeded random prefixes of the unsynced operations, each
        with unsynced data as zero bytes, `seeds` random truncations, and whole."""
        n = len(self.ops)
        rng = random.Random(f"{self.label}/{self.index}")
        keeps = {0, n} | {rng.randint(1, n - 1) for _ in range(prefixes) if n > 1}
        out = []
        for keep in sorted(keeps):
            out.append(Variant(keep, "zero"))
            out += [Variant(keep, "prefix", seed) for seed in range(seeds)]
            out.append(Variant(keep, "full"))
        return out

    def state(self, variant: Variant) -> dict[str, bytes | None]:
        """The files (relative path -> bytes) and folders (-> None) the power loss `variant`
        leaves under root, parents first."""
        entries = {k: dict(n.entries) for k, n in self.nodes.items() if n.kind == "dir"}
        for op in self.ops[: variant.keep_ops]:
            for directory, name, node in op.changes:
                if node is None:
                    entries[directory].pop(name, None)
                else:
                    entries[directory][name] = node
        rng = random.Random(f"{self.label}/{self.index}/{variant.seed}")
        out: dict[str, bytes | None] = {}
        written: dict[int, bytes] = {}

        def walk(key: int, rel: str) -> None:
            for name in sorted(entries[key]):
                child = entries[key][name]
                if self.nodes[child].kind == "dir":
                    out[f"{rel}{name}"] = None
                    walk(child, f"{rel}{name}/")
                else:
                    if child not in written:
                        written[child] = self._bytes(self.nodes[child], variant.contents, rng)
                    out[f"{rel}{name}"] = written[child]

        walk(self.root, "")
        return out

    def materialize(self, dest: Path, variant: Variant) -> None:
        """Write the state `variant` of this image as `dest` (a copy of root; must not exist)."""
        write_state(self.state(variant), dest)

    @staticmethod
    def _bytes(node: _NodeImage, contents: str, rng: random.Random) -> bytes:
        if node.synced is not None and not (node.dirty and contents == "full"):
            return node.synced
        current = node.current if node.current is not None else b""
        if contents == "full":
            return current
        if contents == "prefix" and node.synced is None:
            return current[: rng.randint(0, len(current))]
        return b""


class PowerLoss:
    """Watch file operations under `root` (a directory that exists) while in a `with` block,
    taking a `CrashImage` at each crash point. `context()`, if given, is called at each image
    and its dict kept with it (the test says there what was acknowledged by then)."""

    def __init__(self, root: Path, context: Callable[[], dict] | None = None) -> None:
        self.root = Path(os.path.realpath(root))
        self.context = context or dict
        self.images: list[CrashImage] = []
        self._nodes: dict[int, _Node] = {}
        self._live: dict[str, _Node] = {}  # relative path ("" for root) -> node, as it is now
        self._ops: list[_Op] = []
        self._seq = 0
        self._saved: dict[str, object] = {}
        self._busy = False

    # --- arming ----------------------------------------------------------------------------

    def __enter__(self) -> PowerLoss:
        for rel, st in self._walk():
            node = self._new(st)
            if node.kind == "file":
                node.synced = (self.root / rel).read_bytes()
                node.synced_stat = (st.st_size, st.st_mtime_ns)
            self._live[rel] = node
        for rel, node in self._live.items():
            if rel:
                self._live[_parent(rel)].entries[_name(rel)] = node
        real = {name: getattr(os, name) for name in ("fsync", "fdatasync", "replace", "rename")}
        real |= {"unlink": os.unlink, "remove": os.remove}
        self._saved = {**real, "hook": fsutil.crash_hook}
        os.fsync = lambda fd: self._fsync(fd, real["fsync"])
        os.fdatasync = lambda fd: self._fsync(fd, real["fdatasync"])
        os.replace = lambda src, dst, **kw: self._rename(src, dst, real["replace"], kw)
        os.rename = lambda src, dst, **kw: self._rename(src, dst, real["rename"], kw)
        os.unlink = lambda path, **kw: self._unlink(path, real["unlink"], kw)
        os.remove = lambda path, **kw: self._unlink(path, real["remove"], kw)
        fsutil.crash_hook = self._crashpoint
        return self

    def __exit__(self, *exc: object) -> None:
        for name in ("fsync", "fdatasync", "replace", "rename", "unlink", "remove"):
            setattr(os, name, self._saved[name])
        fsutil.crash_hook = self._saved["hook"]  # type: ignore[assignment]

    # --- the hooks -------------------------------------------------------------------------

    def _crashpoint(self, step: str) -> None:
        self._scan()
        self._image(step)

    def _fsync(self, fd: int, real: Callable[[int], None]) -> None:
        rel = self._rel(os.readlink(f"/proc/self/fd/{fd}"))
        if rel is None or self._busy:
            return real(fd)
        self._scan()
        self._image(f"before fsync {rel or '.'}")
        real(fd)
        node = self._live.get(rel)
        if node is None:
            return
        if node.kind == "dir":
            children = {_name(r): n for r, n in self._live.items() if r and _parent(r) == rel}
            node.entries = children
            node.synced_seq = self._seq
        else:
            with open(f"/proc/self/fd/{fd}", "rb") as f:
                node.synced = f.read()
            st = os.fstat(fd)
            node.synced_stat = (st.st_size, st.st_mtime_ns)

    def _rename(self, src, dst, real, kw) -> None:
        rs, rd = self._rel(os.path.abspath(src)), self._rel(os.path.abspath(dst))
        if (rs is None and rd is None) or kw or self._busy:
            return real(src, dst, **kw)
        self._scan()
        self._image(f"before rename {rs} -> {rd}")
        real(src, dst)
        if rs is None or rd is None:  # moved in or out of the watched tree: a create/unlink
            self._scan()
            return
        node = self._live.pop(rs)
        assert node.kind == "file", "the model renames files only"
        self._live[rd] = node
        self._log(
            [
                (self._live[_parent(rs)], _name(rs), None),
                (self._live[_parent(rd)], _name(rd), node),
            ],
            f"rename {rs} -> {rd}",
        )

    def _unlink(self, path, real, kw) -> None:
        rel = self._rel(os.path.abspath(path))
        if rel is None or kw or self._busy:
            return real(path, **kw)
        self._scan()
        self._image(f"before unlink {rel}")
        node = self._live.get(rel)
        if node is not None and node.kind == "file":
            node.last_bytes = (self.root / rel).read_bytes()
        real(path)
        self._scan()

    # --- the model -------------------------------------------------------------------------

    def _new(self, st: os.stat_result) -> _Node:
        key = len(self._nodes)
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
        self._nodes[key] = node = _Node(key, kind, st.st_ino)
        return node

    def _log(self, changes: list[tuple[_Node, str, _Node | None]], what: str) -> None:
        self._seq += 1
        frozen = tuple((d.key, name, n.key if n else None) for d, name, n in changes)
        self._ops.append(_Op(self._seq, frozen, what))

    def _walk(self) -> Iterator[tuple[str, os.stat_result]]:
        """(relative path, lstat) of root and everything under it, parents first."""
        yield "", os.lstat(self.root)
        stack = [""]
        while stack:
            rel = stack.pop()
            with os.scandir(self.root / rel) as it:
                found = sorted(it, key=lambda e: e.name)
            for entry in found:
                child = f"{rel}/{entry.name}" if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                yield child, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(child)

    def _scan(self) -> None:
        """Log the creations and removals made since the last look (by native code, or by
        Python's `open`/`mkdir`, which the model does not hook)."""
        now = dict(self._walk())
        gone = [r for r, n in self._live.items() if r and (r not in now or now[r].st_ino != n.ino)]
        for rel in sorted(gone, key=lambda r: -r.count("/")):  # children first
            node = self._live.pop(rel)
            if node.kind == "file" and node.last_bytes is None:
                node.last_bytes = b""  # removed by native code unseen: its bytes are unknown
            self._log([(self._live[_parent(rel)], _name(rel), None)], f"unlink {rel}")
        for rel in sorted(now, key=lambda r: (r.count("/"), r)):
            if rel and rel not in self._live:
                node = self._live[rel] = self._new(now[rel])
                self._log([(self._live[_parent(rel)], _name(rel), node)], f"create {rel}")

    def _image(self, label: str) -> None:
        self._busy = True  # the test's context() may open files: not part of the run
        try:
            context = dict(self.context())
        finally:
            self._busy = False
        by_key = {n.key: r for r, n in self._live.items()}
        nodes = {}
        for key, node in self._nodes.items():
            current, dirty = None, False
            if node.kind == "file":
                rel = by_key.get(key)
                if rel is not None:
                    st = os.lstat(self.root / rel)
                    dirty = node.synced is not None and node.synced_stat != (
                        st.st_size,
                        st.st_mtime_ns,
                    )
                    if node.synced is None or dirty:
                        current = (self.root / rel).read_bytes()
                elif node.synced is None:
                    current = node.last_bytes
            entries = {name: n.key for name, n in node.entries.items()}
            nodes[key] = _NodeImage(node.kind, node.synced, dirty, current, entries)
        pending = []
        for op in self._ops:
            changes = tuple(c for c in op.changes if op.seq > self._nodes[c[0]].synced_seq)
            if changes:
                pending.append(_Op(op.seq, changes, op.what))
        root = self._live[""].key
        self.images.append(
            CrashImage(label, len(self.images), root, nodes, tuple(pending), context)
        )

    def _rel(self, path: str) -> str | None:
        """`path` relative to root ("" for root itself), or None when outside it."""
        path = os.path.realpath(path) if not path.endswith(" (deleted)") else path
        if path == str(self.root):
            return ""
        prefix = f"{self.root}/"
        return path[len(prefix) :] if path.startswith(prefix) else None


def state_digest(state: dict[str, bytes | None]) -> str:
    """Equal digests: equal states."""
    digest = hashlib.sha256()
    for rel, data in state.items():
        content = "dir" if data is None else hashlib.sha256(data).hexdigest()
        digest.update(f"{rel}\0{content}\n".encode())
    return digest.hexdigest()


def write_state(state: dict[str, bytes | None], dest: Path) -> None:
    dest.mkdir()
    for rel, data in state.items():
        if data is None:
            (dest / rel).mkdir()
        else:
            (dest / rel).write_bytes(data)


def _parent(rel: str) -> str:
    return rel.rpartition("/")[0]


def _name(rel: str) -> str:
    return rel.rpartition("/")[2]
