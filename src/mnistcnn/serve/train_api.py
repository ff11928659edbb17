"""The routes of the page's Train view and the Runs tab's Stop and Resume, over `training.Trainer`.
Usage: `add_training(app, trainer)` inside `create_app`.

These change what the machine does, so each takes only `application/json` (415 otherwise): a page elsewhere can
send a form or text/plain to 127.0.0.1 without asking, never JSON; the Guard has refused a foreign Host or
Origin (403) before a route runs.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mnistcnn.errors import MnistcnnError
from mnistcnn.serve.training import Trainer

BODY_CAP = 64 * 1024  # a form's JSON is tens of bytes
JSON_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


class NotJSON(MnistcnnError):
    status = 415


async def json_object(request: Request) -> dict:
    """The request's JSON object; 415 for another Content-Type, 400 for a body that is no JSON object."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise NotJSON(
            f"Content-Type {ctype or '(none)'} is refused here; send the values as application/json"
        )
    body = await request.body()
    if len(body) > BODY_CAP:
        raise MnistcnnError(f"the JSON body is over {BODY_CAP // 1024} KiB; a form's values are a few bytes")
    try:
        value = json.loads(body or b"{}")
    except (ValueError, RecursionError) as e:
        raise MnistcnnError(f"the body is not JSON ({str(e).splitlines()[0][:80]}); send an object") from None
    if not isinstance(value, dict):
        raise MnistcnnError(f"the body must be a JSON object of values; got {type(value).__name__}")
    return value


def add_training(app: FastAPI, trainer: Trainer) -> None:
    @app.get("/api/train")
    def train_form() -> dict:
        """Whether training from the page is allowed here (`why` if not), the shipped recipes with their
        epochs, batch size and why, the run training now, and the last page-started run's output."""
        return trainer.describe()

    @app.post("/api/train", status_code=201, openapi_extra=JSON_BODY)
    async def train(request: Request) -> JSONResponse:
        """Start `mnistcnn train` on this machine: `{"recipe": "fast", "epochs": 1, "batch_size": 64, "lr":
        0.003, "keep_epochs": true}` (a shipped recipe's name; the rest optional). Answers 201 `{"run": NAME}`;
        400 `{"error", "field"}` for a bad value; 403 when training from the page is off; 409 while a run
        started from the page is training."""
        body = await json_object(request)
        return JSONResponse({"run": trainer.start(body)}, status_code=201)

    @app.post("/api/runs/{name}/stop", status_code=202, openapi_extra=JSON_BODY)
    async def stop(name: str, request: Request) -> JSONResponse:
        """SIGINT to a run started from this page: it saves last.pt after the current step (state stopping,
        then stopped in GET /api/runs). Body `{}`."""
        await json_object(request)
        return JSONResponse({"run": name, "state": trainer.stop(name)}, status_code=202)

    @app.post("/api/runs/{name}/resume", openapi_extra=JSON_BODY)
    async def resume(name: str, request: Request) -> dict:
        """Continue a stopped run (`mnistcnn train --resume`): body `{}` or `{"epochs": N}` to raise its
        total. 409 when it cannot continue (finished, training elsewhere, another run training)."""
        return {"run": trainer.resume(name, await json_object(request))}
