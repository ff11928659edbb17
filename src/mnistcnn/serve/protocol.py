"""uvicorn's HTTP/1.1 protocol (h11) with read timeouts and JSON for the errors it answers itself.

Usage: `uvicorn.Config(app, http=TimedH11)`. uvicorn has no timeout while a request arrives (its keep-alive timer
stops at the first byte), so a client trickling its headers or body (slowloris) could hold a connection for ever:
- the headers must arrive whole within HEADERS seconds (from the connection, or from the last answer);
- the body within BODY seconds plus one second per RATE bytes that arrived (Apache's mod_reqtimeout rule: a
  10 MiB photo over a 1 Mbit/s phone link is fine, a byte a second is cut off);
a late client gets a 408 JSON and the connection is closed. A request h11 cannot parse is a 400 JSON.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADERS = 5.0  # s
BODY = 5.0  # s, plus 1 s per RATE bytes received
RATE = 32 * 1024  # bytes/s
TICK = 0.5  # s between checks of a body being received


def raw_json(status: int, reason: str, error: str) -> bytes:
    body = json.dumps({"error": error}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class TimedH11(H11Protocol):
    headers_timeout, body_timeout, rate = HEADERS, BODY, RATE  # tests shorten them on a subclass

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._seen, self._timer = None, None
        self._wait_for_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self.cycle
        if cycle is not None and cycle is not self._seen:  # a request's headers arrived whole
            self._seen, self._got, self._since = cycle, 0, self.loop.time()
            self._cancel()
            if cycle.more_body:
                self._timer = self.loop.call_later(TICK, self._check_body)
        elif cycle is not None:
            self._got += len(data)
        self._partial = self._partial or cycle is None or cycle is self._seen and cycle.response_complete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._wait_for_headers()  # the next request on this connection

    def connection_lost(self, exc) -> None:
        self._cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self.transport.write(
            raw_json(400, "Bad Request", f"{msg.rstrip('.')}: not an HTTP/1.1 request this server reads")
        )
        self.transport.close()

    def _wait_for_headers(self) -> None:
        self._cancel()
        self._partial = False  # no byte of the next request yet: an idle connection is closed without a word
        armed = self.cycle
        self._timer = self.loop.call_later(self.headers_timeout, self._headers_late, armed)

    def _headers_late(self, armed) -> None:
        if self.cycle is armed and not self.transport.is_closing():
            if not self._partial:
                self.transport.close()
                return
            self._cut(f"the request's headers did not arrive within {self.headers_timeout:g} s")

    def _check_body(self) -> None:
        cycle = self.cycle
        if cycle is not self._seen or not cycle.more_body or self.transport.is_closing():
            return
        allowed = self.body_timeout + self._got / self.rate
        if self.loop.time() - self._since > allowed:
            if cycle.response_started:
                self.transport.close()
            else:
                self._cut(f"the request body arrived slower than {self.rate >> 10} KiB/s")
            return
        self._timer = self.loop.call_later(TICK, self._check_body)

    def _cut(self, why: str) -> None:
        self.logger.warning("%s:%s cut off: %s", *(self.client or ("?", "?")), why)
        self.transport.write(raw_json(408, "Request Timeout", f"{why}; send the request whole"))
        self.transport.close()

    def _cancel(self) -> None:
        if getattr(self, "_timer", None) is not None:
            self._timer.cancel()
            self._timer = None
