"""ModelConfig: the normalized, frozen description of a Llama-family model (HF field names)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from webllm.errors import UnsupportedModelError

SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
}
SUPPORTED_ROPE_TYPES = ("default", "llama3", "linear")


@dataclass(frozen=True)
class ModelConfig:
    """Everything the compiler needs to know about the network's shape and numerics."""

    architecture: str  # one of SUPPORTED_ARCHITECTURES' keys
    model_type: str  # "llama", "mistral", "qwen2"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict[str, Any] | None  # None or {"rope_type": "llama3"|"linear", ...}
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool  # q, k, v (and for llama also o) projections carry a bias
    o_proj_bias: bool
    mlp_bias: bool
    sliding_window: int | None
    bos_token_id: int | None = None
    eos_token_id: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(**d)


def _need(cfg: dict, key: str, src: str):
    if key not in cfg or cfg[key] is None:
        raise UnsupportedModelError(f"{src}: required field '{key}' is missing")
    return cfg[key]


def normalize_hf_config(cfg: dict[str, Any], src: str = "config.json") -> ModelConfig:
    """Validate a Hugging Face config.json dict and normalize it (v4 and v5 rope fields alike)."""
    archs = cfg.get("architectures") or []
    arch = archs[0] if archs else None
    if arch is None:
        by_type = {v: k for k, v in SUPPORTED_ARCHITECTURES.items()}
        arch = by_type.get(cfg.get("model_type", ""))
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"{src}: architecture {arch or cfg.get('model_type')!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    model_type = SUPPORTED_ARCHITECTURES[arch]
    act = cfg.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise UnsupportedModelError(f"{src}: field 'hidden_act' = {act!r} is not supported (only 'silu')")
    if cfg.get("pretraining_tp", 1) not in (1, None):
        # pretraining_tp > 1 only changes how HF splits the matmul, not the math; accept it.
        pass
    hidden = int(_need(cfg, "hidden_size", src))
    heads = int(_need(cfg, "num_attention_heads", src))
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    if heads % kv_heads:
        raise UnsupportedModelError(
            f"{src}: num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv_heads})"
        )
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    if head_dim % 2 or head_dim > 256:
        raise UnsupportedModelError(f"{src}: field 'head_dim' = {head_dim} is not supported (even, at most 256)")

    rope = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling")
    field_name = "rope_scaling"
    if scaling is None and rope.get("rope_type", "default") != "default":
        scaling, field_name = rope, "rope_parameters"
    theta = float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    if scaling is not None:
        rtype = scaling.get("rope_type", scaling.get("type", "default"))
        if rtype not in SUPPORTED_ROPE_TYPES:
            raise UnsupportedModelError(
                f"{src}: field '{field_name}' type {rtype!r} is not supported "
                f"(supported: {', '.join(SUPPORTED_ROPE_TYPES)})"
            )
        if rtype == "default":
            scaling = None
        else:
            keep = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
            scaling = {"rope_type": rtype, **{k: scaling[k] for k in keep if k in scaling}}
            if "factor" not in scaling:
                raise UnsupportedModelError(f"{src}: field '{field_name}' has no 'factor'")
    if float(cfg.get("partial_rotary_factor", 1.0)) != 1.0:
        raise UnsupportedModelError(f"{src}: field 'partial_rotary_factor' != 1 is not supported")

    window = None
    if model_type == "mistral":
        window = cfg.get("sliding_window")
    elif model_type == "qwen2" and cfg.get("use_sliding_window"):
        raise UnsupportedModelError(f"{src}: field 'use_sliding_window' = true is not supported for Qwen2")

    attn_bias = bool(cfg.get("attention_bias", False)) or model_type == "qwen2"
    o_bias = bool(cfg.get("attention_bias", False)) and model_type == "llama"
    eos = cfg.get("eos_token_id")
    eos_list = [] if eos is None else ([int(eos)] if isinstance(eos, int) else [int(e) for e in eos])
    bos = cfg.get("bos_token_id")
    return ModelConfig(
        architecture=arch,
        model_type=model_type,
        vocab_size=int(_need(cfg, "vocab_size", src)),
        hidden_size=hidden,
        intermediate_size=int(_need(cfg, "intermediate_size", src)),
        num_hidden_layers=int(_need(cfg, "num_hidden_layers", src)),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_theta=theta,
        rope_scaling=scaling,
        max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        attention_bias=attn_bias,
        o_proj_bias=o_bias,
        mlp_bias=bool(cfg.get("mlp_bias", False)),
        sliding_window=int(window) if window else None,
        bos_token_id=None if bos is None else int(bos if isinstance(bos, int) else bos[0]),
        eos_token_id=eos_list,
    )
