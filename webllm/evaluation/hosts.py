"""`webllm bench --dawn`: the same figures through the JavaScript runtime in Node on Dawn (the WebGPU
implementation inside Chrome, from the npm package `webgpu`), beside the native ones, in one run.

The Node side is `web/src/node/bench.js` (web/src/evaluation/speed.js measures with the definitions of
speed.py and writes the same JSON fields). Both hosts load the same package with the same profile
(and decode variant, when one is forced). A profile a host cannot run (Dawn on NVIDIA has no
shader-f16) is reported in its column as "unavailable", not as a failure of the run.

Where the tools are (environment variables, or the CLI's flags):
    WEBLLM_NODE           the node binary (Node 20+), else `node` on PATH
    WEBLLM_NODE_MODULES   a node_modules folder holding `webgpu`, else web/node_modules
    WEBLLM_DAWN           Dawn's options, ';'-separated (web/src/node/index.js)
    WEBLLM_DAWN_ICD       a Vulkan driver's ICD file for Dawn alone (Dawn rejects lavapipe: CI points it
                          at SwiftShader while the native side keeps lavapipe)
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
from pathlib import Path

from webllm.errors import AdapterError, WebLLMError
from webllm.evaluation.speed import BenchOptions, bench

WEB = Path(__file__).resolve().parent.parent.parent / "web"
NODE_BENCH = WEB / "src" / "node" / "bench.js"
HOST_NAMES = {"native": "native (wgpu)", "dawn": "Dawn (Node)"}


def find_node(node: str | None = None) -> str:
    """The node binary: `node`, else $WEBLLM_NODE, else `node` on PATH. Raises WebLLMError naming what is missing."""
    node = node or os.environ.get("WEBLLM_NODE")
    if node:
        path = shutil.which(node) or (node if Path(node).is_file() and os.access(node, os.X_OK) else None)
        if path is None:
            hint = f" (xz-compressed: run xz -dk {node})" if node.endswith(".xz") else ""
            raise WebLLMError(f"--dawn: node binary {node} is not an executable file{hint}")
        return path
    path = shutil.which("node")
    if path is None:
        raise WebLLMError("--dawn needs Node.js 20+: node is not on PATH (apt install nodejs, or set WEBLLM_NODE)")
    return path


def find_node_modules(node_modules: str | None = None) -> Path:
    """The node_modules folder holding the npm package `webgpu`: `node_modules`, else
    $WEBLLM_NODE_MODULES, else web/node_modules. Raises WebLLMError naming what is missing."""
    if not NODE_BENCH.is_file():
        raise WebLLMError(f"--dawn needs the Node entry {NODE_BENCH}: run webllm from a source checkout")
    where = Path(node_modules or os.environ.get("WEBLLM_NODE_MODULES") or WEB / "node_modules")
    if not (where / "webgpu" / "package.json").is_file():
        raise WebLLMError(f"--dawn needs the npm package webgpu: {where / 'webgpu'} is missing "
                          "(cd web && npm ci, or set WEBLLM_NODE_MODULES to a node_modules folder that has it)")
    return where


def node_env(node_modules: Path) -> dict:
    """The Node process's environment: ours, with the webgpu folder and Dawn's own Vulkan driver."""
    env = dict(os.environ, WEBLLM_NODE_MODULES=str(Path(node_modules).resolve()))
    icd = env.get("WEBLLM_DAWN_ICD")
    if icd:
        # newer Vulkan loaders read VK_DRIVER_FILES first (the GPU machine sets it): set both
        env.update(VK_ICD_FILENAMES=icd, VK_DRIVER_FILES=icd)
    return env


def bench_dawn(package: str | Path, *, profile: str | None, options: BenchOptions, decode_variant: str | None = None,
               node: str, node_modules: Path, progress: bool = False, prefill_variant: str | None = None) -> dict:
    """Run web/src/node/bench.js on `package`; its JSON result (with "unavailable" or "error" when it did not measure)."""
    o = options
    cmd = [node, str(NODE_BENCH), str(package), "--json", "--prompt-tokens", ",".join(map(str, o.prompt_tokens)),
           "--context", ",".join(map(str, o.contexts)), "--decode-tokens", str(o.decode_tokens), "--repeat", str(o.repeat),
           "--stream-read-mib", str(max(1, o.stream_read_bytes >> 20))]
    if profile:
        cmd += ["--profile", profile]
    if decode_variant:
        cmd += ["--decode-variant", decode_variant]
    if prefill_variant:
        cmd += ["--prefill-variant", prefill_variant]
    if not o.bandwidth:
        cmd.append("--no-bandwidth")
    if not progress:
        cmd.append("--quiet")
    # stderr (progress, and the reason of a failure) goes to the terminal; stdout is one JSON line
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=node_env(node_modules))
    lines = r.stdout.strip().splitlines()
    try:
        res = json.loads(lines[-1])
    except (IndexError, ValueError):
        res = {"host": "dawn", "error": f"node exited with status {r.returncode} without a result"}
    return res


def bench_hosts(package: str | Path, *, profile: str | None = None, options: BenchOptions | None = None,
                decode_variant: str | None = None, node: str | None = None, node_modules: str | None = None,
                progress: bool = False, prefill_variant: str | None = None) -> dict:
    """The native measurement, then the Dawn one on the same package and profile:
    {"package", "hosts": {"native": {...}, "dawn": {...}}}. Node and webgpu are looked for first, so a
    missing one fails before the native run rather than after it."""
    o = options or BenchOptions()
    node = find_node(node)
    modules = find_node_modules(node_modules)
    try:
        native = {"host": "native", **bench(package, profile=profile, options=o, decode_variant=decode_variant,
                                            prefill_variant=prefill_variant,
                                            progress=progress)}
    except AdapterError as e:
        native = {"host": "native", "adapter": _native_adapter(), "unavailable": str(e)}
    gc.collect()  # release the native model's GPU buffers before Dawn allocates its own
    dawn = bench_dawn(package, profile=native.get("profile", profile), options=o, decode_variant=decode_variant,
                      prefill_variant=prefill_variant,
                      node=node, node_modules=modules, progress=progress)
    return {"package": str(package), "hosts": {"native": native, "dawn": dawn}}


def _native_adapter() -> str:
    try:
        import wgpu

        from webllm.runtime.device import adapter_name

        return adapter_name(wgpu.gpu.request_adapter_sync(power_preference="high-performance"))
    except Exception:  # the name only labels a column
        return ""


def _bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _cells(res: dict) -> dict[str, str]:
    """One host's figures by row label."""
    if "unavailable" in res or "error" in res:
        return {"adapter": res.get("adapter", ""), "profile": "unavailable" if "unavailable" in res else "error"}
    c = {"adapter": res["adapter"], "profile": f"{res['profile']}, {res['quantization']}",
         "load": f"{res['load_s']:.1f} s", "GPU memory": _bytes(res["gpu_memory_bytes"]),
         "dispatches per decode step": f"{res['dispatches_per_decode_step']} ({res['dispatches_per_layer']:.1f} per layer, "
                                       f"{res['decode_variant']}; prefill {res.get('prefill_variant', '?')})"}
    if "stream_read_gb_s" in res:
        c["streaming read"] = f"{res['stream_read_gb_s']:.0f} GB/s"
    for p in res["prefill"]:
        c[f"prefill {p['tokens']}: tok/s"] = f"{p['tok_s']:,.0f}"
        c[f"prefill {p['tokens']}: time to first token"] = f"{p['ttft_ms']:.1f} ms"
    for d in res["decode"]:
        c[f"decode after {d['context']}: tok/s, GPU only"] = f"{d['tok_s']:,.1f}"
        c[f"decode after {d['context']}: tok/s, ids streamed back"] = f"{d['streaming_tok_s']:,.1f}"
        if "roofline_ratio" in d:
            c[f"decode after {d['context']}: roofline ratio"] = f"{d['roofline_ratio']:.2f}"
    return c


def format_hosts(res: dict) -> str:
    """The table `webllm bench --dawn` prints: one column per host, a row per figure."""
    hosts = res["hosts"]
    cells = {h: _cells(r) for h, r in hosts.items()}
    rows: list[str] = []
    for c in cells.values():
        rows += [k for k in c if k not in rows]
    lines = [f"package {res['package']}", "",
             "| | " + " | ".join(HOST_NAMES.get(h, h) for h in hosts) + " |",
             "| --- |" + " --- |" * len(hosts)]
    for k in rows:
        lines.append(f"| {k} | " + " | ".join(cells[h].get(k, "") for h in hosts) + " |")
    for h, r in hosts.items():
        if "unavailable" in r:
            lines.append(f"{HOST_NAMES.get(h, h)}: unavailable on {r.get('adapter', 'this adapter')}: {r['unavailable']}")
        elif "error" in r:
            lines.append(f"{HOST_NAMES.get(h, h)}: error: {r['error']}")
    return "\n".join(lines)
