"""The HTTP transport: OpenAI's routes over the engines' in-process API.

    POST /v1/chat/completions   (stream: server-sent events, ending with "data: [DONE]")
    POST /v1/completions
    GET  /v1/models, GET /health, and the browser page at / when a web build is given

Every request body is read up to a size limit (413 beyond), parsed (400 if not JSON), routed by its
"model" (404 if unknown), queued on the GPU (503 if the queue is full) and answered by the engine;
engine errors become OpenAI error JSON with the status of their class (webllm/server/errors.py).
A client that goes away cancels its request, queued or running.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from webllm.errors import ModelNotFoundError, ParameterTypeError
from webllm.protocol.responses import ModelList
from webllm.server.errors import HTTPError, to_http
from webllm.server.scheduler import END, Scheduler

MAX_BODY = 1 << 20  # bytes


def error_response(e: BaseException) -> JSONResponse:
    status, body = to_http(e)
    return JSONResponse(body, status_code=status)


def create_app(engines: list, *, api_key: str | None = None, max_body: int = MAX_BODY, max_queue: int = 64,
               web_dir: str | Path | None = None) -> Starlette:
    """A Starlette app serving `engines` (webllm.engine.Engine, by their `name`)."""
    by_name = {e.name: e for e in engines}
    scheduler = Scheduler(max_queue)

    def check_auth(request: Request) -> None:
        if api_key is None:
            return
        got = request.headers.get("authorization", "")
        if not (got.startswith("Bearer ") and hmac.compare_digest(got[7:].encode(), api_key.encode())):
            raise HTTPError(401, "a valid API key is needed: 'Authorization: Bearer <key>'", code="invalid_api_key")

    async def read_json(request: Request) -> dict:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            raise HTTPError(413, f"the request body exceeds {max_body} bytes", code="request_too_large")
        data = bytearray()
        async for part in request.stream():
            data += part
            if len(data) > max_body:
                raise HTTPError(413, f"the request body exceeds {max_body} bytes", code="request_too_large")
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise HTTPError(400, f"the request body is not valid JSON ({e})", code="invalid_json") from None
        if not isinstance(body, dict):
            raise ParameterTypeError("the request body must be a JSON object")
        return body

    def pick(body: dict):
        name = body.get("model")
        if name is None and len(by_name) == 1:
            return next(iter(by_name.values()))
        if not isinstance(name, str):
            raise ParameterTypeError("'model': a string naming the model is required", param="model")
        if name not in by_name:
            raise ModelNotFoundError(f"the model '{name}' does not exist (served: {', '.join(by_name)})", param="model")
        return by_name[name]

    async def generate(request: Request, endpoint: str) -> Response:
        try:
            check_auth(request)
            body = await read_json(request)
            engine = pick(body)
            body = dict(body, model=engine.name)
            api = engine.chat.completions if endpoint == "chat" else engine.completions
            job = scheduler.submit(lambda cancel: api.run(body, cancel))
        except Exception as e:
            return error_response(e)
        try:
            if body.get("stream") is True:
                return await stream(request, job)
            return await whole(request, job)
        except BaseException:
            job.cancel.set()
            raise

    async def whole(request: Request, job) -> Response:
        """Wait for the job, cancelling it if the client goes away meanwhile."""
        getter = asyncio.ensure_future(job.next())
        while True:
            done, _ = await asyncio.wait({getter}, timeout=0.25)
            if done:
                break
            if await request.is_disconnected():
                job.cancel.set()
                getter.cancel()
                return Response(status_code=499)
        result = getter.result()
        if isinstance(result, BaseException):
            return error_response(result)
        return Response(result.model_dump_json(exclude_none=True), media_type="application/json")

    async def stream(request: Request, job) -> Response:
        first = await job.next()  # errors found before the first chunk get their status code
        if isinstance(first, BaseException):
            return error_response(first)

        async def events():
            item = first
            try:
                while item is not END:
                    if isinstance(item, BaseException):
                        yield f"data: {json.dumps(to_http(item)[1])}\n\n"
                        break
                    yield f"data: {item.model_dump_json(exclude_none=True)}\n\n"
                    item = await job.next()
                else:
                    yield "data: [DONE]\n\n"
            finally:  # the client went away (the response task is cancelled) or the stream ended
                job.cancel.set()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def chat_completions(request: Request) -> Response:
        return await generate(request, "chat")

    async def completions(request: Request) -> Response:
        return await generate(request, "text")

    async def models(request: Request) -> Response:
        try:
            check_auth(request)
        except HTTPError as e:
            return error_response(e)
        data = ModelList(data=[m for e in engines for m in e.models.list().data])
        return Response(data.model_dump_json(), media_type="application/json")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "models": list(by_name), "queued": scheduler.pending,
                             "served": scheduler.served, "cancelled": scheduler.cancelled})

    async def not_found(request: Request, exc) -> Response:
        return error_response(HTTPError(404, f"no route {request.method} {request.url.path}", code="not_found"))

    async def method_not_allowed(request: Request, exc) -> Response:
        return error_response(HTTPError(405, f"{request.method} is not allowed on {request.url.path}"))

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    if web_dir is not None:
        # The browser page runs the models itself (WebGPU in the page): it reads models.json, as on a
        # static site written by `webllm export-web`, and fetches the served packages' files.
        from starlette.staticfiles import StaticFiles

        async def models_json(request: Request) -> Response:
            return JSONResponse({"models": [
                {"id": e.name, "name": e.name, "url": f"models/{e.name}/",
                 "bytes": sum(int(s["nbytes"]) for s in e.model.manifest["shards"]),
                 "quantization": e.model.manifest.get("quantization"),
                 "context_window": e.model.manifest.get("context_window")} for e in engines]})

        routes.append(Route("/models.json", models_json, methods=["GET"]))
        routes += [Mount(f"/models/{e.name}", app=StaticFiles(directory=str(e.model.folder))) for e in engines]
        routes.append(Mount("/", app=StaticFiles(directory=str(web_dir), html=True), name="web"))
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        scheduler.close()

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: method_not_allowed}, lifespan=lifespan)
    app.state.scheduler = scheduler
    return app
