"""The HTTP application: a JSON search API, the web page, and the index's files by id.

Requests name files only by integer ids that are looked up in the index's tables; no path from
a request is ever opened. Every error is JSON `{"error": "<one line>"}`: 4xx for what the
client can fix, 500 "internal error" (logged, never a traceback) for the rest.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xsearch.errors import XSearchError
from xsearch.search.facets import Facets, available
from xsearch.search.targets import LABELS, check_target
from xsearch.server import uploads
from xsearch.server.catalog import Asset, Catalog
from xsearch.server.media import (
    WAVE_MAX_SECONDS,
    IndexedFileResponse,
    ThumbnailCache,
    media_type,
    open_indexed,
)

if TYPE_CHECKING:
    from xsearch.api import Index

log = logging.getLogger("xsearch.server")

MAX_K = 500
MAX_WHERE = 2000
DEFAULT_MAX_UPLOAD = 100_000_000
_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-resource-policy", b"same-origin"),  # no <img>/<video> of other pages
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        # blob: shows the query file the user picked, from their own disk
        b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
]


def create_app(
    index: Index,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    upload_dir: str | os.PathLike[str] | None = None,
    allowed_hosts: set[str] | None = None,
    decode_timeout: float = 30.0,
    decode_memory_mb: int = 2048,
    thumbnails: int = 512,
    upload_idle_seconds: float = 10.0,
    uploads_at_once: int = 4,
    full_paths: bool = False,
) -> Starlette:
    """The application serving `index`: its search API, its page and its files.

    `max_upload_bytes` bounds a query file; uploads are stored under `upload_dir` (default: the
    system's temporary folder) for the time of one search. `allowed_hosts`, when given, are the
    only Host header names answered (for a loopback server: refuses DNS-rebinding pages).
    Query files are decoded once first in a worker with `decode_timeout` seconds and
    `decode_memory_mb` of memory. `thumbnails` is how many rendered thumbnails are kept. An
    upload whose body stalls `upload_idle_seconds` is refused (408), and at most
    `uploads_at_once` are received at a time (503 past that): slow clients cannot hold the
    server's connections and temporary files. Hits show paths from the folder holding every
    indexed file (its name included), not the server's layout, unless `full_paths`.
    """
    api = _Api(
        index,
        max_upload_bytes=max_upload_bytes,
        upload_dir=os.fspath(upload_dir) if upload_dir is not None else None,
        decode_timeout=decode_timeout,
        decode_memory_mb=decode_memory_mb,
        thumbnails=thumbnails,
        upload_idle_seconds=upload_idle_seconds,
        uploads_at_once=uploads_at_once,
        full_paths=full_paths,
    )
    routes = [
        Route("/", api.page),
        Route("/static/{name}", api.static),
        Route("/api/status", api.status),
        Route("/api/search", api.search, methods=["GET"]),
        Route("/api/search", api.search_file, methods=["POST"]),
        Route("/media/{asset_id}", api.media),
        Route("/thumb/{item_id}", api.thumb),
        Route("/wave/{asset_id}", api.wave),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        api.decoders.warm()  # the first query file need not wait for a worker to start
        try:
            yield
        finally:
            api.decoders.close()

    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(_Guard, allowed_hosts=allowed_hosts)],
        exception_handlers={
            HTTPException: _http_error,
            XSearchError: _user_error,
            Exception: _internal_error,
        },
    )


@dataclass(frozen=True)
class SearchParams:
    text: list[str]
    target: str
    k: int
    where: str | None
    min_score: float | None
    like: list[int]
    exclude_self: bool
    nprobe: int | None
    ef: int | None
    per_file: int | None = None
    by_file: bool = False


class _Api:
    def __init__(
        self,
        index: Index,
        *,
        max_upload_bytes: int,
        upload_dir: str | None,
        decode_timeout: float,
        decode_memory_mb: int,
        thumbnails: int,
        upload_idle_seconds: float,
        uploads_at_once: int,
        full_paths: bool,
    ) -> None:
        self.index = index
        self.full_paths = full_paths
        self.upload_idle_seconds = upload_idle_seconds
        self.uploads_at_once = uploads_at_once
        self.uploading = 0  # uploads being received (changed on the event loop only)
        self.thumbnails = thumbnails
        self.catalog = Catalog(index.store)
        self.thumbs = ThumbnailCache(self.catalog, entries=thumbnails)
        self.following = threading.Lock()
        self.max_upload_bytes = max_upload_bytes
        self.upload_dir = upload_dir
        self.decoders = uploads.QueryDecoders(decode_timeout, decode_memory_mb, parallel=4)
        static = resources.files("xsearch.server") / "static"
        self.page_html = (static / "index.html").read_bytes()
        self.static_files = {name: (static / name).read_bytes() for name in _STATIC}
        self.facts = self._facts()

    def _follow(self) -> None:
        """Serve the newest generation: an ingest while serving shows at the next request."""
        with self.following:
            self.index.refresh()
            # Compared with what the catalog was built from, not refresh()'s answer: a search
            # may itself have moved the index on (Index.search reopens when its files go).
            if self.facts["generation"] != self.index.store.generation:
                self.catalog = Catalog(self.index.store)
                self.thumbs = ThumbnailCache(self.catalog, entries=self.thumbnails)
                self.facts = self._facts()

    def _facts(self) -> dict:
        store = self.index.store
        model = dict(store.manifest.model or {})
        return {
            "index": store.dir.name,
            "generation": store.generation,
            **self.catalog.counts(),
            "model": {
                "encoder": model.get("encoder"),
                "config": model.get("config"),
                "random_weights": self.index.random_weights,
            },
            "max_upload_bytes": self.max_upload_bytes,
            "facets": {**available(store), "folders": self.catalog.folders()},
            "targets": [{"value": t, "label": LABELS[t]} for t in self.index.targets],
        }

    # --- the page --------------------------------------------------------------------------

    def page(self, request: Request) -> Response:
        return Response(self.page_html, media_type="text/html; charset=utf-8", headers=_NO_CACHE)

    def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.static_files:  # a fixed set, read at start: nothing is looked up
            raise HTTPException(404, "not found")
        return Response(self.static_files[name], media_type=_STATIC[name], headers=_NO_CACHE)

    # --- the API ---------------------------------------------------------------------------

    def status(self, request: Request) -> JSONResponse:
        self._follow()
        return JSONResponse(self.facts)

    def search(self, request: Request) -> JSONResponse:
        self._follow()
        params = self._params(request.query_params)
        if not (params.text or params.like):
            raise HTTPException(400, "give a query: text=..., like=ITEM_ID, or POST a query file")
        return JSONResponse(self._run(params, {}))

    async def search_file(self, request: Request) -> JSONResponse:
        await run_in_threadpool(self._follow)
        params = await run_in_threadpool(self._params, request.query_params)  # before the upload
        content_type = request.headers.get("content-type")
        kind = uploads.upload_kind(request.query_params.get("as"), content_type)
        suffix = uploads.suffix_for(kind, content_type)
        if self.uploading >= self.uploads_at_once:
            raise HTTPException(503, "too many query files at once: try again in a moment")
        self.uploading += 1
        try:
            path = await uploads.receive(
                request, self.max_upload_bytes, self.upload_dir, suffix, self.upload_idle_seconds
            )
        finally:
            self.uploading -= 1
        try:
            await run_in_threadpool(self.decoders.check, path)
            result = await run_in_threadpool(self._run, params, {kind: [path]})
        except XSearchError as e:
            # The stored name means nothing to the client: say "the query file" instead.
            message = _one_line(str(e)).replace(str(path), "the query file")
            raise HTTPException(400, message) from None
        finally:
            path.unlink(missing_ok=True)
        return JSONResponse(result)

    def _params(self, query: QueryParams) -> SearchParams:
        target = query.get("target") or self.index.targets[0]
        check_target(target, self.index.modalities)
        k = _integer(query, "k", 10)
        if not 1 <= k <= MAX_K:
            raise HTTPException(400, f"k must be between 1 and {MAX_K}")
        where = query.get("where") or None
        if where is not None and len(where) > MAX_WHERE:
            raise HTTPException(400, f"where is longer than {MAX_WHERE} characters")
        where = self._facets(query).where(where)
        if where is not None:
            self.index.check_where(where)  # a bad filter: 400 before any upload is read
        like = [_integer_value("like", v) for v in query.getlist("like") if v.strip()]
        for item_id in like:
            if self.catalog.item(item_id) is None:
                raise HTTPException(400, f"like: no item {item_id} in this index")
        min_score = _number(query, "min_score")
        nprobe, ef = _integer(query, "nprobe", None), _integer(query, "ef", None)
        if (nprobe is not None and nprobe < 1) or (ef is not None and ef < 1):
            raise HTTPException(400, "nprobe and ef must be at least 1")
        per_file = _integer(query, "per_file", None)
        if per_file is not None and not 1 <= per_file <= MAX_K:
            raise HTTPException(400, f"per_file must be between 1 and {MAX_K}")
        return SearchParams(
            text=[t.strip() for t in query.getlist("text") if t.strip()],
            target=target,
            k=k,
            where=where,
            min_score=min_score,
            like=like,
            exclude_self=_flag(query, "exclude_self"),
            nprobe=nprobe,
            ef=ef,
            per_file=per_file,
            by_file=_flag(query, "by_file"),
        )

    def _facets(self, query: QueryParams) -> Facets:
        """The page's filters: kind, duration (s), modification date (YYYY-MM-DD, the server's
        time zone; `before` takes in the whole day), folder (as hits show paths) and labels."""
        folder = query.get("folder") or None
        if folder is not None:
            if len(folder) > MAX_WHERE:
                raise HTTPException(400, f"folder is longer than {MAX_WHERE} characters")
            folder = self.catalog.full_path(folder) if not self.full_paths else folder
        return Facets(
            kinds=tuple(k for k in query.getlist("kind") if k),
            min_duration=_number(query, "min_duration"),
            max_duration=_number(query, "max_duration"),
            modified_after=_day(query, "after"),
            modified_before=_day(query, "before", end=True),
            folder=folder,
            labels=tuple(label for label in query.getlist("label") if label)[:50],
        )

    def _run(self, params: SearchParams, files: dict[str, list[Path]]) -> dict:
        """Search (in a worker thread: `Index.search` is thread-safe) and describe the hits;
        an empty result says why when a filter or the score cutoff is the reason."""
        began = time.perf_counter()
        hits = self._search(params, files)
        took = time.perf_counter() - began
        answer: dict = {"hits": [self._hit(h) for h in hits], "took_ms": round(took * 1000, 1)}
        if not hits:
            answer["empty_because"] = self._why_empty(params, files)
        return answer

    def _why_empty(self, params: SearchParams, files: dict[str, list[Path]]) -> str | None:
        if params.min_score is not None:
            unfiltered = self._search(replace(params, min_score=None), files)
            if unfiltered:
                # a file's moments are one result where results are files
                grouped = params.by_file or params.target not in self.index.modalities
                n = len({h.asset_id for h in unfiltered}) if grouped else len(unfiltered)
                best = max(h.score for h in unfiltered)
                return (
                    f"the min score {params.min_score:g} left out {'all ' if n > 1 else ''}{n} "
                    f"result{'s' if n != 1 else ''} (the best scored {best:.2f})"
                )
        if params.where is not None:
            return "no item matches the filters"
        return None

    def _search(self, params: SearchParams, files: dict[str, list[Path]]):
        return self.index.search(
            text=params.text,
            like=params.like,
            target=params.target,
            k=params.k,
            where=params.where,
            exclude_self=params.exclude_self,
            min_score=params.min_score,
            nprobe=params.nprobe,
            ef=params.ef,
            per_file=params.per_file,
            by_file=params.by_file,
            **files,
        )

    def _hit(self, hit) -> dict:
        out = hit.as_dict()
        asset = self.catalog.asset(hit.asset_id)
        kind = out.get("kind") or (asset.kind if asset else None)
        out["kind"] = kind
        out["duration"] = asset.duration if asset else None  # for a timeline of its moments
        out["bytes"] = asset.bytes if asset else None
        out["modified"] = asset.mtime if asset and asset.mtime and asset.mtime > 0 else None
        out["name"] = os.path.basename(hit.path)
        if not self.full_paths:
            out["path"] = self.catalog.shown_path(hit.path)
        out["media_url"] = f"/media/{hit.asset_id}"
        out["thumb_url"] = f"/thumb/{hit.item_id}" if kind not in (None, "text") else None
        if hit.modality == "text":
            item = self.catalog.item(hit.item_id)
            out["text"] = (item.text or "")[:500] if item else None
        return out

    # --- files by id -----------------------------------------------------------------------

    def _asset(self, request: Request) -> Asset:
        """The asset the request's path names by id (after following the newest generation)."""
        self._follow()
        asset_id = _path_id(request, "asset_id")
        asset = self.catalog.asset(asset_id) if asset_id is not None else None
        if asset is None:
            raise HTTPException(404, "no such media in this index")
        return asset

    def media(self, request: Request) -> Response:
        asset = self._asset(request)
        opened = open_indexed(asset)
        if opened is None:
            gone = f"media {asset.asset_id} is gone or changed since it was indexed"
            raise HTTPException(404, gone)
        return IndexedFileResponse(opened, media_type(asset.path))

    def thumb(self, request: Request) -> Response:
        self._follow()
        item_id = _path_id(request, "item_id")
        item = self.catalog.item(item_id) if item_id is not None else None
        if item is None:
            raise HTTPException(404, "no such item in this index")
        data = self.thumbs.get(item)
        if data is None:
            raise HTTPException(404, f"item {item_id} has no thumbnail")
        return Response(
            data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
        )

    def wave(self, request: Request) -> Response:
        """A wide waveform of `start` to `end` seconds of a file's sound (the detail view's),
        at most WAVE_MAX_SECONDS long."""
        asset = self._asset(request)
        start = _number(request.query_params, "start") or 0.0
        end = _number(request.query_params, "end")
        if end is None or not 0 <= start < end or end - start > WAVE_MAX_SECONDS:
            raise HTTPException(400, f"give 0 <= start < end, at most {WAVE_MAX_SECONDS:g} s apart")
        data = self.thumbs.wave(asset, round(start, 1), round(end, 1))
        if data is None:
            raise HTTPException(404, f"media {asset.asset_id} has no sound to draw")
        return Response(
            data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
        )


