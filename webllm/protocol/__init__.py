"""The OpenAI API's shapes: requests (validated into named errors) and responses (shaped like the
`openai` package's objects). Apart from the engine and from any transport (in-process, HTTP)."""

from webllm.protocol.requests import ChatCompletionRequest, CompletionRequest
from webllm.protocol.responses import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CompletionUsage,
    Model,
    ModelList,
)

__all__ = ["ChatCompletion", "ChatCompletionChunk", "ChatCompletionRequest", "Completion", "CompletionRequest",
           "CompletionUsage", "Model", "ModelList"]
