"""Perplexity of a text under a package: exp(mean negative log-likelihood of each next token)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from webllm.errors import WebLLMError
from webllm.runtime import Model


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (the sum over a large vocabulary needs it)."""
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def perplexity(model: Model, ids: list[int], progress: Callable[[int, int], None] | None = None) -> float:
    """Perplexity of token ids (the first token is context only). The whole text must fit the
    package's context window; the KV cache is reset first."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size < 2:
        raise WebLLMError("perplexity needs at least two tokens")
    if ids.size > model.capacity:
        raise WebLLMError(f"the text has {ids.size} tokens; this package's context window is {model.capacity}")
    model.reset()
    nll = 0.0
    for s in range(0, ids.size, model.chunk):
        part = ids[s : s + model.chunk]
        logp = log_softmax(model.score(part))
        targets = ids[s + 1 : s + 1 + part.size]  # the last chunk has one target fewer
        nll -= float(logp[np.arange(targets.size), targets].sum())
        if progress:
            progress(s + part.size, ids.size)
    return float(np.exp(nll / (ids.size - 1)))
