"""GGUF importer: a llama.cpp model file -> ImportedModel (config, lazy tensors, tokenizer).

A GGUF holds three things we need, each in llama.cpp's own conventions:

- hyper-parameters as metadata ("llama.embedding_length", ...), turned here into a Hugging Face
  config dict and validated by `normalize_hf_config`;
- tensors under llama.cpp names ("blk.3.attn_q.weight"), with the rows of Q and K permuted for
  llama.cpp's rope layout; we rename them to HF Llama names and undo the permutation, so the
  compiler sees exactly what a Hugging Face checkpoint would give it. Q4_0 / Q4_1 / Q8_0 blocks are
  repacked losslessly into our q4s / q4a / q8s formats; k-quants and the other block formats are
  dequantized to float32 (the compiler requantizes them);
- the tokenizer as vocabulary, merges or scores, token types and a pre-tokenizer name; gguf_tokenizer.py
  rebuilds a Hugging Face `tokenizers` tokenizer.json that splits text the way llama.cpp does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from webllm.config import normalize_hf_config
from webllm.errors import InputError, UnsupportedModelError
from webllm.importers.base import ImportedModel
from webllm.importers.gguf_tokenizer import build_tokenizer
from webllm.quantization.formats import GROUP, PackedWeight, pack_q4a, pack_q4s, pack_q8s

# ----------------------------------------------------------------------------------------------
# Opening the file
# ----------------------------------------------------------------------------------------------


class _GGUF:
    """A parsed GGUF: metadata values (plain Python) and the reader's tensors (memmap views).

    Any failure to parse becomes one InputError naming the file.
    """

    def __init__(self, path: Path):
        from gguf import GGUFReader

        self.path = path
        self.src = str(path)
        try:
            size = os.path.getsize(path)
            self.reader = GGUFReader(path)
            # Every field eagerly: they are small except the vocabulary, which we need anyway.
            self.meta: dict[str, Any] = {k: f.contents() for k, f in self.reader.fields.items()}
        except Exception as e:  # GGUFReader has no error type of its own: anything means corrupt
            raise InputError(f"{path}: not a readable GGUF file, truncated or corrupt ({type(e).__name__}: {e})") from e
        for t in self.reader.tensors:
            if t.data_offset + t.n_bytes > size:
                raise InputError(f"{path}: tensor '{t.name}' lies past the end of the file (truncated download?)")
        self.tensors = {t.name: t for t in self.reader.tensors}

    def get(self, key: str, default: Any = None) -> Any:
        value = self.meta.get(key)
        return default if value is None else value


def load_gguf(path: Path) -> ImportedModel:
    """Read a llama-architecture GGUF file lazily: metadata now, tensor data on each loader call."""
    g = _GGUF(Path(path))
    arch = g.get("general.architecture")
    if arch != "llama":
        raise UnsupportedModelError(
            f"{g.src}: GGUF architecture {arch!r} is not supported (supported: 'llama', which covers "
            "Llama, SmolLM, TinyLlama and Mistral-style files)"
        )
    hf_config = _hf_config(g)
    config = normalize_hf_config(hf_config, src=g.src)
    tensors = _tensor_loaders(g, hf_config)
    tokenizer_json, tokenizer_config = build_tokenizer(g)
    generation_config = {k: hf_config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in hf_config}
    return ImportedModel(
        config=config,
        tensors=tensors,
        tokenizer_json=tokenizer_json,
        tokenizer_config=tokenizer_config,
        generation_config=generation_config,
        source=g.src,
    )


def load_gguf_tokenizer(path: Path) -> tuple[str, dict[str, Any]]:
    """Only the tokenizer of a GGUF file (any architecture, vocab-only files too).

    Returns (tokenizer.json text, tokenizer_config dict with chat_template and special tokens).
    """
    return build_tokenizer(_GGUF(Path(path)))


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------

# Llama 3.1+ GGUFs carry rope scaling as a tensor of per-frequency divisors ("rope_freqs.weight")
# computed by llama.cpp's converter; these are the parameters every Llama 3.x release uses.
_LLAMA3_ROPE_DEFAULTS = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def _hf_config(g: _GGUF) -> dict[str, Any]:
    """The HF LlamaForCausalLM config.json dict that this file's metadata describes."""

    def need(key: str) -> Any:
        value = g.get(f"llama.{key}")
        if value is None:
            raise InputError(f"{g.src}: metadata 'llama.{key}' is missing")
        return value

    if int(g.get("llama.expert_count", 0)) > 0:
        raise UnsupportedModelError(f"{g.src}: mixture-of-experts models (llama.expert_count > 0) are not supported")
    hidden = int(need("embedding_length"))
    heads = int(need("attention.head_count"))
    kv_heads = int(g.get("llama.attention.head_count_kv", heads))
    # llama.cpp's llama requires rotary dims == head dims, so either key names the head size.
    head_dim = int(g.get("llama.attention.key_length") or g.get("llama.rope.dimension_count") or hidden // heads)
    if int(g.get("llama.attention.value_length", head_dim)) != head_dim:
        raise UnsupportedModelError(f"{g.src}: attention value_length != key_length is not supported")
    embed = g.tensors.get("token_embd.weight")
    if embed is None or len(embed.shape) != 2:
        raise InputError(f"{g.src}: tensor 'token_embd.weight' is missing (a vocabulary-only file?)")
    cfg: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": hidden,
        "intermediate_size": int(need("feed_forward_length")),
        "num_hidden_layers": int(need("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": _f32(g.get("llama.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": _f32(g.get("llama.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(g.get("llama.context_length", 2048)),
        # The embedding's row count is the truth (GGML order: [hidden, vocab]); llama.vocab_size is often absent.
        "vocab_size": int(embed.shape[1]),
        "tie_word_embeddings": "output.weight" not in g.tensors,
        "attention_bias": "blk.0.attn_q.bias" in g.tensors,
        "mlp_bias": "blk.0.ffn_up.bias" in g.tensors,
    }
    rot = int(g.get("llama.rope.dimension_count", head_dim))
    if rot != head_dim:
        cfg["partial_rotary_factor"] = rot / head_dim  # normalize_hf_config explains the refusal
    scaling = _rope_scaling(g, head_dim, cfg["rope_theta"])
    if scaling is not None:
        cfg["rope_scaling"] = scaling
    for name, key in (("bos_token_id", "bos_token_id"), ("pad_token_id", "padding_token_id")):
        if g.get(f"tokenizer.ggml.{key}") is not None:
            cfg[name] = int(g.get(f"tokenizer.ggml.{key}"))
    # llama.cpp stops on any end-of-generation token: eos, and eot / eom where the file names them.
    eos = [int(g.get(f"tokenizer.ggml.{k}")) for k in ("eos_token_id", "eot_token_id", "eom_token_id")
           if g.get(f"tokenizer.ggml.{k}") is not None]
    if eos:
        cfg["eos_token_id"] = list(dict.fromkeys(eos))
    return cfg


def _f32(x: float) -> float:
    """A float32 metadata value written as its shortest decimal (1e-05, not 9.999999747378752e-06)."""
    return float(str(np.float32(x)))


def _rope_scaling(g: _GGUF, head_dim: int, theta: float) -> dict[str, Any] | None:
    """rope_scaling from llama.rope.scaling.* metadata or from a Llama 3 rope_freqs tensor."""
    kind = g.get("llama.rope.scaling.type")
    if kind not in (None, "none"):
        scaling: dict[str, Any] = {"rope_type": kind, "factor": _f32(g.get("llama.rope.scaling.factor", 1.0))}
        if g.get("llama.rope.scaling.original_context_length") is not None:
            scaling["original_max_position_embeddings"] = int(g.get("llama.rope.scaling.original_context_length"))
        return scaling
    t = g.tensors.get("rope_freqs.weight")
    if t is None:
        return None
    divisors = np.asarray(t.data, dtype=np.float32).reshape(-1)
    factor = _f32(divisors.max())
    scaling = {"rope_type": "llama3", "factor": factor, **_LLAMA3_ROPE_DEFAULTS}
    if divisors.size != head_dim // 2 or not np.allclose(divisors, _llama3_divisors(head_dim, theta, scaling), rtol=1e-3):
        raise UnsupportedModelError(
            f"{g.src}: tensor 'rope_freqs.weight' does not match Llama 3 rope scaling "
            f"(factor {factor:g}, low 1, high 4, original context 8192); other rope frequency tables are not supported"
        )
    return scaling


def _llama3_divisors(head_dim: int, theta: float, s: dict[str, Any]) -> np.ndarray:
    """The per-frequency divisors llama.cpp's converter writes for Llama 3 rope scaling."""
    freqs = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    wavelen = 2 * np.pi / freqs
    old = s["original_max_position_embeddings"]
    lo, hi, factor = s["low_freq_factor"], s["high_freq_factor"], s["factor"]
    smooth = (old / wavelen - lo) / (hi - lo)
    mid = 1.0 / ((1 - smooth) / factor + smooth)
    return np.where(wavelen < old / hi, 1.0, np.where(wavelen > old / lo, factor, mid))


# ----------------------------------------------------------------------------------------------
# Tensors
# ----------------------------------------------------------------------------------------------

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_LAYER_RE = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)$")

# Block formats the kernels run natively, and those we dequantize for the compiler to requantize.
_REPACKED = ("Q4_0", "Q4_1", "Q8_0")
_DEQUANTIZED = ("Q4_K", "Q5_K", "Q6_K", "Q2_K", "Q3_K", "Q5_0", "Q5_1")


def _tensor_loaders(g: _GGUF, cfg: dict[str, Any]) -> dict[str, Callable[[], np.ndarray | PackedWeight]]:
    """HF name -> lazy loader for every tensor, after checking names, shapes and types."""
    from gguf import GGMLQuantizationType as T

    allowed = _allowed_shapes(cfg)
    loaders: dict[str, Callable[[], np.ndarray | PackedWeight]] = {}
    for name, t in g.tensors.items():
        if name == "rope_freqs.weight":  # already folded into rope_scaling
            continue
        hf = _hf_name(name)
        if hf not in allowed:
            raise UnsupportedModelError(f"{g.src}: tensor '{name}' has no place in a Llama model (not supported)")
        shape = tuple(int(d) for d in reversed(t.shape))  # GGML lists dimensions innermost first
        if shape != allowed[hf]:
            raise InputError(f"{g.src}: tensor '{name}' has shape {list(shape)}, the metadata implies {list(allowed[hf])}")
        kind = T(t.tensor_type).name
        if kind not in ("F32", "F16", "BF16", *_REPACKED, *_DEQUANTIZED):
            raise UnsupportedModelError(
                f"{g.src}: tensor '{name}' has type {kind}, which is not supported "
                f"(supported: F32, F16, BF16, {', '.join(_REPACKED + _DEQUANTIZED)})"
            )
        # llama.cpp permuted the rows of Q and K per head; the head count undoes it.
        heads = {".attn_q.": cfg["num_attention_heads"], ".attn_k.": cfg["num_key_value_heads"]}
        loaders[hf] = _loader(t, kind, next((n for key, n in heads.items() if key in name), None))
    missing = [n for n in _required_names(cfg) if n not in loaders]
    if missing:
        raise InputError(f"{g.src}: tensor(s) missing: {', '.join(missing[:5])}")
    return loaders


def _hf_name(name: str) -> str | None:
    """HF Llama name of a GGUF tensor name, or None when it has none."""
    if name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[name]
    m = _LAYER_RE.match(name)
    if m and m.group(2) in _LAYER_NAMES:
        layer, part, kind = m.groups()
        return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{kind}"
    return None


def _allowed_shapes(cfg: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """HF name -> HF shape of every tensor a Llama with this config may have (biases included)."""
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    q, kv = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (v, h), "lm_head.weight": (v, h), "model.norm.weight": (h,),
    }
    linear = {"self_attn.q_proj": (q, h), "self_attn.k_proj": (kv, h), "self_attn.v_proj": (kv, h), "self_attn.o_proj": (h, q),
              "mlp.gate_proj": (i, h), "mlp.up_proj": (i, h), "mlp.down_proj": (h, i)}
    for layer in range(cfg["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        shapes[prefix + "input_layernorm.weight"] = shapes[prefix + "post_attention_layernorm.weight"] = (h,)
        for name, (rows, cols) in linear.items():
            shapes[f"{prefix}{name}.weight"], shapes[f"{prefix}{name}.bias"] = (rows, cols), (rows,)
    return shapes


def _required_names(cfg: dict[str, Any]) -> list[str]:
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    if not cfg["tie_word_embeddings"]:
        names.append("lm_head.weight")
    for i in range(cfg["num_hidden_layers"]):
        names += [f"model.layers.{i}.{hf}.weight" for hf in _LAYER_NAMES.values()]
        if cfg["attention_bias"]:
            names += [f"model.layers.{i}.self_attn.{p}_proj.bias" for p in "qkvo"]
        if cfg["mlp_bias"]:
            names += [f"model.layers.{i}.mlp.{p}_proj.bias" for p in ("gate", "up", "down")]
    return names


def _loader(t: Any, kind: str, heads: int | None) -> Callable[[], np.ndarray | PackedWeight]:
    """A zero-argument loader for one reader tensor (reads the memmap only when called)."""

    def load() -> np.ndarray | PackedWeight:
        data = t.data  # memmap view: [rows, cols] for float types, [rows, bytes per row] for blocks
        if heads is not None:
            data = unpermute_rows(np.asarray(data), heads)
        if kind in _REPACKED and data.ndim == 2:  # vectors (norms, biases) are only ever wanted as floats
            return _repack(data, kind)
        return _to_float(data, kind, t.tensor_type)

    return load


def unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation; `w` is [n_head * head_dim, ...] (floats or block bytes).

    llama.cpp's converter interleaves each head's two rotary halves (GGUF row h*d + 2i + j holds HF
    row h*d + j*d/2 + i, for d = head_dim) so that its rope rotates adjacent pairs. Blocks never
    straddle rows, so the same row shuffle applies to raw quantized rows before repacking.
    """
    rows = w.shape[0]
    half = rows // n_head // 2
    return np.ascontiguousarray(w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def _to_float(data: np.ndarray, kind: str, qtype: Any) -> np.ndarray:
    if kind == "F32":
        return np.array(data, dtype=np.float32)
    if kind == "F16":
        return np.asarray(data).astype(np.float32)
    if kind == "BF16":  # bf16 is the top half of an f32
        bits = np.ascontiguousarray(data).view(np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32)
    from gguf.quants import dequantize

    return np.ascontiguousarray(dequantize(np.asarray(data), qtype), dtype=np.float32)


def _repack(data: np.ndarray, kind: str) -> PackedWeight:
    """GGUF Q4_0 / Q4_1 / Q8_0 rows ([N, bytes per row]) -> q4s / q4a / q8s, bit-exact."""
    block_bytes = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34}[kind]
    n = data.shape[0]
    blocks = np.ascontiguousarray(data).reshape(n, -1, block_bytes)
    k = blocks.shape[1] * GROUP

    def f16(lo: int) -> np.ndarray:  # [N, K/32] scale stored at bytes lo..lo+1 of each block
        return np.ascontiguousarray(blocks[:, :, lo : lo + 2]).view(np.float16)[:, :, 0]

    if kind == "Q8_0":
        q = np.ascontiguousarray(blocks[:, :, 2:]).view(np.int8)
        return pack_q8s(q.reshape(n, k), f16(0))
    qs = blocks[:, :, block_bytes - 16 :]
    # Byte j of a block holds element j (low nibble) and element j + 16 (high nibble).
    q = np.concatenate([qs & 0xF, qs >> 4], axis=2).reshape(n, k)
    if kind == "Q4_0":
        return pack_q4s(q, f16(0))
    return pack_q4a(q, f16(0), f16(2))
