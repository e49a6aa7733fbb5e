"""The engine on a tiny model: a conversation longer than the context window is a named error unless
truncation is asked for; then it drops its oldest turns (keeping the system message) instead of
failing, and generation never passes the window."""

from __future__ import annotations

import pytest
from test_reference import BY_NAME

from webllm.engine import Engine
from webllm.errors import ContextWindowExceededError

SPEC = BY_NAME["llama_mha"]


def test_long_conversation_keeps_the_system_message_and_fits_the_window(zoo, gpu):
    adapter, device = gpu
    pkg = zoo.package(SPEC, "q0f32", context_window=96)
    engine = Engine.load(pkg, adapter=adapter, device=device)
    words = " ".join(f"w{i}" for i in range(1, 25))  # 24 tokens a message with the word-level vocabulary
    history = [{"role": "system", "content": "w7 w8"}]
    for _turn in range(6):  # 6 x 24 tokens of user text alone overflow a 96-token window
        history.append({"role": "user", "content": words})
        r = engine.chat.completions.create(messages=history, max_tokens=8, temperature=0, truncation="auto")
        history.append({"role": "assistant", "content": r.choices[0].message.content})
        stats = engine.last_stats
        assert stats.prompt_tokens + stats.completion_tokens <= 96
        assert stats.completion_tokens >= 1
    assert engine.model.past <= 96
    full = engine.tokenizer.encode(engine.template.render(history, add_generation_prompt=True))
    assert len(full) > 96  # the conversation really overflowed
    system = engine.tokenizer.encode(engine.template.render(history[:1], add_generation_prompt=False))
    assert engine._cached[: len(system)] == system  # the latest prompt still opens with the system message
    with pytest.raises(ContextWindowExceededError, match="context window is 96 tokens"):
        engine.chat.completions.create(messages=history, max_tokens=8)
