"""webllm bench: the speed of a package on this adapter (see webllm/evaluation/speed.py), and with
--dawn the same figures through the JavaScript runtime on Dawn beside them (webllm/evaluation/hosts.py)."""

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
    p.add_argument("--decode-variant", default=None,
                   help="force this decode variant of the plan on every host (default: each host's fastest, timed once "
                        "and cached)")
    p.add_argument("--prefill-variant", default=None,
                   help="force this prefill variant of the plan on every host (default: each host's fastest, timed once "
                        "and cached)")
    p.add_argument("--no-bandwidth", action="store_true", help="skip the streaming-read measurement")
    p.add_argument("--stream-read-mib", type=positive_int, default=1024,
                   help="streaming-read buffer size in MiB (default 1024; capped by the adapter's binding limit)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    d = p.add_argument_group(
        "hosts", "--dawn also measures through the JavaScript runtime (web/src) in Node on Dawn, the WebGPU of Chrome "
        "(npm package webgpu), after the native run, with the same package, profile and options, and prints a column "
        "per host (JSON: {\"hosts\": {\"native\": ..., \"dawn\": ...}}). A profile one host cannot run (Dawn on "
        "NVIDIA has no shader-f16: use --profile f32) reads 'unavailable' in its column. Environment: WEBLLM_NODE, "
        "WEBLLM_NODE_MODULES (as the flags), WEBLLM_DAWN (Dawn's options, ';'-separated), WEBLLM_DAWN_ICD (a "
        "Vulkan ICD file for Dawn alone).")
    d.add_argument("--dawn", action="store_true", help="also measure on Dawn through the Node entry")
    d.add_argument("--node", default=None, metavar="PATH", help="the node binary, Node 20+ (default $WEBLLM_NODE, else "
                   "node on PATH)")
    d.add_argument("--node-modules", default=None, metavar="DIR",
                   help="a node_modules folder holding the npm package webgpu (default $WEBLLM_NODE_MODULES, else "
                        "web/node_modules)")


def run(args) -> int:
    from webllm.evaluation.speed import BenchOptions, bench, format_report
    from webllm.models_cache import resolve_model

    package = resolve_model(args.model, args.quantization, progress=not args.quiet)
    opts = BenchOptions(prompt_tokens=args.prompt_tokens, contexts=args.context, decode_tokens=args.decode_tokens,
                        repeat=args.repeat, bandwidth=not args.no_bandwidth, stream_read_bytes=args.stream_read_mib << 20)
    if args.dawn:
        from webllm.evaluation.hosts import bench_hosts, format_hosts

        res = bench_hosts(package, profile=args.profile, options=opts, decode_variant=args.decode_variant,
                          prefill_variant=args.prefill_variant,
                          node=args.node, node_modules=args.node_modules, progress=not args.quiet)
        print(json.dumps(res) if args.json else format_hosts(res))
        return 1 if any("error" in r for r in res["hosts"].values()) else 0
    res = bench(package, profile=args.profile, options=opts, decode_variant=args.decode_variant,
                prefill_variant=args.prefill_variant, progress=not args.quiet)
    res["package"] = str(package)
    print(json.dumps(res) if args.json else format_report(res))
    return 0
