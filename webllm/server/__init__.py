"""`webllm serve`: the engine's OpenAI-style API over HTTP (Starlette on uvicorn)."""

from webllm.server.app import create_app

__all__ = ["create_app"]
