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
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException

from mnistcnn import __version__
from mnistcnn.errors import MnistcnnError
from mnistcnn.outputs import json_safe
from mnistcnn.serve.models import Models
from mnistcnn.serve.reading import TooLarge, UnsupportedImage, read_upload
from mnistcnn.serve.runs import Source, describe, read_after

STATIC = Path(__file__).parent / "static"
MAX_BODY = 10 * 1024 * 1024
# The page loads nothing from elsewhere; the browser enforces it (images arrive as data: URLs).
CSP = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
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


class SafeJSON(JSONResponse):
    """JSON with NaN/inf as null (a model whose huge weights overflow), as `--json` prints: never a 500."""

    def render(self, content) -> bytes:
        return super().render(json_safe(content))


def create_app(target: Path | None, device: str = "cpu", data_dir: Path | None = None) -> FastAPI:
    """The app for a checkpoint file, a run folder or a runs folder (None: ./runs, which may not exist yet)."""
    from mnistcnn.engine import resolve_device

    source = Source.resolve(target)
    models = Models(str(resolve_device(device)), data_dir)  # an absent device is reported before serving
    if source.fixed is not None:  # a file given by name must be a checkpoint: said now, not on every request
        models.get(*source.checkpoint())
    app = FastAPI(
        title="mnistcnn",
        version=__version__,
        description="Draw or photograph a digit and watch MyNet read it; the model's views; runs' metrics.",
        redoc_url=None,
        default_response_class=SafeJSON,
    )
    app.add_middleware(Guard, limit=MAX_BODY)
    _add_error_handlers(app)
    _add_api(app, source, models)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.state.warm_up = lambda: warm_up(source, models)
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


def _add_api(app: FastAPI, source: Source, models: Models) -> None:
    # Images are read by at most one thread per core: more would only take turns at the GIL and the cores, and
    # every request in flight would finish later (2 cores, 8 clients: 134 requests/s, p99 76 ms; with anyio's
    # 40 threads 114 requests/s, p99 104 ms; scripts/bench_serve.py).
    readers = anyio.CapacityLimiter(cores())

    @app.post("/api/predict", openapi_extra=PREDICT_BODY)
    async def predict(
        request: Request,
        multi: bool = Query(False, description="The image holds a number of 1-8 digits (predict --multi)."),
        features: bool = Query(
            False, description="Add conv1's and conv2's feature maps of the (first) digit."
        ),
        run: str | None = Run,
    ) -> JSONResponse:
        """Read the digit (or number) in an image: its bytes with Content-Type image/*, or a multipart field
        `image`. Answers the prediction, the ten probabilities, the text, each digit with its box, and the
        28×28 input the model saw as a PNG data URL."""
        data, name = await _image_bytes(request)
        # CPU-bound: off the event loop, so requests are read and answered while others compute
        answer = await anyio.to_thread.run_sync(
            lambda: read_upload(models.get(*source.checkpoint(run)), data, name, multi, features),
            limiter=readers,
        )
        return SafeJSON(answer)  # plain JSON types already: no jsonable_encoder pass

    @app.get("/api/model")
    def model(run: str | None = Run) -> dict:
        """The checkpoint's layers, shapes, parameters, training config and conv1's kernels."""
        return models.get(*source.checkpoint(run)).info()

    @app.get("/api/model/evaluation")
    def evaluation(run: str | None = Run) -> dict:
        """Test accuracy, confusion matrix and the most confident failures (computed once per checkpoint)."""
        return models.get(*source.checkpoint(run)).evaluation()

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
        return {"default": default, "hint": hint, "runs": rows}

    @app.get("/api/runs/{name}/metrics")
    def metrics(
        name: str, after: int = Query(0, ge=0, description="Byte offset from the last answer.")
    ) -> dict:
        """The run's metrics.jsonl records from byte `after` on, and the `offset` to poll from next."""
        return read_after(source.run(name) / "metrics.jsonl", after)


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


def _add_error_handlers(app: FastAPI) -> None:
    import logging

    log = logging.getLogger("mnistcnn.serve")

    @app.exception_handler(MnistcnnError)
    async def user_error(request: Request, exc: MnistcnnError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=getattr(exc, "status", 400))

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


class Guard:
    """ASGI middleware: refuses bodies over `limit` bytes (by Content-Length, and by counting a streamed body)
    with 413, answers HEAD as GET without the body, and adds the security headers (a Content-Security-Policy on
    the page)."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            too_big = JSONResponse(
                {"error": self._message()}, status_code=413, headers={"Connection": "close"}
            )
            return await too_big(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise TooLarge(self._message())
            return message

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

        await self.app(scope, counted, headed)

    def _message(self) -> str:
        return f"the request body is over {self.limit // 1024 // 1024} MiB; send a smaller image (crop it to the digit)"
