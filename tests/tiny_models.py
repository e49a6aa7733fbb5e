"""Tiny random-weight Hugging Face checkpoints for reference tests.

A `Spec` names one architecture variant; `make_checkpoint` builds it with transformers' own config
and model classes, re-initializes every parameter with a wide distribution (see `randomize_`), and
writes a complete checkpoint folder (config.json, model.safetensors, tokenizer.json). The returned
torch model is the reference the compiled package is compared with.
"""

from __future__ import annotations

import copy
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from webllm.quantization.formats import dequantize
from webllm.quantization.quantize import get_mode, quantize_matrix


@dataclass(frozen=True)
class Spec:
    """One tiny model. Field names follow the HF config; `arch` picks the config/model classes."""

    name: str
    arch: str = "llama"  # "llama", "mistral", "qwen2"
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    vocab_size: int = 301
    tie_word_embeddings: bool = False
    rope_parameters: dict | None = None  # None: default rope, theta 10000
    attention_bias: bool = False
    mlp_bias: bool = False
    sliding_window: int | None = None  # mistral only
    max_position_embeddings: int = 1024
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:  # pytest ids
        return self.name

    @property
    def gqa(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads


# o (4,096 inputs: 32 heads of 128) over 128 rows: with int8 x, 2 rows a row set, whose 4,096 / 32
# groups want 128 threads each, 512 a workgroup of 8 rows in the "w" decode variants
# (webllm.kernels.gemv_threads); gate_up's 8,448 outputs in 264 workgroups of 32 rows there
# (lower.pair_lanes), and down's 8,448 int8 inputs 4 rows a row set: the smallest shapes that get them
WIDE_DECODE = Spec("wide_decode", hidden_size=128, intermediate_size=8448, num_hidden_layers=1, num_attention_heads=32,
                   num_key_value_heads=4, head_dim=128, seed=11)


def _classes(arch: str):
    if arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        return LlamaConfig, LlamaForCausalLM
    if arch == "mistral":
        from transformers import MistralConfig, MistralForCausalLM

        return MistralConfig, MistralForCausalLM
    if arch == "qwen2":
        from transformers import Qwen2Config, Qwen2ForCausalLM

        return Qwen2Config, Qwen2ForCausalLM
    raise ValueError(arch)


def hf_config(spec: Spec):
    config_cls, _ = _classes(spec.arch)
    kw = dict(
        vocab_size=spec.vocab_size, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads, max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings, rms_norm_eps=1e-5,
        # No special tokens: greedy generation in transformers must never stop early on an "eos".
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    if spec.head_dim is not None:
        kw["head_dim"] = spec.head_dim
    if spec.rope_parameters is not None:
        kw["rope_parameters"] = dict(spec.rope_parameters)
    if spec.arch == "llama":
        kw.update(attention_bias=spec.attention_bias, mlp_bias=spec.mlp_bias)
    if spec.arch == "mistral":
        kw["sliding_window"] = spec.sliding_window
    kw.update(spec.extra)
    return config_cls(**kw)


def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Re-initialize every parameter so that logits are far from uniform.

    HF's default (normal, std 0.02; biases 0; norms 1) gives logits of ~0.5 over a few hundred
    tokens: almost uniform, so a kernel bug would hide below the noise of any relative tolerance.
    Here matrices get std = 1.6 / sqrt(fan_in) clipped to [0.1, 0.3] (each matmul output has std ~1.6
    whatever the width, so attention is neither uniform nor one-hot), biases std 0.2 (nonzero, so a
    dropped or misplaced bias shows), RMSNorm weights uniform in [0.8, 1.2] (a dropped or swapped norm
    weight shows). Max |logits| ends up ~4-10.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(0.8 + 0.4 * torch.rand(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                std = min(0.3, max(0.1, 1.6 / math.sqrt(p.shape[-1])))
                p.copy_(std * torch.randn(p.shape, generator=g))


def write_tokenizer(folder: Path, vocab_size: int) -> None:
    """A word-level tokenizer.json over tokens "t0" .. "t{vocab-1}" (ids equal the numbers)."""
    vocab = {f"t{i}": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))


def make_checkpoint(spec: Spec, folder: Path) -> torch.nn.Module:
    """Write spec's checkpoint to `folder` (fp32 safetensors); return the fp32 eval-mode HF model."""
    _, model_cls = _classes(spec.arch)
    torch.manual_seed(spec.seed)
    model = model_cls(hf_config(spec)).float().eval()
    randomize_(model, spec.seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    write_tokenizer(folder, spec.vocab_size)
    return model


# Matrices the package stores in the quantization mode's format; everything else (norms, biases) is f32.
_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def quantized_weight_names(model: torch.nn.Module) -> list[str]:
    """HF names of the matrices the package quantizes: every linear weight, the embedding, lm_head."""
    names = ["model.embed_tokens.weight"]
    if not model.config.tie_word_embeddings:
        names.append("lm_head.weight")
    for name, _ in model.named_parameters():
        if name.endswith(".weight") and name.split(".")[-2] in _LINEARS:
            names.append(name)
    return names


def dequantized_copy(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """A copy of `model` whose quantized matrices hold exactly the values the package's kernels compute
    with: dequantize(quantize_matrix(W)). (The package quantizes fused [Wq; Wk; Wv] and [Wg; Wu];
    since every format works per row, or per row and group of 32, quantizing each part alone gives the
    same values; test_reference pins that against the package's bytes.)"""
    m = get_mode(mode)
    out = copy.deepcopy(model)
    params = dict(out.named_parameters())
    with torch.no_grad():
        for name in quantized_weight_names(out):
            p = params[name]
            w = dequantize(quantize_matrix(p.detach().numpy(), m, name))
            p.copy_(torch.from_numpy(np.ascontiguousarray(w)))
    return out


def kv_cache_rows(x: np.ndarray) -> np.ndarray:
    """K or V [positions, kv_heads, head_dim] f16 as the package's cache holds it (kernels/wgsl/rope_store.wgsl):
    word i of a row is the pair (dim i, dim i + head_dim / 2)."""
    h = x.shape[-1] // 2
    return np.ascontiguousarray(np.stack([x[..., :h], x[..., h:]], axis=-1).astype(np.float16))


def round_kv_cache_f16() -> None:
    """Make transformers' attention (the sdpa implementation, every tiny model's and the GGUF
    references') see K (after rope) and V rounded to f16, as the packages store them in both profiles
    (kernels/wgsl/rope_store.wgsl): the f32 profile then matches within float rounding, as before it
    kept its cache in f32. For the whole test session (conftest calls it once)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import AttentionInterface

    def attention(module, query, key, value, *args, **kwargs):
        return sdpa_attention_forward(module, query, key.to(torch.float16).to(key.dtype),
                                      value.to(torch.float16).to(value.dtype), *args, **kwargs)

    AttentionInterface._global_mapping["sdpa"] = attention


def int8_decode_inputs(model: torch.nn.Module, mode: str, first: int):
    """Hooks that make `model` round the inputs of the matmuls that a compiled package's decode steps
    feed int8 blocks (webllm.compiler.lower.int8_edges, kernels gemv_q8_out.wgsl) as the kernels do,
    for the tokens from position `first` on (the decode steps; prefill stays in float): q, k and v of
    every layer but the first (the first normalizes the embedding itself), o (attention's output, which
    the o matmul combines from the splits' partials and stages so), gate, up and down of every layer,
    and the output head (the last down writes the final norm's x); only where the weights are q4s (the
    q4 modes, which quantize the head, tied or not). Each block of 8 inputs v becomes d q with
    d = max|v| / 127 and q = round(v * (127 / max|v|)), computed in f32. Returns the hook handles
    (remove them after the forward)."""
    if get_mode(mode).weight_format != "q4s":
        return []
    handles = []
    for i, layer in enumerate(model.model.layers):
        mods = [layer.self_attn.o_proj, layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj]
        if i > 0:
            mods += [layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]
        handles += [m.register_forward_pre_hook(_int8_blocks_hook(first, 8)) for m in mods]
    handles.append(model.lm_head.register_forward_pre_hook(_int8_blocks_hook(first, 8)))
    return handles


def int8_prefill_inputs(model: torch.nn.Module, mode: str | None, head: bool = False, end: int | None = None):
    """Hooks that make `model` round the inputs of the matmuls that a package's "q8" prefill variant
    multiplies as int8 blocks of 32 (kernels quant_q8.wgsl, matmul_q8.wgsl), at every position: q, k,
    v, o, gate, up and down of every layer where the weights are q4s (the q4 modes; mode None: a GGUF
    whose layers all hold Q4_0, Q4_1 or Q8_0 blocks), and with `head`
    (the score phase, whose head is a prefill matmul too) the output head; positions before `end` (the
    prompt, where decode steps follow; None: all). Each block of 32 inputs v
    becomes d q with d = max|v| / 127 and q = round(v * (127 / max|v|)), computed in f32. Returns the
    hook handles."""
    if mode is not None and get_mode(mode).weight_format != "q4s":
        return []
    mods = [m for layer in model.model.layers for m in (
        layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.self_attn.o_proj,
        layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj)]
    if head:
        mods.append(model.lm_head)
    return [m.register_forward_pre_hook(_int8_blocks_hook(0, 32, end)) for m in mods]


def _int8_blocks_hook(first: int, block: int, end: int | None = None):
    """A forward pre-hook rounding its module's input at positions first .. end - 1 (end None: all from
    first on) to int8 blocks of `block`."""
    def hook(_module, args):
        x = args[0]
        stop = x.shape[1] if end is None else min(end, x.shape[1])
        v = x[:, first:stop].to(torch.float32)
        blocks = v.reshape(*v.shape[:-1], -1, block)
        amax = blocks.abs().amax(-1, keepdim=True)
        inv = torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax))
        q = torch.round(blocks * inv)
        deq = (q * (amax / 127.0)).reshape(v.shape).to(x.dtype)
        return (torch.cat([x[:, :first], deq, x[:, stop:]], 1), *args[1:])
    return hook


# Tolerances on max |ours - transformers| / max |transformers logits|, transformers running the
# package's (dequantized) weights, so only kernel and runtime arithmetic is measured. For scale, bugs
# injected on purpose give: qkv bias x0.9 -> 6e-2, sliding window off by one -> 3e-1, rope_theta
# off by 0.1% -> 2e-2 (both profiles); RMSNorm eps 1e-6 instead of 1e-5 -> 4e-4 (f32 profile).
#
# f32 profile (f32 weights, activations and accumulation; the KV cache in f16, as in the f16 profile,
# with transformers rounding K and V the same way: round_kv_cache_f16): differs from torch in
# summation order, exp/rsqrt ulps and the rope angles (the compiler's f32 inv_freq, numpy/glibc powf,
# and torch's differ by one ulp on some frequencies: ~2e-5 rad near position 300), and then in the
# f16 rounding of K and V: an element within that float noise of a rounding boundary rounds the other
# way on one side, and one such flip moves these models' logits by up to ~1e-4 (llama_hd128, one
# token: 1.07e-4 from its V alone). Measured: <= 3.9e-4 over test_reference (<= 1.3e-5 while the
# cache was f32). 1e-3 keeps 2.5x headroom; the injected bugs above but the eps one stay far beyond it
# (the norm kernels are checked exactly at kernel level, tests/test_gemv.py).
TOL_F32 = 1e-3
# Both profiles keep the KV cache in f16, and transformers rounds K and V so too (round_kv_cache_f16).
# f16 profile: activations between kernels (qkv, q, attention output, MLP hidden) are
# stored as f16 (unit roundoff u = 2^-11 = 4.9e-4); accumulation, norms, logits and the residual
# stream stay f32. Measured: 1-2u after a 1-token prefill, <= 7u after 300 tokens, 14u (6.9e-3) at
# worst over 16 decode steps after 300 tokens on the 4-layer model (q4f16_1; q0f16 6.0e-3). 32u
# (1.6e-2) leaves 2x headroom and still catches the bias, window and rope bugs above.
TOL_F16 = 32 * 2.0**-11

# Decode with int8 inputs (q4 modes: the matmuls that int8_decode_inputs names read blocks of 8 inputs
# rounded to 1/254 of the block's largest), against transformers doing the same rounding: the kernels'
# integer dot products are exact (tests/test_gemv.py), but an input that lies within float rounding of a
# half step rounds the other way on one side (on the GPU the block is h * weight before the norm's
# scalar, in torch after it; in the f16 profile the stored activations move inputs by 2^-11, so far more
# of them flip). Measured over the q4 cases (o's input included): 1.8e-2 in the f32 profile, 3.5e-2 in
# f16. The float variants of the same packages keep TOL_F32 / TOL_F16.
TOL_INT8 = {"f32": 3e-2, "f16": 6e-2}

# Largest error seen per (mode, profile), relative to max|reference logits|; printed after the run so
# CI logs show how much headroom each tolerance has.
MEASURED: dict[tuple[str, str], float] = defaultdict(float)


def llama_from_gguf(path: Path) -> torch.nn.Module:
    """transformers' Llama from a GGUF file (torch, CPU, eval), its blocks dequantized to fp32 by
    transformers' own GGUF reader: the reference for packages compiled from that file."""
    from transformers import AutoConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    cfg = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    with torch.device("meta"):
        skeleton = LlamaForCausalLM(cfg)
    state = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=skeleton)["tensors"]
    model = LlamaForCausalLM(cfg).eval()
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    model.tie_weights()
    return model


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| / max |ref| (over the last axis and any leading ones)."""
    return float(np.abs(np.asarray(got, np.float64) - ref).max() / np.abs(ref).max())


def record(mode: str, profile: str, err: float) -> None:
    MEASURED[(mode, profile)] = max(MEASURED[(mode, profile)], err)


def prompt_ids(spec: Spec, n: int = 300) -> np.ndarray:
    """A fixed random prompt for `spec` (random ids: every embedding row range is exercised)."""
    return np.random.RandomState(1000 + spec.seed).randint(0, spec.vocab_size, size=n)


def read_tensor(package: Path, name: str) -> np.ndarray:
    """The raw bytes (uint8) of a package tensor, gathered from the shards' upload lists."""
    manifest = json.loads((package / "manifest.json").read_text())
    out = bytearray(manifest["tensors"][name]["nbytes"])
    for shard in manifest["shards"]:
        for tensor, tensor_off, shard_off, n in shard["uploads"]:
            if tensor == name:
                with open(package / shard["file"], "rb") as f:
                    f.seek(shard_off)
                    out[tensor_off : tensor_off + n] = f.read(n)
    return np.frombuffer(bytes(out), np.uint8)
