"""webllm bench: prefill and decode speed of a package on this adapter."""

from __future__ import annotations

import json
import time

import numpy as np

NAME = "bench"
HELP = "measure prefill and decode tokens per second (random prompt, greedy decode)"
USES_MODEL = True


def add_arguments(p) -> None:
    from webllm.cli.main import non_negative_int, positive_int

    p.add_argument("--prompt-tokens", type=positive_int, default=128, help="prompt length for the prefill figure (default 128)")
    p.add_argument("--decode-tokens", type=positive_int, default=128, help="tokens to decode (default 128)")
    p.add_argument("--context", type=non_negative_int, default=0,
                   help="tokens already in the KV cache before decoding (default 0)")
    p.add_argument("--repeat", type=positive_int, default=3, help="repetitions; the best is reported (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from webllm.models_cache import resolve_model
    from webllm.runtime import Model
    from webllm.runtime.device import adapter_name

    package = resolve_model(args.model, args.quantization, progress=not args.quiet)
    model = Model.load(package, profile=args.profile, progress=not args.quiet)
    rng = np.random.default_rng(0)
    vocab = model.config["vocab_size"]
    prompt = rng.integers(0, vocab, size=args.prompt_tokens)
    ctx = rng.integers(0, vocab, size=max(1, args.context))

    def sync():
        model.next_token()  # a 4-byte readback waits for the queue

    # warm-up: pipelines compile lazily on some drivers
    model.reset()
    model.prefill(prompt[: min(16, len(prompt))])
    model.decode()
    sync()
    prefill, decode, pipelined = [], [], []
    for _ in range(args.repeat):
        model.reset()
        sync()
        t = time.perf_counter()
        model.prefill(prompt)
        sync()
        prefill.append(args.prompt_tokens / (time.perf_counter() - t))
        model.reset()
        model.prefill(ctx)
        sync()
        t = time.perf_counter()
        for _ in range(args.decode_tokens):
            model.decode()
        sync()
        decode.append(args.decode_tokens / (time.perf_counter() - t))
        model.reset()
        n, t = 0, 0.0
        for _ in model.generate(ctx, args.decode_tokens + 1):
            if n == 0:
                t = time.perf_counter()  # the clock starts at the first token: prefill excluded
            n += 1
        pipelined.append((n - 1) / (time.perf_counter() - t))
    res = {
        "adapter": adapter_name(model.adapter), "profile": model.profile, "quantization": model.manifest["quantization"],
        "layers": model.config["num_hidden_layers"], "dispatches_per_decode_step": len(model._dispatch["decode"]),
        "decode_variant": model.decode_variant,
        "prefill_tokens": args.prompt_tokens, "prefill_tok_s": max(prefill),
        "decode_context": len(ctx), "decode_tok_s": max(decode), "generate_tok_s_with_readback": max(pipelined),
    }
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{res['adapter']}, profile {res['profile']}, {res['quantization']}, "
              f"{res['dispatches_per_decode_step']} dispatches per decode step (variant {res['decode_variant']})")
        print(f"prefill  {args.prompt_tokens} tokens: {res['prefill_tok_s']:.1f} tok/s")
        print(f"decode   (after {len(ctx)} tokens): {res['decode_tok_s']:.1f} tok/s on the GPU, "
              f"{res['generate_tok_s_with_readback']:.1f} tok/s streaming ids back")
    return 0
