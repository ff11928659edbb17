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
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on a socket that says it is TCP, and without it
    # every answer waits ~40 ms for the client's delayed ACK (Nagle)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
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
    target: Path | None,
    host: str,
    port: int,
    device: str,
    data_dir: Path | None,
    echo=print,
    warn=None,
    allow_train: bool = False,
) -> None:
    """Serve until Ctrl-C or SIGTERM, in whichever phase it comes: while starting (before the URL) it stops at
    once; while serving, uvicorn stops accepting, what is in flight is answered (a 503 JSON after
    guard.GRACE, or at once on a second signal), a run the page started is stopped (it saves last.pt) and
    this returns. `echo` prints the URL, `warn` a warning (default: to stderr). The page may train when
    `host` is loopback, or with `allow_train`. Returns with SIGINT/SIGTERM ignored, so that a late Ctrl-C cannot print a traceback
    while the process exits."""
    pending: list[int] = []
    warn = warn or _to_stderr
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _interrupt)
    try:
        app, sock, stop = _start(target, host, port, device, data_dir, allow_train)
    except KeyboardInterrupt:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        warn("stopped before serving")
        return
    for s in (signal.SIGINT, signal.SIGTERM):  # until uvicorn's own handlers are in place
        signal.signal(s, lambda sig, _: pending.append(sig))
    if not is_loopback(host):
        warn(f"warning: --host {host} makes the page reachable from other machines; it has no login")
        if allow_train:
            warn("warning: --allow-train: anyone who reaches the page can start training on this machine")
    echo(f"serving mnistcnn at {url_of(sock)} (Ctrl-C stops)")
    try:
        make_server(app, stop, pending).run(sockets=[sock])
    finally:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        sock.close()
        app.state.trainer.close(say=warn)


def still_evaluating() -> bool:
    """A first evaluation is still running in its daemon thread (the server stopped under it): the process
    must leave with os._exit, since finalizing the interpreter under torch's running kernels aborts it
    ("terminate called without an active exception", SIGABRT)."""
    import threading

    from mnistcnn.serve.app import EVALUATING

    return any(t.name == EVALUATING and t.is_alive() for t in threading.enumerate())


def _interrupt(sig, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM too: the start is abandoned the way Ctrl-C abandons it


def _start(target, host: str, port: int, device: str, data_dir, allow_train: bool = False):
    """Import, build the app, bind, read one digit (warm-up): every phase before the URL is printed."""
    import cv2
    import torch

    from mnistcnn.serve.app import create_app
    from mnistcnn.serve.guard import Hosts, Stop

    torch.set_num_threads(THREADS)
    cv2.setNumThreads(THREADS)
    stop = Stop()
    train = is_loopback(host) or allow_train
    off = (
        None
        if train
        else (
            f"training from the page is off: --host {host} is reachable by others; restart with --allow-train to allow it"
        )
    )
    app = create_app(
        target, device, data_dir, hosts=Hosts(host_names(host)), stop=stop, train=train, train_off=off
    )
    sock = bind(host, port)
    try:
        app.state.warm_up()
    except BaseException:
        sock.close()
        raise
    return app, sock, stop


def host_names(host: str) -> set[str]:
    """The names this server answers for besides localhost and IP literals: --host itself when it is a name,
    and this machine's names when it listens on every address (0.0.0.0, ::)."""
    names = set() if _is_ip(host) else {host}
    if host in ("0.0.0.0", "::", ""):
        names |= {socket.gethostname(), socket.getfqdn()}
    return names


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def make_server(app, stop, pending=(), http=None):
    """uvicorn's Server with the timed protocol (`protocol.TimedH11`, or `http`), told of each signal first so
    that the guard answers what is in flight: a 503 JSON after guard.GRACE, at once on a second signal (SIGINT
    or SIGTERM). `pending`: signals that came before uvicorn's handlers were in place."""
    import asyncio

    import uvicorn

    from mnistcnn.serve.protocol import TimedH11

    class Server(uvicorn.Server):
        loop = None

        def handle_exit(self, sig, frame) -> None:
            if self.loop is not None and stop is not None:
                (stop.now if self.should_exit else stop.begin)(self.loop)
            if self.should_exit:
                self.force_exit = True
            super().handle_exit(sig, frame)

        async def startup(self, sockets=None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().startup(sockets)
            for sig in pending:
                self.handle_exit(sig, None)

    # lifespan off: the app has no start-up or shutdown hooks, and a forced stop would cancel the lifespan task
    # mid-wait, which uvicorn logs as a traceback
    config = uvicorn.Config(
        app, log_level="warning", timeout_graceful_shutdown=5, http=http or TimedH11, lifespan="off"
    )
    return Server(config)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
