"""The routes of the page's Generate, Map, Mistakes and Epochs views (serve part two), over `generating` and
`testviews`. Usage: `add_views(app, source, models, readers)` inside `create_app`.
"""

from __future__ import annotations

import anyio
from fastapi import Body, FastAPI, Query, Request, Response

from mnistcnn.errors import MnistcnnError
from mnistcnn.serve import generating, testviews

Run = Query(None, description="A run's name from GET /api/runs (default: the served checkpoint).")
Digit = Query(None, ge=0, le=9, description="A digit 0-9.")
Ends = Body(..., description='{"a": SRC, "b": SRC, "steps": 10, "seed": 0}')


class Context:
    """What the routes share: the served folder, the loaded checkpoints, the readers' limiter."""

    def __init__(self, source, models, readers, image_bytes, in_daemon_thread) -> None:
        self.source, self.models, self.readers = source, models, readers
        self.image_bytes, self.in_daemon_thread = image_bytes, in_daemon_thread

    def loaded(self, run):
        return self.models.get(*self.source.checkpoint(run))

    def test(self):
        return self.models.split(train=False)

    async def off_loop(self, work):  # CPU-bound: off the event loop, as /api/predict
        return await anyio.to_thread.run_sync(work, limiter=self.readers, abandon_on_cancel=True)


def add_views(app: FastAPI, source, models, readers, image_bytes, in_daemon_thread) -> None:
    ctx = Context(source, models, readers, image_bytes, in_daemon_thread)
    _samples(app, ctx)
    _latent(app, ctx)
    _testset(app, ctx)


def _samples(app: FastAPI, ctx: Context) -> None:
    loaded, off_loop, test, image_bytes = ctx.loaded, ctx.off_loop, ctx.test, ctx.image_bytes

    @app.get("/api/generate")
    async def generate(
        run: str | None = Run,
        digit: int | None = Digit,
        n: int = Query(10, description="How many digits (1-100)."),
        seed: int = Query(0, description="Same seed, same digits."),
    ) -> dict:
        """New digits from a vae, cvae or gan run (a cvae or gan writes `digit`, or 0-9 in turn)."""
        return await off_loop(lambda: generating.generate(loaded(run), digit, n, seed))

    @app.post("/api/style")
    async def style(request: Request, run: str | None = Run) -> dict:
        """An image (as /api/predict) written as every digit 0-9 in its style by a cvae: ten PNGs in order."""
        data, name = await image_bytes(request)

        def work():
            from mnistcnn.images import decode_picture, extract

            digit = extract(decode_picture(data, name), False, name).digits[0]
            return generating.style(loaded(run), digit)

        return await off_loop(work)

    @app.post("/api/interpolate")
    async def interpolate(body: dict = Ends, run: str | None = Run) -> dict:
        """The decoded path between two ends: {"a": SRC, "b": SRC, "steps": 10}; SRC {"index": i} (a test image),
        {"png": data URL} or, for a gan, {"digit": d}."""
        steps, seed = body.get("steps", 10), body.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise MnistcnnError(f"seed must be an integer; got {seed!r}")
        return await off_loop(
            lambda: generating.interpolate(loaded(run), body.get("a"), body.get("b"), steps, seed, test)
        )


def _latent(app: FastAPI, ctx: Context) -> None:
    loaded, off_loop, test, source = ctx.loaded, ctx.off_loop, ctx.test, ctx.source

    @app.get("/api/latent")
    async def latent(run: str | None = Run) -> dict:
        """The latent plane the map shows, with 2,000 test codes placed on it (none for a gan)."""
        return await off_loop(lambda: generating.plane_view(loaded(run), test))

    @app.get("/api/latent/decode")
    async def latent_decode(
        u: float = Query(..., description="Across, in spreads of the test codes."),
        v: float = Query(..., description="Up, in spreads of the test codes."),
        digit: int = Query(0, description="The digit (a cvae or gan)."),
        run: str | None = Run,
    ) -> dict:
        """One point of the latent plane decoded: a few ms, for dragging."""
        return await off_loop(lambda: generating.decode_at(loaded(run), u, v, digit, test))

    @app.get("/api/arithmetic")
    async def arithmetic(
        a: int = Query(..., description="A test image's index."),
        b: int = Query(..., description="A test image's index."),
        c: int = Query(..., description="A test image's index."),
        run: str | None = Run,
    ) -> dict:
        """decode(z_a − z_b + z_c) of three test images (ae, vae, cvae)."""
        return await off_loop(lambda: generating.arithmetic(loaded(run), (a, b, c), test))

    @app.get("/api/runs/{name}/progress")
    async def progress(name: str) -> dict:
        """A GAN run's fixed-noise samples after each epoch."""
        return await off_loop(lambda: generating.progress(source.run(name)))


def _testset(app: FastAPI, ctx: Context) -> None:
    loaded, off_loop, source, models = ctx.loaded, ctx.off_loop, ctx.source, ctx.models
    in_daemon_thread = ctx.in_daemon_thread

    @app.get("/api/runs/{name}/epochs")
    def epochs(name: str) -> dict:
        """The epochs kept as snapshots (train --keep-epochs)."""
        from mnistcnn.rundir import snapshots
        from mnistcnn.serve.runs import model_of

        path = source.run(name)
        return {"model": model_of(path), "epochs": [e for e, _ in snapshots(path)]}

    @app.get("/api/test")
    async def test_images(
        digit: int | None = Digit,
        n: int = Query(10, description="How many (1-100)."),
        seed: int = Query(0, description="Which ones."),
    ) -> dict:
        """Test images (of one digit) for the pickers."""
        return await off_loop(lambda: testviews.pick(models, digit, n, seed))

    @app.get("/api/test/{index}")
    async def test_image(
        index: int,
        features: bool = Query(False, description="Add its feature maps."),
        neighbours: int = Query(0, description="Add its K nearest training images (0-32)."),
        run: str | None = Run,
    ) -> dict:
        """A test image with MyNet's reading (the Model tab's pass), feature maps, nearest training images."""
        return await off_loop(lambda: testviews.detail(loaded(run), index, features, neighbours))

    @app.get("/api/map", response_class=Response, responses={200: {"content": {"application/json": {}}}})
    async def test_map(run: str | None = Run) -> Response:
        """Every test image's MyNet features on their first two principal axes, with label and prediction:
        {"method": "pca", "explained", "n", "x", "y", "label", "pred", "accuracy"}."""
        body = await in_daemon_thread(lambda: testviews.map_json(loaded(run)))
        return Response(body, media_type="application/json")

    @app.get("/api/mistakes")
    async def mistakes(
        true: int = Query(..., description="The true digit (a confusion-matrix row)."),
        pred: int = Query(..., description="The predicted digit (a column)."),
        run: str | None = Run,
    ) -> dict:
        """The test images of one confusion-matrix cell, most confident first (at most 100)."""
        return await in_daemon_thread(lambda: testviews.mistakes(loaded(run), true, pred))