_NO_CACHE = {"Cache-Control": "no-cache"}


def _number(query: QueryParams, name: str) -> float | None:
    value = query.get(name, "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise HTTPException(400, f"{name} must be a finite number")
    return number


def _day(query: QueryParams, name: str, end: bool = False) -> float | None:
    """A YYYY-MM-DD date as Unix seconds at its start (`end`: at the start of the next day)."""
    value = query.get(name, "").strip()
    if not value:
        return None
    try:
        day = datetime.date.fromisoformat(value)
        start = datetime.datetime.combine(day, datetime.time())
        return (start + datetime.timedelta(days=1 if end else 0)).timestamp()
    except (ValueError, OverflowError):
        raise HTTPException(400, f"{name} must be a date, YYYY-MM-DD") from None


def _flag(query: QueryParams, name: str) -> bool:
    return query.get(name, "").lower() in ("1", "true", "yes", "on")


def _integer(query: QueryParams, name: str, default: int | None) -> int | None:
    value = query.get(name)
    if value is None or value.strip() == "":
        return default
    return _integer_value(name, value)


# Integers beyond these are no item id, k or breadth (and overflow numpy and FAISS)
_INT_RANGE = (-(2**31), 2**62)


def _integer_value(name: str, value: str) -> int:
    try:
        number = int(value.strip()) if len(value) <= 20 else None
    except ValueError:
        number = None
    if number is None or not _INT_RANGE[0] <= number <= _INT_RANGE[1]:
        raise HTTPException(400, f"{name} must be an integer below 2^62") from None
    return number


def _path_id(request: Request, name: str) -> int | None:
    value = request.path_params[name]
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


def _one_line(message: str) -> str:
    return " ".join(message.split())


# --- errors ----------------------------------------------------------------------------------


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if exc.status_code != 404 or exc.detail != "Not Found" else "not found"
    return JSONResponse(
        {"error": _one_line(str(message))}, status_code=exc.status_code, headers=exc.headers
    )


async def _user_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": _one_line(str(exc))}, status_code=400)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # One line here; Starlette re-raises the exception after this response, so the server
    # (uvicorn) logs its traceback too.
    reason = _one_line(str(exc))[:200]
    log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, reason)
    return JSONResponse({"error": "internal error"}, status_code=500)


