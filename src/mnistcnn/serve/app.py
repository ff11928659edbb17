"""The web app: one static page and a JSON API over the same library functions as the CLI.

Usage: `app = create_app(Path("runs"), device="cpu")`, then `uvicorn.run(app)` (`mnistcnn serve` does this).
Every error is `{"error": "..."}` with a 4xx status (500 only for a bug); the server keeps serving.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from mnistcnn import __version__
from mnistcnn.errors import MnistcnnError, UnreadableImage
from mnistcnn.outputs import json_safe
from mnistcnn.serve.guard import Guard, Hosts, Stop
from mnistcnn.serve.models import Models
from mnistcnn.serve.reading import PixelBudget, UnsupportedImage, read_upload
from mnistcnn.serve.runs import NotFound, Source, describe, read_after
from mnistcnn.serve.train_api import add_training
from mnistcnn.serve.training import Trainer
from mnistcnn.serve.views_api import add_views

STATIC = Path(__file__).parent / "static"
MAX_BODY = 10 * 1024 * 1024
EVALUATING = "mnistcnn evaluation"  # the name of a thread computing a first evaluation (`in_daemon_thread`)
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}}
            },
        },
    }
}
Run = Query(None, description="A run's name from GET /api/runs (default: the served checkpoint).")
Epoch = Query(None, description="Read with the run's snapshot of this epoch (train --keep-epochs).")
OnMap = Query(False, description="Add the digit's place in GET /api/map's projection.")


class SafeJSON(JSONResponse):
    """JSON with NaN/inf as null (a model whose huge weights overflow), as `--json` prints: never a 500."""

    def render(self, content) -> bytes:
        return super().render(json_safe(content))


def create_app(
    target: Path | None,
    device: str = "cpu",
    data_dir: Path | None = None,
    hosts: Hosts | None = None,
    stop: Stop | None = None,
    train: bool = False,
    train_off: str | None = None,
) -> FastAPI:
    """The app for a checkpoint file, a run folder or a runs folder (None: ./runs, which may not exist yet).
    `hosts`: the Host names it answers besides IP literals and localhost; `stop`: set when the server stops;
    `train`: the page may start `mnistcnn train` in the runs folder (`train_off`: why not, when it may not).
    `app.state.trainer.close()` stops what the page started: call it when the server stops."""
    from mnistcnn.engine import resolve_device

    source = Source.resolve(target)
    resolved = str(resolve_device(device))
    models = Models(resolved, data_dir)  # an absent device is reported before serving
    if source.fixed is not None:  # a file given by name must be a checkpoint: said now, not on every request
        models.get(*source.checkpoint())
    app = FastAPI(
        title="mnistcnn",
        version=__version__,
        description="Draw or photograph a digit and watch MyNet read it; the model's views; runs' metrics.",
        redoc_url=None,
        default_response_class=SafeJSON,
    )
    app.add_middleware(Guard, limit=MAX_BODY, hosts=hosts, stop=stop)
    _add_error_handlers(app)
    trainer = Trainer(
        source, resolved, data_dir, allowed=train, why=train_off or "training from the page is off"
    )
    _add_api(app, source, models, trainer)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.state.warm_up = lambda: warm_up(source, models)
    app.state.trainer = trainer
    return app


def warm_up(source: Source, models: Models) -> None:
    """Read one drawn digit with the default checkpoint, as the page does (features too), so that the first
    person's first stroke is answered as fast as the rest: it loads the checkpoint and the image libraries
    (~0.5 s otherwise). Quiet when there is no usable checkpoint yet: the page says why."""
    import io

    import numpy as np
    from PIL import Image

    one = np.zeros((96, 96), np.uint8)
    one[18:78, 44:52] = 255  # a 1, white on black as the pad draws it
    png = io.BytesIO()
    Image.fromarray(one).save(png, format="PNG")
    with contextlib.suppress(MnistcnnError):
        read_upload(models.get(*source.checkpoint()), png.getvalue(), "warm-up.png", features=True)


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _add_api(app: FastAPI, source: Source, models: Models, trainer: Trainer) -> None:
    # Images are read by at most one thread per core: more would only take turns at the GIL and the cores, and
    # every request in flight would finish later (2 cores, 8 clients: 134 requests/s, p99 76 ms; with anyio's
    # 40 threads 114 requests/s, p99 104 ms; scripts/bench_serve.py).
    readers = anyio.CapacityLimiter(cores())
    budget = PixelBudget()

    @app.post("/api/predict", openapi_extra=PREDICT_BODY)
    async def predict(
        request: Request,
        multi: bool = Query(False, description="The image holds a number of 1-8 digits (predict --multi)."),
        features: bool = Query(False, description="Add conv1's and conv2's feature maps of the first digit."),
        run: str | None = Run,
        epoch: int | None = Epoch,
        map: bool = OnMap,
    ) -> JSONResponse:
        """Read the digit (or number) in an image: its bytes with Content-Type image/*, or a multipart field
        `image`. Answers the prediction, the ten probabilities, the text, each digit with its box, and the
        28×28 input the model saw as a PNG data URL."""
        data, name = await _image_bytes(request)
        # CPU-bound: off the event loop, so requests are read and answered while others compute
        answer = await anyio.to_thread.run_sync(
            lambda: read_upload(
                models.get(*snapshot(source, run, epoch)), data, name, multi, features, budget, map
            ),
            limiter=readers,
            abandon_on_cancel=True,  # the server stopping answers 503 at once; the read finishes unseen
        )
        return SafeJSON(answer)  # plain JSON types already: no jsonable_encoder pass

    add_views(app, source, models, readers, _image_bytes, in_daemon_thread)

    @app.get("/api/model")
    def model(run: str | None = Run) -> dict:
        """The checkpoint's layers, shapes, parameters, training config and conv1's kernels."""
        return models.get(*source.checkpoint(run)).info()

    @app.get("/api/model/evaluation")
    async def evaluation(run: str | None = Run) -> dict:
        """Test accuracy, confusion matrix and the most confident failures (computed once per checkpoint)."""
        return await in_daemon_thread(lambda: models.get(*source.checkpoint(run)).evaluation())

    _add_runs(app, source, trainer)
    add_training(app, trainer)


def _add_runs(app: FastAPI, source: Source, trainer: Trainer) -> None:
    @app.get("/api/runs")
    def runs() -> dict:
        """The runs with their config, progress and final accuracy, and the checkpoint served by default."""
        try:
            default = source.checkpoint()[0]
        except MnistcnnError as e:
            default, hint = None, str(e)
        else:
            hint = None
        rows = [describe(name, path) for name, path in source.runs().items()]
        return {"default": default, "hint": hint, "runs": trainer.annotate(rows)}

    @app.get("/api/runs/{name}/metrics")
    def metrics(
        name: str, after: int = Query(0, ge=0, description="Byte offset from the last answer.")
    ) -> dict:
        """The run's metrics.jsonl records from byte `after` on, and the `offset` to poll from next."""
        try:
            run = source.run(name)
        except NotFound:
            if name in trainer.children:  # started from the page, its folder not made yet: nothing logged
                return {"records": [], "offset": 0, "reset": after > 0}
            raise
        return read_after(run / "metrics.jsonl", after)


def snapshot(source: Source, run: str | None, epoch: int | None) -> tuple[str, Path]:
    """(label, file) of a run's per-epoch snapshot (train --keep-epochs); epoch None: its checkpoint."""
    from mnistcnn.rundir import snapshots

    if epoch is None:
        return source.checkpoint(run)
    if not run:
        raise MnistcnnError("epoch needs run=NAME: the snapshots belong to a run")
    kept = dict(snapshots(source.run(run)))
    if epoch not in kept:
        have = ", ".join(map(str, kept)) or "none (train with --keep-epochs)"
        raise NotFound(f"run {run!r} has no snapshot of epoch {epoch}; kept: {have}")
    return f"{run} epoch {epoch}", kept[epoch]


async def _image_bytes(request: Request) -> tuple[bytes, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise MnistcnnError("the multipart form has no file field named 'image'; send the picture there")
        return await upload.read(), upload.filename or "upload"
    if ctype.startswith("image/"):
        return await request.body(), "upload"
    raise UnsupportedImage(
        f"Content-Type {ctype or '(none)'} is not an image; send image/* bytes or a multipart field 'image'"
    )


async def in_daemon_thread(work):
    """`work()` in a thread of its own that the process does not wait for: awaiting it is cancelled at once when
    the server stops (a first evaluation takes seconds), and the process exits without it."""
    import asyncio
    import threading

    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def settle(value, error) -> None:
        if not done.cancelled():
            done.set_exception(error) if error is not None else done.set_result(value)

    def run() -> None:
        value = error = None
        try:
            value = work()
        except BaseException as e:  # handed to the request, which raises it
            error = e
        with contextlib.suppress(RuntimeError):  # the loop closed: the server stopped meanwhile
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=run, name=EVALUATING, daemon=True).start()
    return await done


def _add_error_handlers(app: FastAPI) -> None:
    import logging

    log = logging.getLogger("mnistcnn.serve")

    @app.exception_handler(MnistcnnError)
    async def user_error(request: Request, exc: MnistcnnError) -> JSONResponse:
        if isinstance(exc, UnreadableImage) or isinstance(exc.__cause__, UnreadableImage):
            log.warning("%s %s: %s", request.method, request.url.path, exc)  # a decoder's or our own failure
        field = getattr(exc, "field", None)  # the Train form's value it is about
        body = {"error": str(exc)} | ({"field": field} if field else {})
        return JSONResponse(body, status_code=getattr(exc, "status", 400))

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        log.warning(
            "%s disconnected while sending %s %s; nothing was answered",
            client,
            request.method,
            request.url.path,
        )
        return JSONResponse({"error": "the request body did not arrive whole"}, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no such page or API: {request.url.path}"
        elif exc.status_code == 405 and exc.headers and "Allow" in exc.headers:
            message = f"{request.method} is not allowed on {request.url.path}; use {exc.headers['Allow']}"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return JSONResponse(
            {"error": f"{where or 'request'}: {first.get('msg', 'invalid')}"}, status_code=400
        )

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server's log"}, 500)
