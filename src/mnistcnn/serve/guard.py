"""ASGI middleware between the web and the app: who may ask (Host, Origin), how much (the body limit), HEAD as GET,
the security headers, and the answer every request still in flight gets when the server stops (503 JSON).

Usage: `app.add_middleware(Guard, limit=10 * 2**20, hosts=Hosts({"localhost"}), stop=Stop())`; the server calls
`stop.begin(loop)` on its first signal and `stop.now(loop)` on the second.
"""

from __future__ import annotations

import ipaddress
import json

import anyio
from starlette.datastructures import MutableHeaders

from mnistcnn.serve.reading import TooLarge

# The page loads nothing from elsewhere; the browser enforces it (images arrive as data: URLs).
CSP = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
DRAIN = 64 * 1024 * 1024  # a body over the limit is read and dropped up to this, so the client reads the 413
GRACE = 2.0  # s: after the first signal, requests in flight have this long to answer before a 503
SAFE = ("GET", "HEAD", "OPTIONS")


class Hosts:
    """The Host header values the server answers (DNS rebinding: a hostile page's own name resolving to this
    server arrives with that name). An IP literal is always allowed (a browser that sends one loaded the page
    from that address, so it is the page's own origin); names only when listed — localhost always."""

    def __init__(self, names=()) -> None:
        self.names = {"localhost", *(n.lower().rstrip(".") for n in names)}

    def allows(self, host: str) -> bool:
        if not host:
            return True  # HTTP/1.0 without Host: a scripted client, never a browser
        name = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name.lower().rstrip(".") in self.names


class Stop:
    """The server is stopping: requests that have not started answering get a 503 after GRACE (at once on a
    second signal). Set from the signal handler through the loop; read only on the loop."""

    def __init__(self) -> None:
        self.inflight: dict[anyio.CancelScope, list[bool]] = {}  # scope → [response started]
        self.stopping = False

    def begin(self, loop) -> None:
        loop.call_soon_threadsafe(self._begin, loop)

    def now(self, loop) -> None:
        loop.call_soon_threadsafe(self._cancel)

    def _begin(self, loop) -> None:
        self.stopping = True
        loop.call_later(GRACE, self._cancel)

    def _cancel(self) -> None:
        self.stopping = True
        for scope, started in list(self.inflight.items()):
            if not started[0]:
                scope.cancel()


class Guard:
    """Refuses a Host not in `hosts` and a cross-origin POST (403), a body over `limit` bytes (413: by
    Content-Length, or by counting a streamed body; read and dropped up to DRAIN first, so that the client is
    still listening); answers HEAD as GET without the body; adds the security headers (a
    Content-Security-Policy on the page); answers 503 for what is in flight when the server stops."""

    def __init__(self, app, limit: int, hosts: Hosts | None = None, stop: Stop | None = None) -> None:
        self.app, self.limit, self.hosts, self.stop = app, limit, hosts or Hosts(), stop

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.hosts.allows(host):
            return await answer(
                send, 403, f"this server does not answer for the host {host!r}; open it by its address"
            )
        if scope["method"] not in SAFE and not same_origin(headers, scope["scheme"], host):
            return await answer(
                send, 403, "cross-origin requests are refused; use the page this server serves"
            )
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            if length.isdigit() and int(length) <= DRAIN:
                await drain(receive)
            return await answer(send, 413, self._message(), close=True)
        scope, send = self._headed(scope, send)
        if self.stop is None:
            return await self.app(scope, self._counted(receive), send)
        if self.stop.stopping:
            return await answer(send, 503, "the server is stopping; try again when it is back", close=True)
        started = [False]

        async def marked(message) -> None:
            started[0] = started[0] or message["type"] == "http.response.start"
            await send(message)

        with anyio.CancelScope() as cancel:
            self.stop.inflight[cancel] = started
            try:
                await self.app(scope, self._counted(receive), marked)
            finally:
                del self.stop.inflight[cancel]
        if cancel.cancelled_caught and not started[0]:
            await answer(
                send, 503, "the server stopped before answering; try again when it is back", close=True
            )

    def _counted(self, receive):
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                if message.get("more_body") and seen <= DRAIN:
                    await drain(receive, DRAIN - seen)
                raise TooLarge(self._message())
            return message

        return counted

    def _headed(self, scope, send):
        page = not scope["path"].startswith(("/docs", "/openapi.json"))  # Swagger UI loads from a CDN
        head = scope["method"] == "HEAD"  # answered as GET without the body, wherever GET is (HTTP's rule)
        if head:
            scope = {**scope, "method": "GET"}

        async def headed(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                if page:
                    headers["Content-Security-Policy"] = CSP
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        return scope, headed

    def _message(self) -> str:
        return f"the request body is over {self.limit // 1024 // 1024} MiB; send a smaller image (crop it to the digit)"


def same_origin(headers: dict, scheme: str, host: str) -> bool:
    """A request a page of this server sent, or a scripted client (no Origin, no Sec-Fetch-Site): browsers send
    Origin with every POST, and `Origin: null` (a sandboxed frame, a file:// page) is not this page."""
    origin = headers.get(b"origin")
    if origin is not None:
        return origin.decode("latin-1").lower() == f"{scheme}://{host}".lower()
    return headers.get(b"sec-fetch-site", b"same-origin") in (b"same-origin", b"none")


async def drain(receive, most: int = DRAIN) -> None:
    """Read and drop the rest of a request body (at most `most` bytes; the server's body timeout bounds the time)."""
    while most > 0:
        message = await receive()
        most -= len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def answer(send, status: int, error: str, close: bool = False) -> None:
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(b"x-content-type-options", b"nosniff")] + ([(b"connection", b"close")] if close else [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
