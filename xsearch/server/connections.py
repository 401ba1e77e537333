"""The HTTP server's connections: uvicorn's HTTP/1.1 protocol with a deadline for each request's
head, and one-line JSON for the errors it answers before the application sees a request.

uvicorn times out a connection only while it idles after a response (`timeout_keep_alive`): one
that never sends a request, or sends its headers a byte at a time, is held for ever, and enough
of them exhaust the server's sockets. Here a connection has `head_seconds` from its start, and
from the end of each response, to send a whole request head; the body of an upload has its own
stall limit (xsearch/server/uploads.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_SECONDS = 10.0


class _BoundedH11Protocol(H11Protocol):
    head_seconds = HEAD_SECONDS
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        if self.transport.is_closing():
            return
        # A request whose head arrives replaces the current cycle: the deadline is then moot.
        self._head_deadline = self.loop.call_later(self.head_seconds, self._head_late, self.cycle)

    def _head_late(self, cycle: Any) -> None:
        if self.cycle is cycle and not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own answer to a malformed request, as JSON like every error of this server
        body = json.dumps({"error": msg}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def server_config(app: Any, head_seconds: float = HEAD_SECONDS, **options: Any):
    """uvicorn's Config for `app` with the bounded protocol; `options` go to uvicorn."""
    import uvicorn

    protocol = type("BoundedH11Protocol", (_BoundedH11Protocol,), {"head_seconds": head_seconds})
    defaults = {"log_level": "warning", "access_log": False, "timeout_graceful_shutdown": 5}
    return uvicorn.Config(app, http=protocol, **{**defaults, **options})