# --- every response --------------------------------------------------------------------------


class _Guard:
    """Refuses Host names outside `allowed_hosts` (when given) and requests from other web
    pages, and adds security headers.

    Loopback is no boundary for a browser: any page the user visits may send requests here
    (an `<img>`, a `no-cors` fetch, a form's `text/plain` POST, none preflighted). Browsers
    say where a request comes from: `Sec-Fetch-Site` (other sites and other ports of this
    host alike are not "same-origin"; "none" is the user typing the address), else `Origin`
    (sent with every POST and cross-origin fetch), which must name this server. Clients
    that are not browsers send neither and are served."""

    def __init__(self, app: ASGIApp, allowed_hosts: set[str] | None = None) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed_hosts} if allowed_hosts else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        if self.allowed is not None and _hostname(host) not in self.allowed:
            response = JSONResponse({"error": "unexpected Host header"}, status_code=421)
            await response(scope, receive, send)
            return
        if _from_another_page(headers, host):
            response = JSONResponse(
                {"error": "refused: a request from another web page"}, status_code=403
            )
            await response(scope, receive, send)
            return

        held: dict = {}  # a plain-text error's start, while its body is read

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
                if message["status"] >= 400 and _is_plain_text(message["headers"]):
                    held.update(start=message, body=b"")
                    return
            elif held and message["type"] == "http.response.body":
                held["body"] += message.get("body", b"")
                if message.get("more_body"):
                    return
                await _as_json(held["start"], held["body"], send)
                return
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_plain_text(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == b"content-type" and v.startswith(b"text/plain") for k, v in headers)


async def _as_json(start: Message, body: bytes, send: Send) -> None:
    """An error Starlette answers in plain text (a bad Range header, say) as one-line JSON,
    like every other error of this server."""
    text = _one_line(body.decode("utf-8", "replace")) or HTTPStatus(start["status"]).phrase
    content = json.dumps({"error": text}).encode()
    kept = [
        (k, v) for k, v in start["headers"] if k.lower() not in (b"content-type", b"content-length")
    ]
    headers = [
        *kept,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
    ]
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def _from_another_page(headers: dict[bytes, bytes], host: str) -> bool:
    """Whether the browser says the request comes from a page that is not this server's."""
    site = headers.get(b"sec-fetch-site", b"").decode("latin-1").strip().lower()
    if site:
        return site not in ("same-origin", "none")
    origin = headers.get(b"origin", b"").decode("latin-1").strip().lower()
    if not origin:
        return False
    return origin.split("://", 1)[-1].rstrip("/") != host.strip().lower()


def _hostname(host: str) -> str:
    """The name in a Host header, without the port ("[::1]:8765" -> "::1")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
