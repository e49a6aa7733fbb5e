"""Sampling on the GPU (the plan's last kernel): temperature / top-p draws follow transformers'
probabilities, stay inside the nucleus, and are fixed by the seed; temperature 0 stays greedy."""

from __future__ import annotations

import numpy as np
import pytest
from test_reference import BY_NAME

SPEC = BY_NAME["llama_mha"]
IDS = [5, 17, 250, 3, 99, 42, 7]
DRAWS = 400


@pytest.fixture
def rt(zoo):
    rt = zoo.runtime(SPEC, "q0f32", "f32")
    yield rt
    rt.set_sampling()  # the runtime is shared: leave it greedy
    rt.reset()


def draw(rt, temperature: float, top_p: float, seed: int) -> int:
    rt.reset()
    rt.set_sampling(temperature, top_p, seed)
    rt.prefill(IDS)
    return rt.next_token()


def probs(zoo, temperature: float) -> np.ndarray:
    z = zoo.logits(SPEC, "q0f32", IDS)[-1] / temperature
    p = np.exp(z - z.max())
    return p / p.sum()


def test_frequencies_follow_the_softmax(zoo, rt):
    """400 seeded draws at T = 0.7: each of the likeliest tokens appears within 4.5 standard deviations
    of its transformers probability (the seeds are fixed, so the check is deterministic)."""
    p = probs(zoo, 0.7)
    counts = np.bincount([draw(rt, 0.7, 1.0, s) for s in range(DRAWS)], minlength=p.size)
    for v in np.argsort(-p)[:5]:
        sigma = np.sqrt(p[v] * (1 - p[v]) / DRAWS)
        assert abs(counts[v] / DRAWS - p[v]) < 4.5 * sigma + 1e-3, (v, counts[v] / DRAWS, p[v])
    assert (counts > 0).sum() > 5  # a real spread, not argmax


def test_top_p_keeps_draws_in_the_nucleus(zoo, rt):
    """With top_p = 0.5 every draw is one of the smallest set of likeliest tokens holding half the mass
    (2% slack on the boundary probability for float differences between GPU and CPU)."""
    p = probs(zoo, 1.0)
    order = np.argsort(-p)
    k = int(np.searchsorted(np.cumsum(p[order]), 0.5)) + 1
    floor = p[order[k - 1]]
    got = {draw(rt, 1.0, 0.5, s) for s in range(100)}
    assert all(p[v] >= 0.98 * floor for v in got), (sorted(got), order[:k])
    assert len(got) > 1 or k == 1


def test_seed_fixes_the_draws_and_greedy_is_argmax(zoo, rt):
    a = [draw(rt, 1.0, 0.9, s) for s in range(20)]
    assert a == [draw(rt, 1.0, 0.9, s) for s in range(20)]
    assert len(set(a)) > 1
    assert draw(rt, 0.0, 1.0, 123) == int(np.argmax(zoo.logits(SPEC, "q0f32", IDS)[-1]))


def test_bad_sampling_parameters_are_one_clear_error(rt):
    from webllm.errors import WebLLMError

    for t, p in ((-1.0, 1.0), (1.0, 0.0), (1.0, 1.5)):
        with pytest.raises(WebLLMError, match="temperature must be >= 0 and top_p in"):
            rt.set_sampling(t, p)
