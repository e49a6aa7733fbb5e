"""The Llama family (Llama 2/3/3.1/3.2, Mistral, Qwen2): fused weights and the op graph.

Per layer, seven ops (see docs/ARCHITECTURE.md):
  x       = rmsnorm(h)                                  rmsnorm (once per token, stored as act)
  q, K, V = rope([Wq; Wk; Wv] . x (+ bias))             matmul with a rope epilogue that writes q and
                                                        appends K, V to the cache (rows in rope pairs)
  attn    = softmax(q K^T / sqrt(d)) V                  attention
  h      += Wo . attn (+ bias)                          matmul, residual add fused in
  x       = rmsnorm(h)                                  rmsnorm
  mlp     = silu(Wg . x) * (Wu . x)                     matmul over [Wg; Wu], SwiGLU fused in
  h      += Wd . mlp                                    matmul, residual add fused in
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from webllm.config import ModelConfig
from webllm.errors import UnsupportedModelError
from webllm.importers.base import ImportedModel
from webllm.quantization.formats import PackedWeight, _pack_vals, _unpack_vals, dequantize, permute_rows
from webllm.quantization.quantize import QuantizationMode, quantize_matrix


@dataclass
class Op:
    """One node of the graph. `inputs`/`outputs` name activation tensors; `weights` name package tensors."""

    kind: str  # "embed", "rmsnorm", "matmul", "attention", "sample"
    inputs: list[str]
    outputs: list[str]
    weights: list[str] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)


def rope_table(cfg: ModelConfig, capacity: int) -> np.ndarray:
    """(cos, sin) for positions [0, capacity) and frequencies [0, head_dim/2), f32 [capacity, hd/2, 2].

    Computed as transformers does in f32 (inv_freq from theta, llama3/linear scaling, then
    position * inv_freq), so both runtimes read the exact angles instead of evaluating cos/sin on GPUs
    whose transcendental precision for large arguments varies.
    """
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (np.arange(0, d, 2, dtype=np.int64).astype(np.float32) / d))
    inv_freq = inv_freq.astype(np.float32)
    sc = cfg.rope_scaling
    if sc is not None and sc["rope_type"] == "linear":
        inv_freq = (inv_freq / np.float32(sc["factor"])).astype(np.float32)
    elif sc is not None and sc["rope_type"] == "llama3":
        factor = sc["factor"]
        low, high = sc.get("low_freq_factor", 1.0), sc.get("high_freq_factor", 4.0)
        old_ctx = sc.get("original_max_position_embeddings", 8192)
        low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
        wavelen = 2 * math.pi / inv_freq
        scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv_freq = np.where(medium, smoothed, scaled).astype(np.float32)
    pos = np.arange(capacity, dtype=np.float32)
    freqs = (pos[:, None] * inv_freq[None, :]).astype(np.float32)
    return np.stack([np.cos(freqs), np.sin(freqs)], axis=-1).astype(np.float32)


def rope_pair_order(cfg: ModelConfig) -> np.ndarray:
    """Row order of the fused qkv matrix in the package: within each head, rows i and i + head_dim/2
    (the two halves rope rotates together) become neighbours 2i, 2i + 1, so the matmul that computes
    them can apply rope in its epilogue. Row r of the package matrix is row order[r] of [Wq; Wk; Wv]."""
    d, half = cfg.head_dim, cfg.head_dim // 2
    within = np.stack([np.arange(half), np.arange(half) + half], axis=1).reshape(-1)
    heads = cfg.num_attention_heads + 2 * cfg.num_key_value_heads
    return (np.arange(heads)[:, None] * d + within[None, :]).reshape(-1)


def concat_rows(parts: list[PackedWeight]) -> PackedWeight:
    """Stack matrices of one format along rows (their arrays are row-major)."""
    fmt, sd, k = parts[0].format, parts[0].scale_dtype, parts[0].shape[1]
    n = sum(p.shape[0] for p in parts)
    arrays = {}
    for name in parts[0].arrays:
        if name in ("weight", "qweight"):
            arrays[name] = np.concatenate([p.arrays[name] for p in parts])
        else:
            vals = [_unpack_vals(p.arrays[name], sd if name == "scales" else "f16", p.shape[0] * k // 32) for p in parts]
            arrays[name] = _pack_vals(np.concatenate(vals), sd if name == "scales" else "f16")
    return PackedWeight(fmt, (n, k), arrays, sd)


def fuse_matrices(mats: list[np.ndarray | PackedWeight], mode: QuantizationMode, name: str) -> PackedWeight:
    """Fuse matrices by rows, keeping native pre-quantized blocks when all parts share a format."""
    packed = [m for m in mats if isinstance(m, PackedWeight)]
    if len(packed) == len(mats) and len({(m.format, m.scale_dtype) for m in packed}) == 1:
        return concat_rows(packed)
    floats = [dequantize(m) if isinstance(m, PackedWeight) else np.asarray(m, np.float32) for m in mats]
    return quantize_matrix(np.concatenate(floats, axis=0), mode, name)


class LlamaModel:
    """Package weights and the op graph of one Llama-family checkpoint."""

    def __init__(self, imported: ImportedModel, mode: QuantizationMode, context_window: int):
        self.src = imported
        self.cfg = imported.config
        self.mode = mode
        self.capacity = context_window
        c = self.cfg
        if c.head_dim % 4:
            raise UnsupportedModelError(f"{imported.source}: head_dim {c.head_dim} is not a multiple of 4")
        for f, v in (("hidden_size", c.hidden_size), ("intermediate_size", c.intermediate_size),
                     ("num_attention_heads * head_dim", c.num_attention_heads * c.head_dim)):
            if v % 32:
                raise UnsupportedModelError(f"{imported.source}: {f} = {v} is not a multiple of 32")

    # ---- weights ---------------------------------------------------------------------------------
    def _t(self, name: str):
        return self.src.tensor(name)

    def _vec(self, name: str) -> np.ndarray:
        v = self._t(name)
        if isinstance(v, PackedWeight):
            raise UnsupportedModelError(f"{self.src.source}: tensor '{name}' must be a float vector")
        return np.asarray(v, np.float32).reshape(-1)

    def weight_names(self) -> list[str]:
        n = ["embed", "final_norm", "rope_table"]
        if not self.cfg.tie_word_embeddings:
            n.append("lm_head")
        for i in range(self.cfg.num_hidden_layers):
            n += [f"layers.{i}.{s}" for s in ("input_norm", "qkv", "o", "post_norm", "gate_up", "down")]
            if self.cfg.attention_bias:
                n.append(f"layers.{i}.qkv.bias")
            if self.cfg.o_proj_bias:
                n.append(f"layers.{i}.o.bias")
            if self.cfg.mlp_bias:
                n += [f"layers.{i}.gate_up.bias", f"layers.{i}.down.bias"]
        return n

    def iter_weights(self) -> Iterator[tuple[str, PackedWeight | np.ndarray]]:
        """Yield (package tensor name, PackedWeight or float32 vector), one at a time (low memory)."""
        c, m = self.cfg, self.mode
        yield "embed", self._matrix("model.embed_tokens.weight")
        yield "final_norm", self._vec("model.norm.weight")
        yield "rope_table", rope_table(c, self.capacity).reshape(-1)
        if not c.tie_word_embeddings:
            yield "lm_head", self._matrix("lm_head.weight")
        for i in range(c.num_hidden_layers):
            p = f"model.layers.{i}."
            a = p + "self_attn."
            yield f"layers.{i}.input_norm", self._vec(p + "input_layernorm.weight")
            order = rope_pair_order(c)
            qkv = fuse_matrices([self._t(a + f"{x}_proj.weight") for x in "qkv"], m, f"layers.{i}.qkv")
            yield f"layers.{i}.qkv", permute_rows(qkv, order)
            if c.attention_bias:
                yield f"layers.{i}.qkv.bias", np.concatenate([self._vec(a + f"{x}_proj.bias") for x in "qkv"])[order]
            yield f"layers.{i}.o", self._matrix(a + "o_proj.weight")
            if c.o_proj_bias:
                yield f"layers.{i}.o.bias", self._vec(a + "o_proj.bias")
            yield f"layers.{i}.post_norm", self._vec(p + "post_attention_layernorm.weight")
            yield f"layers.{i}.gate_up", fuse_matrices(
                [self._t(p + "mlp.gate_proj.weight"), self._t(p + "mlp.up_proj.weight")], m, f"layers.{i}.gate_up")
            if c.mlp_bias:
                yield f"layers.{i}.gate_up.bias", np.concatenate([self._vec(p + "mlp.gate_proj.bias"),
                                                                  self._vec(p + "mlp.up_proj.bias")])
            yield f"layers.{i}.down", self._matrix(p + "mlp.down_proj.weight")
            if c.mlp_bias:
                yield f"layers.{i}.down.bias", self._vec(p + "mlp.down_proj.bias")

    def _matrix(self, name: str) -> PackedWeight:
        t = self._t(name)
        return t if isinstance(t, PackedWeight) else quantize_matrix(t, self.mode, name)

    # ---- graph -----------------------------------------------------------------------------------
    def graph(self, score: bool = False) -> list[Op]:
        """The op list of one step. `score`: the output head runs on every token (logits_all [T, vocab]),
        for perplexity and scoring, instead of the last token's logits and the sampled next token."""
        c = self.cfg
        ops = [Op("embed", ["token_ids"], ["h"], ["embed"])]
        for i in range(c.num_hidden_layers):
            L = f"layers.{i}."
            qkv_w = [L + "qkv"] + ([L + "qkv.bias"] if c.attention_bias else [])
            ops += [
                Op("rmsnorm", ["h"], [f"xn.{i}"], [L + "input_norm"]),
                Op("matmul", [f"xn.{i}"], [f"q.{i}", f"k_cache.{i}", f"v_cache.{i}"], qkv_w, {"rope": True}),
                Op("attention", [f"q.{i}", f"k_cache.{i}", f"v_cache.{i}"], [f"attn.{i}"]),
                Op("matmul", [f"attn.{i}"], ["h"], [L + "o"] + ([L + "o.bias"] if c.o_proj_bias else []), {"add": True}),
                Op("rmsnorm", ["h"], [f"xn2.{i}"], [L + "post_norm"]),
                Op("matmul", [f"xn2.{i}"], [f"mlp.{i}"], [L + "gate_up"] + ([L + "gate_up.bias"] if c.mlp_bias else []),
                   {"pair": True}),
                Op("matmul", [f"mlp.{i}"], ["h"], [L + "down"] + ([L + "down.bias"] if c.mlp_bias else []), {"add": True}),
            ]
        head = "embed" if c.tie_word_embeddings else "lm_head"
        if score:
            return ops + [Op("rmsnorm", ["h"], ["xn_all"], ["final_norm"]),
                          Op("matmul", ["xn_all"], ["logits_all"], [head])]
        ops += [Op("rmsnorm", ["h"], ["xn_last"], ["final_norm"], {"last": True}),
                Op("matmul", ["xn_last"], ["logits"], [head], {"single_row": True}),
                Op("sample", ["logits"], ["token_ids"])]
        return ops

    def activation_shapes(self, chunk: int) -> dict[str, tuple[int, str]]:
        """Logical activation tensor -> (element count for `chunk` tokens, dtype "f32"|"act"|"u32"|"kv"; "kv":
        the KV cache's f16 pairs, 2 bytes an element in both profiles)."""
        c = self.cfg
        s: dict[str, tuple[int, str]] = {"token_ids": (chunk, "u32"), "h": (chunk * c.hidden_size, "f32"),
                                         "logits": (c.vocab_size, "f32"), "xn_last": (c.hidden_size, "act"),
                                         "xn_all": (chunk * c.hidden_size, "act"), "logits_all": (chunk * c.vocab_size, "f32")}
        kv = c.num_key_value_heads * self.capacity * c.head_dim
        for i in range(c.num_hidden_layers):
            s[f"xn.{i}"] = (chunk * c.hidden_size, "act")
            s[f"xn2.{i}"] = (chunk * c.hidden_size, "act")
            s[f"q.{i}"] = (chunk * c.num_attention_heads * c.head_dim, "act")
            s[f"attn.{i}"] = (chunk * c.num_attention_heads * c.head_dim, "act")
            s[f"mlp.{i}"] = (chunk * c.intermediate_size, "act")
            s[f"k_cache.{i}"] = (kv, "kv")  # f16 in both profiles (rope_store.wgsl)
            s[f"v_cache.{i}"] = (kv, "kv")
        return s
