"""ImportedModel: what every importer hands to the compiler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from webllm.config import ModelConfig
from webllm.quantization.formats import PackedWeight


@dataclass
class ImportedModel:
    """A checkpoint, read lazily.

    `tensors` maps Hugging Face Llama names ("model.embed_tokens.weight",
    "model.layers.3.self_attn.q_proj.weight", "model.norm.weight", "lm_head.weight", ...) to a
    zero-argument loader returning either a float32 numpy array in HF layout ([out, in] for linear
    weights) or a PackedWeight when the source is already quantized in a format the kernels run
    natively (GGUF Q4_0 / Q4_1 / Q8_0 blocks).
    """

    config: ModelConfig
    tensors: dict[str, Callable[[], np.ndarray | PackedWeight]]
    tokenizer_json: str  # the full text of a Hugging Face tokenizers tokenizer.json
    tokenizer_config: dict[str, Any] = field(default_factory=dict)  # chat_template, bos_token, eos_token, ...
    generation_config: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # human description, e.g. the path
    source_sha256: str | None = None

    def tensor(self, name: str) -> np.ndarray | PackedWeight:
        from webllm.errors import InputError

        if name not in self.tensors:
            raise InputError(f"{self.source}: tensor '{name}' is missing")
        return self.tensors[name]()
