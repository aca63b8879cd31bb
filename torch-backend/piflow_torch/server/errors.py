"""Protocol errors: one exception type, rendered as backend/PROTOCOL.md's JSON shape with a stable code."""

from __future__ import annotations

from fastapi.responses import JSONResponse


class ProtocolError(Exception):
    """An error the client receives as `{"error": {"code", "message"[, "fields"]}, "requestId"}`."""

    def __init__(self, status: int, code: str, message: str, *, fields: list[dict] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers or {}

    def body(self, request_id: str) -> dict:
        error = {'code': self.code, 'message': self.message}
        if self.fields:
            error['fields'] = self.fields
        return {'error': error, 'requestId': request_id}

    def response(self, request_id: str) -> JSONResponse:
        return JSONResponse(self.body(request_id), status_code=self.status,
                            headers={**self.headers, 'X-Request-Id': request_id})


def unauthorized() -> ProtocolError:
    return ProtocolError(401, 'unauthorized', 'missing or wrong X-Piflow-Backend-Secret')


def model_not_found(model_id: str) -> ProtocolError:
    return ProtocolError(404, 'model_not_found', f'no model {model_id!r} on this backend')


def payload_too_large(limit: int) -> ProtocolError:
    return ProtocolError(413, 'payload_too_large', f'request body over {limit} bytes')
