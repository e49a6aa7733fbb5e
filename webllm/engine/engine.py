"""Engine: one loaded model package behind one interface, shared by the in-process OpenAI-style API
(`engine.chat.completions.create`), the terminal chat and the server.

A generation renders and tokenizes the prompt, keeps the longest prefix already in the KV cache
(the runtime truncates past any divergence), prefills only the new tokens and lets the GPU sample
(webllm/engine/sampling.py; the rule in docs/FORMAT.md). Text comes out incrementally decoded, with
stop strings cut across token boundaries. One lock serializes the GPU; a cancel event stops a
generation between two tokens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from webllm.engine.sampling import OPENAI_DEFAULTS, SamplingParams
from webllm.engine.stop import StopMatcher
from webllm.engine.template import ChatTemplate
from webllm.engine.tokenizer import IncrementalDecoder, Tokenizer
from webllm.errors import ContextWindowExceededError, InvalidParameterError, UnsupportedParameterError, WebLLMError
from webllm.runtime import Model


@dataclass
class GenerationStats:
    prompt_tokens: int = 0  # tokens of the rendered prompt
    cached_tokens: int = 0  # of which were already in the KV cache
    completion_tokens: int = 0
    prefill_seconds: float = 0.0  # prompt processing, up to the first new token
    decode_seconds: float = 0.0  # the remaining tokens
    finish_reason: str = "length"  # "stop" (end-of-sequence token or stop string) or "length"
    cancelled: bool = False

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


@dataclass
class TokenLogprob:
    """log-softmax of the raw logits (before penalties, bias, temperature or mask) at one step."""

    logprob: float  # of the sampled token
    top: list[tuple[int, float]] = field(default_factory=list)  # the likeliest (id, logprob), best first


@dataclass
class TokenEvent:
    token: int
    text: str  # text this token releases ("" while a stop string or a character is incomplete)
    logprob: TokenLogprob | None = None


class Generation:
    """An iterator of TokenEvents; `stats` is complete once it is exhausted (or closed)."""

    def __init__(self, events: Iterator[TokenEvent], stats: GenerationStats):
        self._events = events
        self.stats = stats

    def __iter__(self):
        return self._events

    def __next__(self) -> TokenEvent:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def text(self) -> str:
        return "".join(e.text for e in self)


class Engine:
    """A model package ready to generate: Model + tokenizer + chat template + generation defaults.

    `Engine()` loads the embedded default model; `Engine("folder-or-checkpoint")` any other (a
    checkpoint is compiled once into the cache). `engine.chat.completions.create(...)` and
    `engine.completions.create(...)` answer as the OpenAI API does (webllm/engine/api.py)."""

    def __init__(self, model: Model | str | Path | None = None, *, name: str | None = None,
                 quantization: str | None = None, progress: bool = False, **load_options):
        from webllm.engine.api import Chat, Completions, Models
        from webllm.models_cache import DEFAULT_QUANTIZATION, model_name, resolve_model

        if not isinstance(model, Model):
            package = resolve_model(None if model is None else str(model), quantization or DEFAULT_QUANTIZATION,
                                    progress=progress)
            model = Model.load(package, progress=progress, **load_options)
        self.model = model
        self.name = name or model_name(model.folder, model.manifest)
        m = model.manifest
        self.tokenizer = Tokenizer(model.folder / m["tokenizer"]["file"], m["tokenizer"])
        self.template = ChatTemplate(m.get("chat_template"), self.tokenizer.bos_token, self.tokenizer.eos_token)
        self.stop_ids = set(self.tokenizer.eos_token_ids)
        self.vocab_size = int(model.config["vocab_size"])
        self.generation_defaults = {k: v for k, v in (m.get("generation") or {}).items() if v is not None}
        self.lock = threading.Lock()  # one generation at a time on this model's GPU state
        self._cached: list[int] = []  # the tokens whose K/V sit in the cache, in order
        self._grammars = None
        self.last_stats = GenerationStats()
        self.chat = Chat(self)
        self.completions = Completions(self)
        self.models = Models(self)

    @classmethod
    def load(cls, package: str | Path, **load_options) -> Engine:
        """An engine over a package folder (or a checkpoint: compiled once into the cache)."""
        return cls(package, **load_options)

    @property
    def capacity(self) -> int:
        return self.model.capacity

    def reset(self) -> None:
        with self.lock:
            self._cached = []
            self.model.reset()

    # ---- building blocks (the API modules and the CLI use these) -------------------------------------
    def sampling(self, fallback: dict | None = None, **given) -> SamplingParams:
        """SamplingParams from the caller's values (None: not given), else the package's generation
        defaults, else `fallback` (OpenAI's defaults unless said otherwise)."""
        base = dict(OPENAI_DEFAULTS if fallback is None else fallback)
        for k in ("temperature", "top_p", "top_k", "repetition_penalty", "min_p"):
            if k in self.generation_defaults:
                base[k] = self.generation_defaults[k]
        values = {**base, **{k: v for k, v in given.items() if v is not None}}
        if values.get("top_k") == -1:
            values["top_k"] = 0
        return SamplingParams(**values).check(self.vocab_size)

    def chat_prompt(self, messages: list[dict], max_tokens: int | None = None, truncate: bool = False) -> list[int]:
        """Token ids of the rendered conversation, ending with the assistant's turn. A prompt that does
        not fit the context window is an error, unless `truncate`: then the oldest turns (not the system
        message) are dropped until the prompt leaves room for `max_tokens` (or a quarter of the window)."""
        room = min(max_tokens or self.capacity, self.capacity // 4) if truncate else 1
        msgs = list(messages)
        while True:
            ids = self.tokenizer.encode(self.template.render(msgs, add_generation_prompt=True))
            first = 1 if msgs and msgs[0].get("role") == "system" else 0
            if len(ids) + room <= self.capacity or not truncate or len(msgs) - first <= 1:
                break
            del msgs[first]
        self._check_fits(ids, "messages")
        return ids

    def text_prompt(self, prompt: str | list[int], add_special_tokens: bool = False) -> list[int]:
        if isinstance(prompt, str):
            ids = self.tokenizer.encode(prompt, add_special_tokens=add_special_tokens)
        else:
            ids = [int(t) for t in prompt]
            if any(not 0 <= t < self.vocab_size for t in ids):
                raise InvalidParameterError(f"'prompt': token ids must lie in [0, {self.vocab_size})", param="prompt")
        self._check_fits(ids, "prompt")
        return ids

    def _check_fits(self, ids: list[int], param: str) -> None:
        if not ids:
            raise InvalidParameterError(f"'{param}': the prompt is empty", param=param)
        if len(ids) >= self.capacity:
            raise ContextWindowExceededError(
                f"the prompt has {len(ids)} tokens; this model's context window is {self.capacity} tokens "
                "(shorten the prompt, or ask for truncation: \"truncation\": \"auto\")", param=param)

    def grammar(self, response_format: dict | None):
        """A fresh Grammar for {"type": "json_object"} / {"type": "json_schema", "schema": ...}, or None."""
        if not response_format or response_format.get("type") == "text":
            return None
        if self._grammars is None:
            from webllm.engine.grammar import GrammarCompiler

            self._grammars = GrammarCompiler(self.tokenizer, self.vocab_size)
        return self._grammars.compile(response_format)

    # ---- generation ----------------------------------------------------------------------------------
    def generate(self, ids: list[int], max_tokens: int | None, sampling: SamplingParams,
                 stop: list[str] | tuple[str, ...] = (), grammar=None, cancel: threading.Event | None = None) -> Generation:
        """Generate after the prompt `ids` (at most `max_tokens`, None: until the window is full).
        The lock is taken when the first event is asked for, and given back when the generation ends
        or is closed; `cancel` set ends it before the next token."""
        stats = GenerationStats(prompt_tokens=len(ids))
        return Generation(self._generate(list(ids), max_tokens, sampling, list(stop), grammar, cancel, stats), stats)

    def _generate(self, ids, max_tokens, sampling: SamplingParams, stop, grammar, cancel, stats) -> Iterator[TokenEvent]:
        self._check_fits(ids, "prompt")
        limit = self.capacity - len(ids) + 1  # the last token needs no KV slot
        max_tokens = limit if max_tokens is None else min(max_tokens, limit)
        if max_tokens < 1:
            raise InvalidParameterError("'max_tokens' must be at least 1", param="max_tokens")
        with self.lock:
            model = self.model
            mask = self._apply_sampling(sampling, grammar, ids)
            n_top = sampling.top_logprobs
            keep = 0
            for a, b in zip(self._cached, ids, strict=False):
                if a != b:
                    break
                keep += 1
            keep = min(keep, len(ids) - 1)  # at least one token must be prefilled to get logits
            keep = min(keep, model.past)  # the runtime may have been reset behind the engine's back
            model.truncate(keep)
            stats.cached_tokens = keep
            self.last_stats = stats
            out: list[int] = []
            text = IncrementalDecoder(self.tokenizer, ids)
            stops = StopMatcher(stop)
            t0 = time.perf_counter()
            t_first = t0
            try:
                for tok in model.generate(ids[keep:], max_tokens, self.stop_ids, mask=mask):
                    lp = None if n_top is None else self._logprob(model.last_sample, n_top)
                    if not out:
                        t_first = time.perf_counter()
                        stats.prefill_seconds = t_first - t0
                    out.append(tok)
                    stats.completion_tokens = len(out)
                    stats.decode_seconds = time.perf_counter() - t_first
                    if tok in self.stop_ids:
                        stats.finish_reason = "stop"
                        tail = stops.flush()
                        if tail:
                            yield TokenEvent(tok, tail)
                        break
                    piece, hit = stops.push(text.push(tok))
                    if hit:
                        stats.finish_reason = "stop"
                        yield TokenEvent(tok, piece, lp)
                        break
                    yield TokenEvent(tok, piece, lp)
                    if cancel is not None and cancel.is_set():
                        stats.cancelled = True
                        break
                else:
                    tail = stops.flush()
                    if tail:
                        yield TokenEvent(out[-1], tail)
            finally:
                self._cached = (ids + out)[: model.past]

    def _apply_sampling(self, s: SamplingParams, grammar, ids: list[int]):
        """Set the runtime's sampler for one generation (FORMAT.md, "Sampling"): uniform fields by
        name, and the named buffers the flags turn on. Returns the mask callback for a grammar."""
        from webllm.kernels import SAMPLE_FLAGS

        model = self.model
        fields = set(model.sampling)
        if "sample_flags" not in fields:  # a format 1 package: temperature and top-p only
            missing = [n for n, on in (("top_k", s.top_k > 0), ("min_p", s.min_p > 0), ("penalties", s.uses_penalties),
                                       ("logit_bias", bool(s.logit_bias)), ("logprobs", s.top_logprobs is not None),
                                       ("response_format", grammar is not None)) if on]
            if missing:
                raise UnsupportedParameterError(f"'{missing[0]}' needs a package compiled by this webllm",
                                                param=missing[0])
            model.set_sampling(s.temperature, s.top_p, s.seed)
            return None
        flags = 0
        if s.uses_penalties:
            flags |= SAMPLE_FLAGS["penalties"]
            counts = np.zeros(self.vocab_size, np.uint32)
            counts[np.asarray(ids, np.int64)] = 0x80000000  # seen in the prompt; generated counts start at 0
            model.write_buffer("token_counts", counts)
        if s.logit_bias:
            flags |= SAMPLE_FLAGS["bias"]
            bias = np.zeros(self.vocab_size, np.float32)
            for tok, b in s.logit_bias.items():
                bias[tok] = b
            model.write_buffer("logit_bias", bias)
        if grammar is not None:
            flags |= SAMPLE_FLAGS["mask"]
        if s.top_logprobs is not None:
            flags |= SAMPLE_FLAGS["logprobs"]
        model.set_sampling(s.temperature, s.top_p, s.seed, top_k=s.top_k, min_p=s.min_p,
                           repetition_penalty=s.repetition_penalty, frequency_penalty=s.frequency_penalty,
                           presence_penalty=s.presence_penalty, sample_flags=flags, n_logprobs=s.top_logprobs or 0)
        if grammar is None:
            return None

        def mask(token: int | None) -> np.ndarray:
            if token is not None and not grammar.accept(token):
                raise WebLLMError(f"the sampler chose token {token}, which the grammar forbids")
            return grammar.next_mask()

        return mask

    def _logprob(self, words: np.ndarray, n_top: int) -> TokenLogprob:
        """The sampler's output words (FORMAT.md, "Sampling") as a TokenLogprob."""
        from webllm.kernels import MAX_TOP_LOGPROBS

        f = words.view(np.float32)
        top = [(int(words[2 + i]), float(f[2 + MAX_TOP_LOGPROBS + i])) for i in range(n_top)]
        return TokenLogprob(float(f[1]), top)

    # ---- the terminal chat's plain interface -------------------------------------------------------
    def stream_chat(self, messages: list[dict], max_tokens: int | None = 512, sampling: SamplingParams | None = None,
                    truncate: bool = True, **options) -> Iterator[str]:
        """Stream the assistant's reply as text pieces; stats land in `last_stats`."""
        ids = self.chat_prompt(messages, max_tokens, truncate=truncate)
        gen = self.generate(ids, max_tokens, sampling or self.sampling(), **options)
        return (e.text for e in gen if e.text)
