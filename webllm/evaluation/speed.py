"""Speed of a package on this adapter: the figures `webllm bench` reports.

Everything is measured on the adapter the model runs on, in one process: the adapter's streaming-read
bandwidth (a kernel that only reads a large buffer), load time, time to first token, prefill and
decode tokens per second (decode at several context lengths, GPU-only and with ids streamed back),
dispatches per decode step, GPU memory, and the roofline ratio:

    roofline ratio = (bytes one decode step must read / measured bandwidth) / measured time per step

where the bytes are every weight a decode step reads (all layer matrices and norms, the output head)
plus the KV cache up to the context. 1.0 would be a decode as fast as the memory allows.

web/src/evaluation/speed.js is the JavaScript twin (same definitions, same JSON fields); `webllm bench
--dawn` (hosts.py) runs it on Dawn beside this one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from webllm.runtime import Model
from webllm.runtime.device import adapter_name, create_shader_module, shader_checks

_STREAM_WGSL = Path(__file__).resolve().parent.parent / "kernels" / "wgsl" / "stream_read.wgsl"
_PER_THREAD = 16  # vec4<u32> each thread reads


def stream_read_bandwidth(device, nbytes: int | None = None, seconds: float = 0.3) -> dict:
    """Bytes per second a kernel reaches reading one large buffer (default: 1 GiB, or the adapter's
    storage binding limit if smaller), best of several timed batches of back-to-back dispatches in one
    compute pass. Returns {"bytes_per_s", "buffer_bytes"}."""
    import wgpu

    limit = min(device.limits["max-storage-buffer-binding-size"], device.limits["max-buffer-size"])
    nbytes = min(nbytes or 1 << 30, limit)
    per_wg = 256 * _PER_THREAD * 16
    groups = min(nbytes // per_wg, 65535)
    nbytes = groups * per_wg
    BU = wgpu.BufferUsage
    src = device.create_buffer(size=nbytes, usage=BU.STORAGE)  # zero-filled by WebGPU
    out = device.create_buffer(size=groups * 4, usage=BU.STORAGE | BU.COPY_SRC)
    code = _STREAM_WGSL.read_text().replace("{{PER_THREAD}}", str(_PER_THREAD))
    pipe = device.create_compute_pipeline(layout="auto", compute={"module": create_shader_module(device, code),
                                                                  "entry_point": "main"})
    bg = device.create_bind_group(layout=pipe.get_bind_group_layout(0), entries=[
        {"binding": 0, "resource": {"buffer": src, "offset": 0, "size": nbytes}},
        {"binding": 1, "resource": {"buffer": out, "offset": 0, "size": groups * 4}}])

    def run(reps: int) -> float:
        enc = device.create_command_encoder()
        cp = enc.begin_compute_pass()
        cp.set_pipeline(pipe)
        cp.set_bind_group(0, bg)
        for _ in range(reps):
            cp.dispatch_workgroups(groups, 1, 1)
        cp.end()
        t = time.perf_counter()
        device.queue.submit([enc.finish()])
        device.queue.read_buffer(out, 0, 4)  # waits for the queue
        return time.perf_counter() - t

    run(1)
    reps = max(3, min(200, int(seconds / max(run(1), 1e-6))))
    best = min(run(reps) / reps for _ in range(3))
    src.destroy()
    out.destroy()
    return {"bytes_per_s": nbytes / best, "buffer_bytes": nbytes}


def decode_bytes(model: Model, context: int) -> dict:
    """Bytes one decode step reads at `context` tokens of KV: weights (every matrix a layer or the
    output head multiplies by, norms included; of the embedding only one row unless it is the head)
    and the KV cache."""
    cfg = model.config
    tied = bool(cfg.get("tie_word_embeddings"))
    weights = 0
    for name, t in model.manifest["tensors"].items():
        if name.startswith("rope_table"):
            continue
        if name.startswith("embed") and not tied:
            continue
        weights += int(t["nbytes"])
    # the KV cache's buffers by the plan's own rule (per_context: bytes per `unit` positions)
    kv = sum(-(-context // b["per_context"]["unit"]) * b["per_context"]["bytes"] for b in model.plan["buffers"]
             if "per_context" in b and b["name"].startswith(("k_cache", "v_cache")))
    return {"weights": weights, "kv": kv}


def dispatches_per_decode_step(model: Model) -> int:
    variants = model.plan.get("decode_variants") or {}
    if model.decode_variant in variants:
        return len(variants[model.decode_variant])
    return len(model.plan["decode"])


@dataclass
class BenchOptions:
    prompt_tokens: tuple[int, ...] = (512, 1024)
    contexts: tuple[int, ...] = (0, 4096)
    decode_tokens: int = 128
    repeat: int = 3
    bandwidth: bool = True
    stream_read_bytes: int = 1 << 30  # capped by the adapter's binding limit


def bench(package: str | Path, *, profile: str | None = None, options: BenchOptions | None = None,
          decode_variant: str | None = None, progress: bool = False, prefill_variant: str | None = None) -> dict:
    """Load `package` and measure it (see the module docstring). `decode_variant`, `prefill_variant` force
    one of the plan's variants (default: the fastest, timed once and cached). Returns a JSON-ready dict."""
    o = options or BenchOptions()
    t = time.perf_counter()
    model = Model.load(package, profile=profile, progress=progress, decode_variant=decode_variant,
                       prefill_variant=prefill_variant)
    load_s = time.perf_counter() - t
    res: dict = {"adapter": adapter_name(model.adapter), "driver": model.adapter.info.get("description", ""),
                 "profile": model.profile, "quantization": model.manifest["quantization"],
                 "layers": model.config["num_hidden_layers"], "context_window": model.capacity,
                 "prefill_chunk": model.chunk, "load_s": load_s, "decode_variant": model.decode_variant,
                 "prefill_variant": model.prefill_variant, "kv_splits": model.kv_splits,
                 "dispatches_per_decode_step": dispatches_per_decode_step(model),
                 "gpu_memory_bytes": model.gpu_memory_bytes, "shader_checks": shader_checks()}
    res["dispatches_per_layer"] = res["dispatches_per_decode_step"] / res["layers"]
    rng = np.random.default_rng(0)
    vocab = model.config["vocab_size"]

    def sync() -> None:
        model.next_token()  # a 4-byte readback waits for the queue

    # warm-up: some drivers compile pipelines on first use
    model.reset()
    model.prefill(rng.integers(0, vocab, size=min(model.chunk, 16)))
    model.decode()
    sync()

    res["prefill"] = []
    for n in o.prompt_tokens:
        n = min(n, model.capacity - 1)
        prompt = rng.integers(0, vocab, size=n)
        best = float("inf")
        for _ in range(o.repeat):
            model.reset()
            sync()
            t = time.perf_counter()
            model.prefill(prompt)
            sync()  # the first token (sampled on the GPU) is back: time to first token
            best = min(best, time.perf_counter() - t)
        res["prefill"].append({"tokens": n, "tok_s": n / best, "ttft_ms": best * 1e3})

    res["decode"] = []
    for ctx in o.contexts:
        ctx = max(1, min(ctx, model.capacity - o.decode_tokens - 2))
        model.reset()
        model.prefill(rng.integers(0, vocab, size=ctx))  # filled once; each repeat decodes over the same positions
        sync()
        gpu, streaming = float("inf"), float("inf")
        for _ in range(o.repeat):
            model.truncate(ctx)
            sync()
            t = time.perf_counter()
            for _ in range(o.decode_tokens):
                model.decode()
            sync()
            gpu = min(gpu, (time.perf_counter() - t) / o.decode_tokens)
            model.truncate(ctx - 1)  # generate() prefills one token: the same positions again
            n, t0 = 0, 0.0
            for _ in model.generate([int(rng.integers(0, vocab))], o.decode_tokens + 1):
                if n == 0:
                    t0 = time.perf_counter()  # the clock starts at the first token: its prefill excluded
                n += 1
            streaming = min(streaming, (time.perf_counter() - t0) / (n - 1))
        by = decode_bytes(model, ctx)
        res["decode"].append({"context": ctx, "tok_s": 1 / gpu, "streaming_tok_s": 1 / streaming,
                              "weight_bytes": by["weights"], "kv_bytes": by["kv"],
                              "read_gb_s": (by["weights"] + by["kv"]) / gpu / 1e9})
    if o.bandwidth:
        bw = stream_read_bandwidth(model.device, o.stream_read_bytes)
        res["stream_read_gb_s"] = bw["bytes_per_s"] / 1e9
        for d in res["decode"]:
            d["roofline_ratio"] = (d["weight_bytes"] + d["kv_bytes"]) / bw["bytes_per_s"] * d["tok_s"]
    return res


