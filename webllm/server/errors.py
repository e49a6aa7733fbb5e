"""Error classes to HTTP statuses and OpenAI error JSON, by class (never by message text)."""

from __future__ import annotations

from webllm.errors import (
    ContextWindowExceededError,
    EngineBusyError,
    InvalidParameterError,
    ModelNotFoundError,
    ParameterTypeError,
    RequestError,
    UnsupportedParameterError,
    WebLLMError,
)
from webllm.protocol.responses import error_body

# (class, status, OpenAI error type, code): the first class the error is an instance of wins
STATUS = [
    (ModelNotFoundError, 404, "invalid_request_error", "model_not_found"),
    (ParameterTypeError, 422, "invalid_request_error", "invalid_type"),
    (ContextWindowExceededError, 400, "invalid_request_error", "context_length_exceeded"),
    (UnsupportedParameterError, 400, "invalid_request_error", "unsupported_parameter"),
    (InvalidParameterError, 400, "invalid_request_error", "invalid_value"),
    (EngineBusyError, 503, "server_error", "queue_full"),
    (RequestError, 400, "invalid_request_error", None),
    (WebLLMError, 500, "server_error", None),
]


class HTTPError(Exception):
    """A transport-level refusal (malformed JSON, body too large, missing token)."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.type, self.code = status, type_, code


def to_http(e: BaseException) -> tuple[int, dict]:
    """(status, OpenAI error JSON) of any exception; unexpected ones are 500s without internals."""
    if isinstance(e, HTTPError):
        return e.status, error_body(str(e), e.type, None, e.code)
    for cls, status, type_, code in STATUS:
        if isinstance(e, cls):
            return status, error_body(str(e), type_, getattr(e, "param", None), code)
    return 500, error_body(f"internal error ({type(e).__name__})", "server_error")
