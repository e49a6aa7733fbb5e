# ruff: noqa: F811 (the fixtures imported from default_model come back as test parameters)
"""The embedded default model scores a real text as transformers does: perplexity on the start of
Chapter I of Alice in Wonderland (public domain, tests/data/ppl). In a module of its own so that a
parallel run (pytest -n 2, the README's command) gives it a worker beside test_default_model.py's."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from default_model import cache, monkeypatch_module, package  # noqa: E402, F401 (fixtures)
from tiny_models import llama_from_gguf  # noqa: E402

from webllm.models_cache import default_model_path  # noqa: E402

DATA = Path(__file__).parent / "data"
N_TOKENS = 256  # two prefill chunks of the embedded package (128 tokens each)


def test_perplexity_matches_transformers(package):
    """Perplexity on Chapter I of Alice in Wonderland (public domain, tests/data/ppl) within 1% of
    transformers running the same GGUF dequantized (torch, CPU, fp32).

    The package keeps the GGUF's Q4_1 / Q8_0 blocks as they are (no second rounding), so the only
    differences are f16 activations and summation order: we measured 0.0x% (see the closing note of
    the issue); 1% is the issue's bound. The chapter's first N_TOKENS tokens, two prefill chunks: on a
    2-core AVX2 host's lavapipe prefill runs at 4-5 tok/s, so all 2,048 took 15 minutes and 512 three.
    """
    import torch

    from webllm.engine.tokenizer import Tokenizer
    from webllm.evaluation.perplexity import log_softmax, perplexity
    from webllm.runtime import Model

    text = (DATA / "ppl" / "alice-chapter-1.txt").read_text(encoding="utf-8")
    model = Model.load(package, progress=False, scoring=True)
    tok = Tokenizer(package / "tokenizer.json", model.manifest["tokenizer"])
    ids = tok.encode(text, add_special_tokens=True)[:N_TOKENS]
    assert len(ids) == N_TOKENS
    ours = perplexity(model, ids)

    ref_model = llama_from_gguf(default_model_path())
    with torch.no_grad():
        logits = ref_model(torch.tensor([ids])).logits[0].numpy()
    logp = log_softmax(logits[:-1])
    ref = float(np.exp(-logp[np.arange(len(ids) - 1), ids[1:]].mean()))
    print(f"perplexity over {len(ids)} tokens: ours {ours:.4f}, transformers {ref:.4f}")
    assert abs(ours / ref - 1) < 0.01
