"""The HTTP face of the PyTorch backend: backend/PROTOCOL.md as a FastAPI (ASGI) app.

Routes: `GET /healthz`, `GET /readyz`, `GET /v1/models[/{id}]`, `POST /v1/models/{id}/generate` (a whole
generation answered with an NDJSON event stream) and `POST /v1/generations/{id}/cancel`. The same app
object runs under uvicorn and as the ingress of the Ray Serve deployment.

`ProtocolMiddleware` (plain ASGI, so streamed responses and disconnects pass through untouched) gives
every response an `X-Request-Id`, checks the shared secret on `/v1/*` in constant time, and refuses
bodies over the limit: from `Content-Length` before reading, or while a chunked body streams in.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import secrets

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .batcher import TERMINAL, Job
from .errors import ProtocolError, payload_too_large, unauthorized
from .requests import normalize, parse_body
from .service import Service

SECRET_HEADER = 'x-piflow-backend-secret'
REQUEST_ID = re.compile(r'^[A-Za-z0-9_.:-]{1,128}$')
NDJSON = 'application/x-ndjson'
# Keeps idle proxies from cutting a stream that waits in the queue; clients skip blank lines.
KEEPALIVE_S = 10.0


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get('headers', []):
        if key == name:
            return value.decode('latin-1')
    return None


class ProtocolMiddleware:
    """Request ids, the shared secret, and the body limit (see the module doc)."""

    def __init__(self, app, *, secret: str, max_body_bytes: int):
        self.app = app
        self.secret = secret.encode()
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            return await self.app(scope, receive, send)
        given = _header(scope, b'x-request-id')
        request_id = given if given and REQUEST_ID.match(given) else f'req_{secrets.token_hex(12)}'
        scope.setdefault('state', {})['request_id'] = request_id

        async def send_with_id(message):
            if message['type'] == 'http.response.start':
                headers = [(k, v) for k, v in message.get('headers', []) if k.lower() != b'x-request-id']
                message = {**message, 'headers': headers + [(b'x-request-id', request_id.encode())]}
            await send(message)

        async def refuse(error: ProtocolError):
            await error.response(request_id)(scope, receive, send_with_id)

        if scope['path'].startswith('/v1/'):
            given_secret = (_header(scope, SECRET_HEADER.encode()) or '').encode('latin-1')
            if not hmac.compare_digest(given_secret, self.secret):
                return await refuse(unauthorized())
        length = _header(scope, b'content-length')
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return await refuse(payload_too_large(self.max_body_bytes))

        received = 0

        async def limited_receive():
            # Raised inside the route's body read, so the app's ProtocolError handler answers 413.
            nonlocal received
            message = await receive()
            if message['type'] == 'http.request':
                received += len(message.get('body', b''))
                if received > self.max_body_bytes:
                    raise payload_too_large(self.max_body_bytes)
            return message

        await self.app(scope, limited_receive, send_with_id)


def model_entry(service: Service, model_id: str) -> dict:
    runtime = service.runtime(model_id)
    m = runtime.manifest
    f = m.vaeScaleFactor
    policy = {'type': 'gm', 'k': m.policy.k} if m.policy.type == 'gm' else {'type': 'dx', 'n': m.policy.n}
    return {
        'id': m.id, 'name': m.name, 'license': m.license, 'family': m.family, 'runtime': 'torch',
        'capabilities': ['generate'], 'policy': policy,
        'latent': {'channels': m.latentChannels, 'height': m.image.defaultHeight // f,
                   'width': m.image.defaultWidth // f},
        'image': m.image.model_dump(), 'text': m.text.model_dump(),
        'guidance': {**m.guidance.model_dump(), 'input': 'guidance' if m.guidance.default is not None else None},
        'defaultNfe': m.sampling.defaultNfe, 'nfeOptions': m.sampling.nfeOptions,
        'sampling': {nfe: per.model_dump() for nfe, per in m.sampling.perNfe.items()},
        'maxCount': m.limits.maxCount, 'maxBatchSize': service.queues[m.id].max_rows,
        'inputs': [], 'outputs': [],
        'dtype': str(runtime.dtype).removeprefix('torch.'), 'executionProvider': service.execution_provider,
    }


def _ndjson(event: dict) -> bytes:
    return (json.dumps(event, separators=(',', ':')) + '\n').encode()


async def _event_stream(service: Service, job: Job, position: int):
    """The NDJSON body of one generation; closing it early (client gone) cancels the generation."""
    try:
        yield _ndjson({'type': 'queued', 'id': job.id, 'model': job.model_id, 'position': position,
                       'count': job.spec.count, 'nfe': job.spec.nfe, 'width': job.spec.width,
                       'height': job.spec.height, 'seed': job.spec.seed})
        while True:
            try:
                event = await asyncio.wait_for(job.events.get(), timeout=KEEPALIVE_S)
            except asyncio.TimeoutError:
                yield b'\n'
                continue
            yield _ndjson(event)
            if event['type'] in TERMINAL:
                return
    finally:
        if not job.finished:
            service.cancel_job(job, 'client disconnected')


def _request_id(request: Request) -> str:
    return request.scope['state']['request_id']


async def _read_body(request: Request) -> bytes:
    content_type = request.headers.get('content-type', '').split(';')[0].strip().lower()
    if content_type != 'application/json':
        raise ProtocolError(415, 'unsupported_media_type',
                            f'Content-Type must be application/json, got {content_type or "none"}')
    return await request.body()


def create_app(service: Service, *, secret: str, max_body_bytes: int = 64 * 1024) -> FastAPI:
    """The ASGI app serving `service`; `secret` is the worker's shared secret."""
    if not secret:
        raise ValueError('a backend secret is required (PIFLOW_BACKEND_SECRET)')
    app = FastAPI(title='piflow PyTorch backend', docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, error: ProtocolError):
        return error.response(_request_id(request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        code = {404: 'not_found', 405: 'method_not_allowed'}.get(error.status_code, 'http_error')
        return ProtocolError(error.status_code, code, str(error.detail)).response(_request_id(request))

    @app.get('/healthz')
    async def healthz():
        return {'status': 'ok'}

    @app.get('/readyz')
    async def readyz():
        body = service.readiness()
        return JSONResponse(body, status_code=200 if body['status'] == 'ready' else 503)

    @app.get('/v1/models')
    async def list_models():
        return {'executionProvider': service.execution_provider,
                'models': [model_entry(service, model_id) for model_id in service.runtimes]}

    @app.get('/v1/models/{model_id}')
    async def get_model(model_id: str):
        return model_entry(service, model_id)

    @app.post('/v1/models/{model_id}/generate')
    async def generate(model_id: str, request: Request):
        runtime = service.runtime(model_id)
        spec = normalize(parse_body(await _read_body(request)), runtime.manifest)
        job, position = service.submit(model_id, _request_id(request), spec, asyncio.get_running_loop())
        return StreamingResponse(_event_stream(service, job, position), media_type=NDJSON,
                                 headers={'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no'})

    @app.post('/v1/generations/{generation_id}/cancel')
    async def cancel(generation_id: str):
        if not await service.cancel_anywhere(generation_id, 'cancel request'):
            raise ProtocolError(404, 'generation_not_found', f'no live generation {generation_id!r}')
        return {'id': generation_id, 'status': 'cancelled'}

    @app.post('/v1/models/{model_id}/{endpoint}')
    async def other_endpoint(model_id: str, endpoint: str):
        service.runtime(model_id)
        raise ProtocolError(404, 'endpoint_not_supported',
                            f'{model_id} serves whole generations (POST /v1/models/{model_id}/generate), '
                            f'not /{endpoint}')

    return ProtocolMiddleware(app, secret=secret, max_body_bytes=max_body_bytes)
