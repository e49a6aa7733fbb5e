"""GGUF importer: a llama.cpp model file -> ImportedModel (config, lazy tensors, tokenizer).

A GGUF holds three things we need, each in llama.cpp's own conventions:

- hyper-parameters as metadata ("llama.embedding_length", ...), turned here into a Hugging Face
  config dict and validated by `normalize_hf_config`;
- tensors under llama.cpp names ("blk.3.attn_q.weight"), with the rows of Q and K permuted for
  llama.cpp's rope layout; we rename them to HF Llama names and undo the permutation, so the
  compiler sees exactly what a Hugging Face checkpoint would give it. Q4_0 / Q4_1 / Q8_0 blocks are
  repacked losslessly into our q4s / q4a / q8s formats; k-quants and the other block formats are
  dequantized to float32 (the compiler requantizes them);
- the tokenizer as vocabulary, merges or scores, token types and a pre-tokenizer name; we rebuild
  a Hugging Face `tokenizers` tokenizer.json that splits text the way llama.cpp does
  (src/llama-vocab.cpp), so both runtimes give llama.cpp's token ids.
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
    tokenizer_json, tokenizer_config = _build_tokenizer(g)
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
    return _build_tokenizer(_GGUF(Path(path)))


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


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------

# llama.cpp's pre-tokenizer splits (src/llama-vocab.cpp), by tokenizer.ggml.pre. llama.cpp applies
# the expressions in turn, each splitting every piece the previous one left, and keeps the text
# between matches as pieces too: exactly a sequence of `Split(behavior="isolated")`.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_LLAMA3 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN2 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN35 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
# DeepSeek's classes, as llama.cpp spells them (escaped: some letters have look-alike code points).
_CJK = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
_DEEPSEEK_LETTERS = r"\s?[A-Za-z" + (
    "\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373"
    "\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481"
    "\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf"
    "\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d"
    "\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4"
    "\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
    "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f"
    "\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d"
    "\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17"
    "\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb"
    "\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+"
)
_DEEPSEEK_PUNCT = r"\s?[!-/:-~" + "\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+"
# Tekken and GPT-4o: the expressions of the models' own tokenizer.json (Oniguruma, which HF
# tokenizers uses, has the \p{Lu}... classes that llama.cpp has to emulate). Contractions are
# spelled without (?i:...) everywhere, so JavaScript's RegExp can run the same expressions.
_UPPER, _LOWER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
_TEKKEN = (
    rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O = (
    rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+{_CONTRACTIONS}?|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*{_CONTRACTIONS}?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# name -> (split expressions, ignore_merges, add_bos by default); aliases as llama.cpp groups them.
_PRE: dict[str, tuple[list[str], bool, bool]] = {}
for _names, _spec in (
    (("default",), ([r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"], False, False)),
    (("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"),
     ([_LLAMA3], True, True)),
    (("dbrx", "smaug-bpe"), ([_LLAMA3], False, False)),
    (("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open"),
     ([_QWEN2], False, False)),
    (("gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
      "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais", "trillion",
      "granite-docling", "exaone4"), ([_GPT2], False, False)),
    (("starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"),
     ([r"\p{N}", _GPT2], False, False)),
    (("falcon",), ([r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, r"[0-9][0-9][0-9]"], False, False)),
    (("qwen35",), ([_QWEN35], False, False)),
    (("chatglm-bpe",), ([_LLAMA3], False, False)),
    (("deepseek-coder",), ([r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK, r"\p{N}"], False, False)),
    (("deepseek-llm",), ([r"[\r\n]", _DEEPSEEK_LETTERS, _DEEPSEEK_PUNCT, r"\s+$", _CJK, r"\p{N}+"], False, False)),
    (("tekken",), ([_TEKKEN], True, True)),
    (("gpt-4o", "llama4", "kanana2", "talkie"), ([_GPT4O], False, False)),
):
    for _name in _names:
        _PRE[_name] = _spec

# GGUF token types (gguf.TokenType) that llama.cpp matches whole in the text.
_UNKNOWN, _CONTROL, _USER_DEFINED = 2, 3, 4


def _build_tokenizer(g: _GGUF) -> tuple[str, dict[str, Any]]:
    """tokenizer.json text and tokenizer_config for the vocabulary this file describes."""
    model = g.get("tokenizer.ggml.model")
    tokens: list[str] = list(g.get("tokenizer.ggml.tokens", []))
    if not tokens:
        raise InputError(f"{g.src}: the file has no tokenizer (metadata 'tokenizer.ggml.tokens' is missing)")
    # llama.cpp renames empty tokens the same way, and refuses a vocabulary that lists a text twice.
    tokens = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
    if len(set(tokens)) != len(tokens):
        raise InputError(f"{g.src}: the vocabulary lists the same token text twice")
    types = list(g.get("tokenizer.ggml.token_type", [1] * len(tokens)))
    scores = list(g.get("tokenizer.ggml.scores", [0.0] * len(tokens)))
    if len(types) < len(tokens) or len(scores) < len(tokens):
        raise InputError(f"{g.src}: tokenizer.ggml.token_type or .scores is shorter than the vocabulary")
    special_keys = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id", "pad": "padding_token_id"}
    special = {name: g.get(f"tokenizer.ggml.{key}") for name, key in special_keys.items()}

    if model == "gpt2":
        pre = g.get("tokenizer.ggml.pre") or "default"
        if pre not in _PRE:
            raise UnsupportedModelError(
                f"{g.src}: GGUF pre-tokenizer {pre!r} is not supported (supported: {', '.join(sorted(_PRE))})"
            )
        merges = list(g.get("tokenizer.ggml.merges", []))
        if not merges:
            raise InputError(f"{g.src}: byte-level BPE tokenizer without 'tokenizer.ggml.merges'")
        splits, ignore_merges, add_bos = _PRE[pre]
        tok = _byte_level_bpe(tokens, merges, splits, ignore_merges)
        add_eos = False
    elif model == "llama":
        # llama.cpp's defaults for SentencePiece vocabularies that do not name their specials.
        special = {"bos": 1, "eos": 2, "unk": 0} | {k: v for k, v in special.items() if v is not None}
        tok = _sentencepiece_bpe(tokens, scores, int(special["unk"]), bool(g.get("tokenizer.ggml.add_space_prefix", True)))
        add_bos, add_eos = True, False
    else:
        raise UnsupportedModelError(
            f"{g.src}: GGUF tokenizer model {model!r} is not supported (supported: 'gpt2' byte-level BPE, "
            "'llama' SentencePiece)"
        )
    add_bos = bool(g.get("tokenizer.ggml.add_bos_token", add_bos))
    add_eos = bool(g.get("tokenizer.ggml.add_eos_token", add_eos))

    _add_special_tokens(tok, tokens, types)
    special = {k: int(v) for k, v in special.items() if v is not None and 0 <= int(v) < len(tokens)}
    _set_post_processor(tok, tokens, special, add_bos, add_eos, g.src)

    tokenizer_config: dict[str, Any] = {"add_bos_token": add_bos, "add_eos_token": add_eos}
    for name, token_id in special.items():
        tokenizer_config[f"{name}_token"] = tokens[token_id]
    if g.get("tokenizer.chat_template") is not None:
        tokenizer_config["chat_template"] = g.get("tokenizer.chat_template")
    return tok.to_str(), tokenizer_config


def _byte_level_bpe(tokens: list[str], merges: list[str], splits: list[str], ignore_merges: bool) -> Any:
    """GPT-2 style BPE: the vocabulary is already spelled in the byte-to-unicode alphabet."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = []
    for m in merges:
        # llama.cpp splits at the first space after the first character (a token may start with one).
        pos = m.find(" ", 1)
        if pos > 0:
            pairs.append((m[:pos], m[pos + 1 :]))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in splits]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def _sentencepiece_bpe(tokens: list[str], scores: list[float], unk_id: int, add_space_prefix: bool) -> Any:
    """SentencePiece BPE as llama.cpp runs it: spaces become '▁', a '▁' is prepended to each stretch
    of text, pieces merge best score first, and characters outside the vocabulary fall back to
    <0xXX> byte tokens.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers

    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(
        vocab=vocab, merges=_merges_from_scores(tokens, scores, vocab),
        unk_token=tokens[unk_id] if 0 <= unk_id < len(tokens) else None, fuse_unk=True, byte_fallback=True,
    ))
    # Normalizers run on each stretch of text between special tokens, as llama.cpp's prefix does.
    steps = [normalizers.Prepend("▁")] if add_space_prefix else []
    tok.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        + ([decoders.Strip(" ", 1, 0)] if add_space_prefix else [])
    )
    return tok


def _merges_from_scores(tokens: list[str], scores: list[float], vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges equivalent to llama.cpp's SentencePiece loop.

    llama.cpp repeatedly joins the adjacent pair whose concatenation is the vocabulary token with
    the highest score. As BPE merges: every split of a token into two vocabulary tokens, ranked by
    the joined token's score (best first).
    """
    ranked = []
    for i, t in enumerate(tokens):
        for k in range(1, len(t)):
            left, right = t[:k], t[k:]
            if left in vocab and right in vocab:
                ranked.append((-scores[i], i, k, left, right))
    ranked.sort(key=lambda r: r[:3])
    return [(left, right) for *_, left, right in ranked]


