"""Engine: chat over a loaded package, reusing the KV cache across turns.

A turn renders the whole conversation with the chat template, tokenizes it, keeps the longest prefix
already in the KV cache (rewinding `past` past any divergence), prefills only the new tokens and
decodes greedily on the GPU until an end-of-sequence token or the token limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from webllm.engine.template import ChatTemplate
from webllm.engine.tokenizer import StreamDecoder, Tokenizer
from webllm.errors import WebLLMError
from webllm.runtime import Model


@dataclass
class GenerationStats:
    prompt_tokens: int = 0  # tokens of the rendered prompt
    cached_tokens: int = 0  # of which were already in the KV cache
    completion_tokens: int = 0
    prefill_seconds: float = 0.0  # prompt processing, up to the first new token
    decode_seconds: float = 0.0  # the remaining tokens
    finish_reason: str = "length"  # "stop" (end-of-sequence token) or "length"

    @property
    def prefill_tokens_per_second(self) -> float:
        n = self.prompt_tokens - self.cached_tokens
        return n / self.prefill_seconds if self.prefill_seconds > 0 else 0.0

    @property
    def decode_tokens_per_second(self) -> float:
        n = self.completion_tokens - 1
        return n / self.decode_seconds if self.decode_seconds > 0 and n > 0 else 0.0

    def summary(self) -> str:
        return (f"prefill {self.prompt_tokens - self.cached_tokens} tok ({self.cached_tokens} cached) "
                f"{self.prefill_tokens_per_second:.1f} tok/s, decode {self.completion_tokens} tok "
                f"{self.decode_tokens_per_second:.1f} tok/s")


class Engine:
    """A model package ready to chat: Model + tokenizer + chat template + generation defaults."""

    def __init__(self, model: Model):
        self.model = model
        m = model.manifest
        self.tokenizer = Tokenizer(model.folder / m["tokenizer"]["file"], m["tokenizer"])
        self.template = ChatTemplate(m.get("chat_template"), self.tokenizer.bos_token, self.tokenizer.eos_token)
        self.stop_ids = set(self.tokenizer.eos_token_ids)
        self._cached: list[int] = []  # the tokens whose K/V sit in the cache, in order
        self.last_stats = GenerationStats()

    @classmethod
    def load(cls, package: str | Path, **load_options) -> Engine:
        return cls(Model.load(package, **load_options))

    def reset(self) -> None:
        self._cached = []
        self.model.reset()

    def chat(self, messages: list[dict], max_tokens: int = 512, **sampling) -> Iterator[str]:
        """Stream the assistant's reply to `messages` as text pieces; stats land in `last_stats`.
        `sampling`: temperature (default 0: greedy), top_p (default 1), seed (default random).

        A conversation longer than the context window keeps its system message and drops its oldest
        turns until the prompt leaves room for `max_tokens` (or at least a quarter of the window)."""
        room = min(max_tokens, self.model.capacity // 4)
        msgs = list(messages)
        while True:
            prompt = self.template.render(msgs, add_generation_prompt=True)
            ids = self.tokenizer.encode(prompt)
            first = 1 if msgs and msgs[0].get("role") == "system" else 0
            if len(ids) + room <= self.model.capacity or len(msgs) - first <= 1:
                break
            del msgs[first]
        if not ids:
            raise WebLLMError("the prompt is empty")
        return self.generate_ids(ids, max_tokens, **sampling)

    def complete(self, prompt: str, max_tokens: int = 512, add_special_tokens: bool = False,
                 **sampling) -> Iterator[str]:
        """Stream the continuation of raw prompt text."""
        ids = self.tokenizer.encode(prompt, add_special_tokens=add_special_tokens)
        if not ids:
            raise WebLLMError("the prompt is empty")
        return self.generate_ids(ids, max_tokens, **sampling)

    def generate_ids(self, ids: list[int], max_tokens: int = 512, temperature: float = 0.0, top_p: float = 1.0,
                     seed: int | None = None) -> Iterator[str]:
        model = self.model
        model.set_sampling(temperature, top_p, seed)
        if len(ids) >= model.capacity:
            raise WebLLMError(f"the prompt has {len(ids)} tokens; this package's context window is {model.capacity}")
        keep = 0
        for a, b in zip(self._cached, ids, strict=False):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(ids) - 1)  # at least one token must be prefilled to get logits
        model.past = keep
        stats = GenerationStats(prompt_tokens=len(ids), cached_tokens=keep)
        self.last_stats = stats
        out: list[int] = []
        stream = StreamDecoder(self.tokenizer)
        t0 = time.perf_counter()
        t_first = t0
        try:
            for tok in model.generate(ids[keep:], max_tokens, self.stop_ids):
                if not out:
                    t_first = time.perf_counter()
                    stats.prefill_seconds = t_first - t0
                out.append(tok)
                stats.completion_tokens = len(out)
                stats.decode_seconds = time.perf_counter() - t_first
                if tok in self.stop_ids:
                    stats.finish_reason = "stop"
                    break
                piece = stream.push(tok)
                if piece:
                    yield piece
        finally:
            self._cached = (ids + out)[: model.past]