def format_report(res: dict) -> str:
    """The table `webllm bench` prints."""
    lines = [f"{res['adapter']} ({res['driver']}), profile {res['profile']}, {res['quantization']}, "
             f"{res['layers']} layers, context window {res['context_window']}",
             f"load {res['load_s']:.1f} s; GPU memory {res['gpu_memory_bytes'] / 2**30:.2f} GiB; "
             f"{res['dispatches_per_decode_step']} dispatches per decode step "
             f"({res['dispatches_per_layer']:.1f} per layer); variants: decode {res['decode_variant']}, "
             f"prefill {res.get('prefill_variant', '?')}"
             + (f", {res['kv_splits']} KV splits" if res.get("kv_splits") else "")
             + (f"; shader runtime checks: {res['shader_checks']}" if res.get("shader_checks") else "")]
    if "stream_read_gb_s" in res:
        lines.append(f"streaming read, measured: {res['stream_read_gb_s']:.0f} GB/s")
    lines.append("")
    lines.append("| phase | tokens / context | tok/s | time to first token | roofline ratio |")
    lines.append("| --- | --- | --- | --- | --- |")
    for p in res["prefill"]:
        lines.append(f"| prefill | {p['tokens']} | {p['tok_s']:,.0f} | {p['ttft_ms']:.1f} ms | |")
    for d in res["decode"]:
        rr = f"{d['roofline_ratio']:.2f}" if "roofline_ratio" in d else ""
        lines.append(f"| decode, GPU only | {d['context']} | {d['tok_s']:,.1f} | | {rr} |")
        lines.append(f"| decode, ids streamed back | {d['context']} | {d['streaming_tok_s']:,.1f} | | |")
    return "\n".join(lines)
