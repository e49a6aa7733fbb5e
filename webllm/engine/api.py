"""The OpenAI-style interface of an Engine: `engine.chat.completions.create(...)`,
`engine.completions.create(...)`, `engine.models.list()`.

Requests are validated by webllm/protocol (named errors), run on the engine (one choice after the
other for n > 1: choice i uses seed + i), and returned as the protocol's response objects; with
`stream=True`, as an iterator of chunks (`close()` it to stop early). The server calls exactly these.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from webllm.engine.engine import TokenEvent
from webllm.protocol import requests as rq
from webllm.protocol import responses as rs

if TYPE_CHECKING:
    from webllm.engine.engine import Engine, GenerationStats


class Stream:
    """Chunks of a streamed response, like the openai package's `Stream`: iterate, or close early."""

    def __init__(self, chunks: Iterator):
        self._chunks = chunks

    def __iter__(self):
        return self._chunks

    def __next__(self):
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Job:
    """What both endpoints share: the prompt, the sampling parameters and the choices' generations."""

    def __init__(self, engine: Engine, req: rq._Sampling, ids: list[int], grammar_format: dict | None,
                 cancel: threading.Event | None):
        from webllm.errors import ModelNotFoundError

        if req.model is not None and req.model != engine.name:
            raise ModelNotFoundError(f"the model '{req.model}' does not exist (this engine serves '{engine.name}')",
                                     param="model")
        self.engine = engine
        self.req = req
        self.ids = ids
        self.sampling = engine.sampling(
            temperature=req.temperature, top_p=req.top_p, top_k=req.top_k, min_p=req.min_p,
            frequency_penalty=req.frequency_penalty, presence_penalty=req.presence_penalty,
            repetition_penalty=req.repetition_penalty, logit_bias=req.bias, seed=req.seed,
            top_logprobs=req.n_top_logprobs)
        self.grammar_format = grammar_format
        engine.grammar(grammar_format)  # a schema xgrammar cannot use fails here, before any output
        self.cancel = cancel
        self.usage = rs.CompletionUsage(prompt_tokens=len(ids), completion_tokens=0, total_tokens=len(ids))
        self.cached = None

    def choices(self) -> Iterator[tuple[int, Iterator[TokenEvent], GenerationStats]]:
        for i in range(self.req.n):
            s = self.sampling
            if s.seed is not None and i:
                s = s.with_seed((s.seed + i) & 0xFFFFFFFF)
            gen = self.engine.generate(self.ids, self.req.limit, s, self.req.stops,
                                       self.engine.grammar(self.grammar_format), self.cancel)
            yield i, gen, gen.stats
            self.usage.completion_tokens += gen.stats.completion_tokens
            self.usage.total_tokens = self.usage.prompt_tokens + self.usage.completion_tokens
            if self.cached is None:  # the first choice's prefill is what the prompt cost
                self.cached = gen.stats.cached_tokens
                self.usage.prompt_tokens_details.cached_tokens = self.cached
            if self.cancel is not None and self.cancel.is_set():
                return


def _chat_logprobs(engine: Engine, events: list[TokenEvent]) -> rs.ChoiceLogprobs:
    tok = engine.tokenizer

    def entry(t: int, lp: float) -> dict:
        s = tok.token_text(t)
        return {"token": s, "logprob": lp, "bytes": list(s.encode("utf-8"))}

    return rs.ChoiceLogprobs(content=[
        rs.ChatCompletionTokenLogprob(**entry(e.token, e.logprob.logprob),
                                      top_logprobs=[rs.TopLogprob(**entry(t, lp)) for t, lp in e.logprob.top])
        for e in events if e.logprob is not None])


def _completion_logprobs(engine: Engine, events: list[TokenEvent], offset: int) -> rs.CompletionLogprobs:
    tok = engine.tokenizer
    out = rs.CompletionLogprobs()
    for e in events:
        if e.logprob is None:
            continue
        s = tok.token_text(e.token)
        out.tokens.append(s)
        out.token_logprobs.append(e.logprob.logprob)
        out.top_logprobs.append({tok.token_text(t): lp for t, lp in e.logprob.top})
        out.text_offset.append(offset)
        offset += len(s)
    return out


