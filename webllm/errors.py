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
