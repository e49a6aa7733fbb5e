"""The in-process OpenAI-style API (`from webllm import Engine`) and the pieces under it: request
validation into named errors, incremental detokenization, stop strings across token boundaries, the
server's queue and status mapping. The model is a tiny random one with SmolLM2's BPE vocabulary."""

from __future__ import annotations

import asyncio
import threading

import pytest

from webllm.engine.stop import StopMatcher
from webllm.errors import (
    ContextWindowExceededError,
    EngineBusyError,
    InvalidParameterError,
    ModelNotFoundError,
    ParameterTypeError,
    UnsupportedParameterError,
)
from webllm.protocol import ChatCompletionRequest, CompletionRequest

MSG = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def engine(bpe_package, gpu):
    from webllm import Engine

    adapter, device = gpu
    return Engine(bpe_package, adapter=adapter, device=device)


# ---- protocol ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, error, param", [
    ({"messages": "hi"}, ParameterTypeError, "messages"),
    ({"messages": []}, InvalidParameterError, "messages"),
    ({"temperature": "hot"}, ParameterTypeError, "temperature"),
    ({"temperature": 2.5}, InvalidParameterError, "temperature"),
    ({"top_p": 0}, InvalidParameterError, "top_p"),
    ({"max_tokens": 0}, InvalidParameterError, "max_tokens"),
    ({"n": 1.5}, ParameterTypeError, "n"),
    ({"stop": ["a", "b", "c", "d", "e"]}, InvalidParameterError, "stop"),
    ({"stop": [""]}, InvalidParameterError, "stop"),
    ({"logit_bias": {"x": 1}}, InvalidParameterError, "logit_bias"),
    ({"logit_bias": {"5": 101}}, InvalidParameterError, "logit_bias"),
    ({"top_logprobs": 3}, InvalidParameterError, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, InvalidParameterError, "top_logprobs"),
    ({"stream_options": {"include_usage": True}}, InvalidParameterError, "stream_options"),
    ({"response_format": {"type": "json_schema"}}, InvalidParameterError, "response_format"),
    ({"response_format": {"type": "xml"}}, InvalidParameterError, "response_format.type"),
    ({"tools": [{"type": "function"}]}, UnsupportedParameterError, "tools"),
    ({"frobnicate": 1}, UnsupportedParameterError, "frobnicate"),
])
def test_bad_chat_requests_are_named_errors(change, error, param):
    with pytest.raises(error) as info:
        ChatCompletionRequest.parse({"messages": MSG} | change)
    assert type(info.value) is error and info.value.param == param and "\n" not in str(info.value)


def test_good_requests_parse():
    r = ChatCompletionRequest.parse({"messages": MSG, "temperature": 1, "stop": "x", "user": "me", "tools": None,
                                     "max_completion_tokens": 5, "max_tokens": 9, "logit_bias": {"7": -100}})
    assert r.stops == ["x"] and r.limit == 5 and r.bias == {7: -100.0} and r.temperature == 1.0
    assert CompletionRequest.parse({"prompt": [1, 2]}).prompt_input() == [1, 2]
    assert CompletionRequest.parse({"prompt": ["abc"]}).prompt_input() == "abc"
    with pytest.raises(UnsupportedParameterError):
        CompletionRequest.parse({"prompt": ["a", "b"]})


# ---- text --------------------------------------------------------------------------------------------

def test_stop_matcher_holds_back_what_may_begin_a_stop_string():
    m = StopMatcher(["STOP", "xyz"])
    out = [m.push(p) for p in ("hello S", "T", "O", "x")]
    assert out == [("hello ", False), ("", False), ("", False), ("STO", False)]  # "x" may begin "xyz"
    assert m.push("P and more") == ("xP and more", False)
    m = StopMatcher(["STOP"])
    assert m.push("abc ST") == ("abc ", False)
    assert m.push("OP tail") == ("", True)
    m = StopMatcher(["STOP"])
    assert m.push("ab") == ("ab", False) and m.push("S") == ("", False) and m.flush() == "S"


def test_incremental_decoding_equals_decoding_the_whole(engine):
    """Pieces released token by token join into the decode of all ids, multi-byte characters included
    (a character split over two tokens comes out once, whole)."""
    from webllm.engine.tokenizer import IncrementalDecoder

    tok = engine.tokenizer
    text = "Grüße, 世界! Emoji 🙂🚀 and ascii text\n\twith  spaces. " * 3
    ids = tok.encode(text)
    prompt = tok.encode("<|im_start|>assistant\n")
    dec = IncrementalDecoder(tok, prompt)
    pieces = [dec.push(t) for t in ids]
    assert "".join(pieces) == tok.decode(ids) == text
    assert not any("\ufffd" in p for p in pieces)


# ---- the in-process API -------------------------------------------------------------------------------

def test_chat_completion_objects_are_shaped_like_openai(engine):
    r = engine.chat.completions.create(messages=MSG, max_tokens=6, temperature=0)
    assert r.object == "chat.completion" and r.model == engine.name and r.id.startswith("chatcmpl-")
    c = r.choices[0]
    assert c.index == 0 and c.message.role == "assistant" and c.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens == len(engine.chat_prompt(MSG))
    chunks = list(engine.chat.completions.create(messages=MSG, max_tokens=6, temperature=0, stream=True))
    assert all(ch.object == "chat.completion.chunk" and ch.id == chunks[0].id for ch in chunks)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == c.message.content
    t = engine.completions.create(prompt="Once upon", max_tokens=4, temperature=0)
    assert t.object == "text_completion" and t.usage.completion_tokens == 4


def test_a_closed_stream_frees_the_engine(engine):
    s = engine.chat.completions.create(messages=MSG, max_tokens=50, temperature=0, stream=True)
    next(s), next(s)
    s.close()
    assert not engine.lock.locked()
    assert engine.chat.completions.create(messages=MSG, max_tokens=2).choices[0].message.content is not None


