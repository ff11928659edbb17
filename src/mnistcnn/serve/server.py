"""Run the app under uvicorn on a socket bound here (so a taken port is a one-line error), until SIGINT/SIGTERM.

Usage: `serve(Path("runs"), "127.0.0.1", 8000, "auto", None, print)`; `bind("127.0.0.1", 0)` for a free port.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
from pathlib import Path

from mnistcnn.errors import MnistcnnError

# Per request: one image gains nothing from intra-op threads (torch's or OpenCV's); requests run side by side
# on FastAPI's thread pool instead, and nested pools would only fight over the cores.
THREADS = 1


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise MnistcnnError(f"--port must be between 0 and 65535; got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise MnistcnnError(f"--host {host} is not an address of this machine ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise MnistcnnError(
            f"cannot listen on {host}:{port} ({e.strerror}); is another server running? pass --port N"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(
    target: Path | None, host: str, port: int, device: str, data_dir: Path | None, echo=print, warn=None
) -> None:
    """Serve until Ctrl-C or SIGTERM (uvicorn finishes open requests, then this returns). `echo` prints the URL,
    `warn` a warning (default: to stderr)."""
    import cv2
    import torch
    import uvicorn

    from mnistcnn.serve.app import create_app

    torch.set_num_threads(THREADS)
    cv2.setNumThreads(THREADS)
    app = create_app(target, device, data_dir)
    sock = bind(host, port)
    app.state.warm_up()
    if not is_loopback(host):
        (warn or _to_stderr)(
            f"warning: --host {host} makes the page reachable from other machines; it has no login"
        )
    echo(f"serving mnistcnn at {url_of(sock)} (Ctrl-C stops)")
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    # uvicorn shuts down on SIGINT/SIGTERM, restores the handlers it found and raises the signal again; these
    # no-op handlers make that a clean return (exit 0) instead of a KeyboardInterrupt or a death by SIGTERM
    previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
