"""On a real GPU: a tiny random Llama, greedy 32 tokens through wgpu vs transformers (torch CPU), and
logits error; prints the adapter. Used once per session on the lent GPU."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from webllm.compiler.compile import CompileOptions, compile_model
from webllm.runtime import Model
from webllm.runtime.device import adapter_name


def main() -> int:
    tmp = Path(tempfile.mkdtemp())
    cfg = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=8,
                      num_key_value_heads=2, vocab_size=1003, max_position_embeddings=1024)
    torch.manual_seed(0)
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.15) if p.dim() > 1 else p.normal_(1.0, 0.1)
    m.save_pretrained(tmp / "ckpt")
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({f"w{i}": i for i in range(1003)}, unk_token="w0")).save(str(tmp / "ckpt/tokenizer.json"))
    ids = np.random.default_rng(1).integers(0, 1003, size=40)
    with torch.no_grad():
        ref_logits = m(torch.tensor(ids[None])).logits[0, -1].numpy()
        ref = m.generate(torch.tensor(ids[None]), max_new_tokens=32, do_sample=False)[0, 40:].tolist()
    ok = True
    for mode, profiles in (("q0f32", ["f32"]), ("q0f16", ["f16", "f32"])):
        compile_model(tmp / "ckpt", tmp / mode, CompileOptions(quantization=mode, prefill_chunk=16, progress=False))
        for prof in profiles:
            rt = Model.load(tmp / mode, profile=prof, progress=False)
            rt.prefill(ids)
            err = float(np.abs(rt.logits() - ref_logits).max() / np.abs(ref_logits).max())
            rt.reset()
            got = list(rt.generate(ids, 32))
            same = got == ref
            ok &= same or mode != "q0f32"
            print(f"{adapter_name(rt.adapter)} {mode}/{prof}: rel logits err {err:.2e}; greedy 32 equal: {same}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
