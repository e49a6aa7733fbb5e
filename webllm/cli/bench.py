"""webllm bench: the speed of a package on this adapter (see webllm/evaluation/speed.py)."""

from __future__ import annotations

import json

NAME = "bench"
HELP = ("measure speed on this adapter: streaming-read bandwidth, load time, time to first token, prefill and "
        "decode tok/s (GPU only and streaming), dispatches per step, GPU memory, roofline ratio")
USES_MODEL = True


def _int_list(each):
    def parse(text: str) -> tuple[int, ...]:
        return tuple(each(v) for v in text.split(",") if v.strip())

    return parse


def add_arguments(p) -> None:
    from webllm.cli.main import non_negative_int, positive_int

    p.add_argument("--prompt-tokens", type=_int_list(positive_int), default=(512, 1024),
                   help="comma-separated prompt lengths for prefill and time to first token (default 512,1024)")
    p.add_argument("--context", type=_int_list(non_negative_int), default=(0, 4096),
                   help="comma-separated KV lengths to decode after (default 0,4096; capped by the context window)")
    p.add_argument("--decode-tokens", type=positive_int, default=128, help="tokens to decode per measurement (default 128)")
    p.add_argument("--repeat", type=positive_int, default=3, help="repetitions; the best is reported (default 3)")
    p.add_argument("--no-bandwidth", action="store_true", help="skip the streaming-read measurement")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def run(args) -> int:
    from webllm.evaluation.speed import BenchOptions, bench, format_report
    from webllm.models_cache import resolve_model

    package = resolve_model(args.model, args.quantization, progress=not args.quiet)
    opts = BenchOptions(prompt_tokens=args.prompt_tokens, contexts=args.context, decode_tokens=args.decode_tokens,
                        repeat=args.repeat, bandwidth=not args.no_bandwidth)
    res = bench(package, profile=args.profile, options=opts, progress=not args.quiet)
    res["package"] = str(package)
    print(json.dumps(res) if args.json else format_report(res))
    return 0