class ChatCompletions:
    def __init__(self, engine: Engine):
        self._engine = engine

    def create(self, *, cancel: threading.Event | None = None, **body) -> rs.ChatCompletion | Stream:
        """As OpenAI's `client.chat.completions.create` (webllm/protocol/requests.py lists the fields).
        `cancel`: an event that, once set, ends the generation before its next token."""
        return self.run(body, cancel)

    def run(self, body: dict, cancel: threading.Event | None = None) -> rs.ChatCompletion | Stream:
        """`create` with the request as one dict (a JSON body: its keys cannot clash with `cancel`)."""
        req = rq.ChatCompletionRequest.parse(body)
        e = self._engine
        ids = e.chat_prompt(req.message_dicts(), req.limit, truncate=req.truncation == "auto")
        rf = req.response_format
        fmt = None if rf is None or rf.type == "text" else (
            {"type": "json_object"} if rf.type == "json_object" else {"type": "json_schema", "schema": rf.json_schema.schema_})
        job = _Job(e, req, ids, fmt, cancel)
        if req.stream:
            return Stream(self._stream(job))
        choices = []
        for i, gen, stats in job.choices():
            events = list(gen)
            choices.append(rs.Choice(
                index=i, message=rs.ChatCompletionMessage(content="".join(ev.text for ev in events)),
                finish_reason=stats.finish_reason,
                logprobs=_chat_logprobs(e, events) if req.logprobs else None))
        return rs.ChatCompletion(model=e.name, choices=choices, usage=job.usage)

    def _stream(self, job: _Job) -> Iterator[rs.ChatCompletionChunk]:
        head = {"id": rs.new_id("chatcmpl"), "created": rs.now(), "model": job.engine.name}
        for i, gen, stats in job.choices():
            yield rs.ChatCompletionChunk(**head, choices=[
                rs.ChunkChoice(index=i, delta=rs.ChoiceDelta(role="assistant", content=""))])
            try:
                for ev in gen:
                    if ev.text or ev.logprob is not None:
                        yield rs.ChatCompletionChunk(**head, choices=[rs.ChunkChoice(
                            index=i, delta=rs.ChoiceDelta(content=ev.text),
                            logprobs=_chat_logprobs(job.engine, [ev]) if job.req.logprobs else None)])
            finally:
                gen.close()
            yield rs.ChatCompletionChunk(**head, choices=[
                rs.ChunkChoice(index=i, delta=rs.ChoiceDelta(), finish_reason=stats.finish_reason)])
        if job.req.include_usage:
            yield rs.ChatCompletionChunk(**head, choices=[], usage=job.usage)


class Chat:
    def __init__(self, engine: Engine):
        self.completions = ChatCompletions(engine)


class Completions:
    def __init__(self, engine: Engine):
        self._engine = engine

    def create(self, *, cancel: threading.Event | None = None, **body) -> rs.Completion | Stream:
        """As OpenAI's `client.completions.create`: continue raw prompt text (or token ids)."""
        return self.run(body, cancel)

    def run(self, body: dict, cancel: threading.Event | None = None) -> rs.Completion | Stream:
        req = rq.CompletionRequest.parse(body)
        e = self._engine
        ids = e.text_prompt(req.prompt_input())
        job = _Job(e, req, ids, None, cancel)
        if req.stream:
            return Stream(self._stream(job))
        choices = []
        for i, gen, stats in job.choices():
            events = list(gen)
            choices.append(rs.CompletionChoice(
                index=i, text="".join(ev.text for ev in events), finish_reason=stats.finish_reason,
                logprobs=_completion_logprobs(e, events, 0) if req.logprobs is not None else None))
        return rs.Completion(model=e.name, choices=choices, usage=job.usage)

    def _stream(self, job: _Job) -> Iterator[rs.Completion]:
        head = {"id": rs.new_id("cmpl"), "created": rs.now(), "model": job.engine.name}
        for i, gen, stats in job.choices():
            offset = 0
            try:
                for ev in gen:
                    if ev.text or ev.logprob is not None:
                        lp = _completion_logprobs(job.engine, [ev], offset) if job.req.logprobs is not None else None
                        offset += len(ev.text)
                        yield rs.Completion(**head, choices=[rs.CompletionChoice(index=i, text=ev.text, logprobs=lp)])
            finally:
                gen.close()
            yield rs.Completion(**head, choices=[rs.CompletionChoice(index=i, text="", finish_reason=stats.finish_reason)])
        if job.req.include_usage:
            yield rs.Completion(**head, choices=[], usage=job.usage)


class Models:
    def __init__(self, engine: Engine):
        self._engine = engine

    def list(self) -> rs.ModelList:
        return rs.ModelList(data=[rs.Model(id=self._engine.name)])
