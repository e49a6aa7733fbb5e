"""User-facing errors: each carries one actionable line; the CLI prints it without a traceback."""

from __future__ import annotations


class WebLLMError(Exception):
    """Base of every expected user error (bad input, unsupported model, adapter too small)."""


class InputError(WebLLMError):
    """A missing, malformed or corrupt input file (checkpoint, GGUF, package)."""


class UnsupportedModelError(WebLLMError):
    """A model architecture or config field this compiler does not handle."""


class PackageError(WebLLMError):
    """A model package that is incomplete, corrupt or of an unknown format version."""


class AdapterError(WebLLMError):
    """The WebGPU adapter cannot run this package (missing feature, limit too small)."""


# ---- request errors: what a caller of the engine (in-process or over HTTP) asked for wrongly ----------
# The server maps each class to an HTTP status (webllm/server/errors.py) without reading messages.

class RequestError(WebLLMError):
    """A request the engine refuses. `param` names the offending request field, when there is one."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class InvalidParameterError(RequestError):
    """A parameter whose value is out of range or inconsistent (temperature -1, top_p 0, 5 stop strings)."""


class ParameterTypeError(InvalidParameterError):
    """A parameter of the wrong JSON type, or a required one missing (messages absent, max_tokens "ten")."""


class UnsupportedParameterError(RequestError):
    """A parameter this engine does not implement (tools, audio): refused, never silently ignored."""


class ContextWindowExceededError(RequestError):
    """The prompt does not fit the package's context window (and truncation was not asked for)."""


class ModelNotFoundError(RequestError):
    """The request names a model this engine or server does not serve."""


class EngineBusyError(RequestError):
    """The server's queue of waiting requests is full; retry later."""
