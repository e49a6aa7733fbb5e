"""What int8 activations in decode do to a model's output: the same model compiled twice, with its
int8 decode variants (the decode matmuls pass x to each other as int8 blocks, lower.int8_edges; the
first such variant is used) and with --no-decode-int8, run on this adapter over the same tokens.

    python benchmarks/decode_int8_check.py [MODEL] [--prompt TEXT] [--steps 64] [--profile f32]

MODEL: a GGUF file or Hugging Face folder (default: the embedded SmolLM2-135M-Instruct, a Q4_1 GGUF,
whose q4a matrices are given int8 x here although the compiler's default keeps them in float). Both
packages prefill the chat-formatted prompt in float (prefill is the same code), then decode `steps`
tokens fed the float package's greedy choice (written into token_ids before each step, so both decode
the same sequence). Printed: the largest and median logit difference per step relative to the step's
largest |logit|, how often the two agree on the top token, and each package's own greedy continuation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webllm.compiler.compile import CompileOptions, compile_model  # noqa: E402
from webllm.engine import Engine  # noqa: E402
from webllm.models_cache import default_model_path  # noqa: E402
from webllm.runtime import Model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", type=Path, default=None)
    ap.add_argument("--prompt", default="What is the capital of France? Answer in one sentence, then name two "
                                        "other large cities of that country.")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--profile", default=None)
    args = ap.parse_args()
    src = args.model or default_model_path()
    with tempfile.TemporaryDirectory() as tmp:
        pkgs = {}
        for name, int8 in (("float", False), ("int8", True)):
            pkgs[name] = compile_model(src, Path(tmp) / name, CompileOptions(
                progress=False, context_window=512, decode_int8=int8, decode_int8_formats=("q4s", "q4a")))
        models = {k: Model.load(p, profile=args.profile, progress=False) for k, p in pkgs.items()}
        # the int8 package's first int8 variant (its load-time timing may keep a float one: a CPU adapter does)
        models["int8"].use_decode_variant(next(n for n in models["int8"].decode_variants if n.startswith("q8")))
        engine = Engine(models["float"])  # its tokenizer and chat template
        text = engine.template.render([{"role": "user", "content": args.prompt}])
        ids = engine.tokenizer.encode(text)
        logits: dict[str, list[np.ndarray]] = {"float": [], "int8": []}
        for m in models.values():
            m.reset()
            m.prefill(ids)
        for _ in range(args.steps):
            for k, m in models.items():
                logits[k].append(m.logits().astype(np.float64))
            nxt = np.array([int(np.argmax(logits["float"][-1]))], np.uint32)
            for m in models.values():  # both decode the float package's greedy token
                m.write_buffer("token_ids", nxt)
                m.decode()
        f, q = np.stack(logits["float"]), np.stack(logits["int8"])
        rel = np.abs(f - q).max(1) / np.abs(f).max(1)
        top = (f.argmax(1) == q.argmax(1))[1:].mean()
        print(f"model {src.name}, profile {models['float'].profile}, {len(ids)}-token prompt")
        print(f"logits, int8 against float (max |diff| / max |logit|): after the prefill {rel[0]:.2e} (the same "
              f"code); over {len(rel) - 1} decode steps median {np.median(rel[1:]):.2e}, max {rel[1:].max():.2e}; "
              f"top-1 agreement {top:.1%}")
        for k, m in models.items():
            m.reset()
            out = list(m.generate(list(ids), args.steps, stop_ids=engine.stop_ids))
            print(f"{k} greedy: {engine.tokenizer.decode(out)!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
