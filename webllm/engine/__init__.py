"""Engine: tokenizer, chat template and generation over a runtime Model (same behaviour as the JS engine)."""

from webllm.engine.engine import Engine, GenerationStats

__all__ = ["Engine", "GenerationStats"]
