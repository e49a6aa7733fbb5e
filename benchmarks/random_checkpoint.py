"""Write a random-weight Hugging Face checkpoint of a real model's shape (for speed measurements).

    python benchmarks/random_checkpoint.py llama-3.2-1b /tmp/ckpt

Weights are normal(0, 0.02) in f16, made with numpy (fast even for 8B), plus a word-level
tokenizer.json of the model's vocabulary size. Shapes are the public configs of those models.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SHAPES = {
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True),
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=False),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, head_dim=64, vocab_size=49152, tie_word_embeddings=True),
}


def write(shape: str, out: Path, seed: int = 0, layers: int | None = None) -> None:
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers

    s = dict(SHAPES[shape])
    if layers is not None:  # fewer layers of the same shape: per-layer timings at a fraction of the build time
        s["num_hidden_layers"] = layers
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
           "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 8192,
           "bos_token_id": 0, "eos_token_id": 1, **s}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    rng = np.random.default_rng(seed)
    h, i, hd = s["hidden_size"], s["intermediate_size"], s["head_dim"]
    nq, nkv = s["num_attention_heads"], s["num_key_value_heads"]

    def w(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)

    tensors = {"model.embed_tokens.weight": w(s["vocab_size"], h), "model.norm.weight": np.ones(h, np.float16)}
    if not s["tie_word_embeddings"]:
        tensors["lm_head.weight"] = w(s["vocab_size"], h)
    save_file(tensors, str(out / "model-embed.safetensors"))
    for layer in range(s["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        t = {p + "self_attn.q_proj.weight": w(nq * hd, h), p + "self_attn.k_proj.weight": w(nkv * hd, h),
             p + "self_attn.v_proj.weight": w(nkv * hd, h), p + "self_attn.o_proj.weight": w(h, nq * hd),
             p + "mlp.gate_proj.weight": w(i, h), p + "mlp.up_proj.weight": w(i, h), p + "mlp.down_proj.weight": w(h, i),
             p + "input_layernorm.weight": np.ones(h, np.float16), p + "post_attention_layernorm.weight": np.ones(h, np.float16)}
        save_file(t, str(out / f"model-{layer:03d}.safetensors"))
    vocab = {f"w{j}": j for j in range(s["vocab_size"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(out / "tokenizer.json"))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("output", type=Path)
    ap.add_argument("--layers", type=int, help="number of layers (default: the model's)")
    a = ap.parse_args()
    write(a.shape, a.output, layers=a.layers)