def _add_special_tokens(tok: Any, tokens: list[str], types: list[int]) -> None:
    """Control and unknown tokens become special added tokens, user-defined ones plain added tokens.

    llama.cpp matches all three whole in the raw text before splitting it (user-defined ones even
    when not parsing specials), which is what added tokens do; llama.cpp's detokenizer drops control
    tokens but prints user-defined ones ("<think>"), hence special=False for those.
    """
    from tokenizers import AddedToken

    added = [
        AddedToken(t, special=ty != _USER_DEFINED, normalized=False)
        for t, ty in zip(tokens, types[: len(tokens)], strict=True) if ty in (_CONTROL, _UNKNOWN, _USER_DEFINED)
    ]
    if added:
        tok.add_tokens(added)  # ids come from the model's vocabulary, where each token already is


def _set_post_processor(tok: Any, tokens: list[str], special: dict[str, int], add_bos: bool, add_eos: bool,
                        src: str) -> None:
    """BOS / EOS around each sequence, as tokenizer.ggml.add_bos_token / add_eos_token ask."""
    from tokenizers import processors

    before, after = [], []
    for flag, name, side in ((add_bos, "bos", before), (add_eos, "eos", after)):
        if flag:
            if name not in special:
                raise InputError(f"{src}: the tokenizer adds a {name.upper()} token but the file names none")
            side.append(tokens[special[name]])
    used = [(tokens[special[n]], special[n]) for n, flag in (("bos", add_bos), ("eos", add_eos)) if flag]
    tok.post_processor = processors.TemplateProcessing(
        single=[*before, "$A", *after], pair=[*before, "$A", *after, *before, "$B:1", *after], special_tokens=used
    )