def test_cancel_event_stops_between_tokens(engine):
    cancel = threading.Event()
    cancel.set()
    r = engine.chat.completions.create(messages=MSG, max_tokens=50, temperature=0, cancel=cancel)
    assert r.usage.completion_tokens == 1


def test_next_turn_prefills_only_the_new_tokens(engine):
    engine.reset()
    first = engine.chat.completions.create(messages=MSG, max_tokens=5, temperature=0)
    history = MSG + [{"role": "assistant", "content": first.choices[0].message.content},
                     {"role": "user", "content": "And then?"}]
    second = engine.chat.completions.create(messages=history, max_tokens=5, temperature=0)
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens
    assert second.usage.prompt_tokens > second.usage.prompt_tokens_details.cached_tokens


def test_request_errors(engine):
    with pytest.raises(ModelNotFoundError):
        engine.chat.completions.create(model="gpt-4", messages=MSG)
    with pytest.raises(ContextWindowExceededError):
        engine.chat.completions.create(messages=[{"role": "user", "content": "word " * 1100}])
    with pytest.raises(InvalidParameterError, match="logit_bias"):
        engine.chat.completions.create(messages=MSG, logit_bias={"60000": 1})
    with pytest.raises(InvalidParameterError, match="prompt"):
        engine.completions.create(prompt=[60000])


# ---- server pieces -----------------------------------------------------------------------------------

def test_a_full_queue_is_a_503():
    from webllm.server.errors import to_http
    from webllm.server.scheduler import END, Scheduler

    async def main():
        s = Scheduler(max_queue=2)
        gate = threading.Event()
        a = s.submit(lambda cancel: gate.wait(10))
        s.submit(lambda cancel: 1)
        with pytest.raises(EngineBusyError) as info:
            s.submit(lambda cancel: 2)
        gate.set()
        assert await a.next() is True and await a.next() is END
        s.close()
        return info.value

    status, body = to_http(asyncio.run(main()))
    assert status == 503 and body["error"]["code"] == "queue_full"


def test_a_job_whose_event_loop_closed_does_not_stop_the_worker():
    """A request whose event loop is gone (its client and handler too) is cancelled mid-stream; the GPU
    thread lives on and serves the next request."""
    from webllm.server.scheduler import END, Scheduler

    s = Scheduler()
    started, stop, items = threading.Event(), threading.Event(), []

    def stream(cancel):
        started.set()
        for i in range(100):
            items.append(i)
            yield i
            if i == 0:
                stop.wait(10)

    async def first():
        return s.submit(stream)

    asyncio.run(first())  # returns, closing its loop, while the job streams
    assert started.wait(10)
    stop.set()

    async def second():
        job = s.submit(lambda cancel: 7)
        return await asyncio.wait_for(job.next(), 10), await asyncio.wait_for(job.next(), 10)

    assert asyncio.run(second()) == (7, END)  # a dead worker: TimeoutError
    assert items[-1] < 99 and s.served == 2 and s.cancelled == 1
    s.close()


def test_the_browser_page_and_the_served_packages(engine, tmp_path):
    """With a web build, / is the page, /models.json lists the served models, and their packages'
    files are under /models/<id>/ (the page runs them itself, in the browser)."""
    from starlette.testclient import TestClient

    from webllm.server import create_app

    (tmp_path / "index.html").write_text("<html>chat</html>")
    with TestClient(create_app([engine], web_dir=tmp_path)) as http:
        assert http.get("/").text == "<html>chat</html>"
        models = http.get("/models.json").json()["models"]
        assert [m["id"] for m in models] == [engine.name] and models[0]["url"] == f"models/{engine.name}/"
        assert http.get(f"/models/{engine.name}/manifest.json").json()["format"] == "webllm-package"
        assert http.get("/health").json()["status"] == "ok"


# ---- sampling parameters through the engine (the kernel itself: test_sampler_kernel.py) ---------------

def completion_ids(engine, **kw) -> list[int]:
    ids = engine.chat_prompt(MSG)
    gen = engine.generate(ids, kw.pop("max_tokens", 10), engine.sampling(**kw))
    return [e.token for e in gen]


def test_logit_bias_top_k_and_penalties_reach_the_gpu(engine):
    greedy = completion_ids(engine, temperature=0)
    assert completion_ids(engine, temperature=1.0, top_k=1, seed=5) == greedy  # top-1 is greedy
    assert completion_ids(engine, temperature=1.0, min_p=1.0, seed=9) == greedy  # only the likeliest passes
    forced = 4242
    assert completion_ids(engine, temperature=0, logit_bias={forced: 100.0}) == [forced] * 10
    # a strong repetition penalty: no token of the prompt and no token twice
    prompt = set(engine.chat_prompt(MSG))
    out = completion_ids(engine, temperature=0, repetition_penalty=10.0, max_tokens=12)
    assert len(set(out)) == len(out) and not set(out) & prompt
    assert completion_ids(engine, temperature=0) == greedy  # and nothing sticks to the next request


def test_json_object_in_process(engine):
    r = engine.chat.completions.create(messages=MSG, max_tokens=48, temperature=0,
                                       response_format={"type": "json_schema", "json_schema": {
                                           "name": "x", "schema": {"type": "object", "required": ["k"],
                                                                   "additionalProperties": False,
                                                                   "properties": {"k": {"type": "boolean"}}}}})
    import json

    assert json.loads(r.choices[0].message.content) in ({"k": True}, {"k": False})
    with pytest.raises(InvalidParameterError, match="response_format"):
        engine.chat.completions.create(messages=MSG, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no-such-type"}}})
