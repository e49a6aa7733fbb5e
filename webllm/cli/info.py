"""webllm info: what a package holds and what the adapter offers."""

from __future__ import annotations

NAME = "info"
HELP = "describe a model package (config, quantization, memory) and the WebGPU adapter"
USES_MODEL = True


def add_arguments(p) -> None:
    pass


def run(args) -> int:
    from webllm.models_cache import resolve_model
    from webllm.runtime.device import adapter_name, device_features, request_device
    from webllm.runtime.package import read_manifest, read_plan

    package = resolve_model(args.model, args.quantization, progress=not args.quiet)
    m = read_manifest(package)
    c = m["config"]
    print(f"package        {package}")
    print(f"architecture   {c['architecture']}: {c['num_hidden_layers']} layers, hidden {c['hidden_size']}, "
          f"heads {c['num_attention_heads']}/{c['num_key_value_heads']} (head_dim {c['head_dim']}), "
          f"ffn {c['intermediate_size']}, vocab {c['vocab_size']}")
    print(f"quantization   {m['quantization']}; context window {m['context_window']}; prefill chunk {m['prefill_chunk']}")
    print(f"weights        {sum(s['nbytes'] for s in m['shards']) / 2**20:.1f} MiB in {len(m['shards'])} shards")
    for name, p in m["profiles"].items():
        plan = read_plan(package, m, name)
        decode = next(iter(plan["decode_variants"].values()))
        total, per_layer = len(decode), dispatches_per_layer(plan, decode, c["num_hidden_layers"])
        print(f"profile {name:6s} needs {p['memory_bytes'] / 2**20:.1f} MiB of GPU memory; "
              f"{total} dispatches per decode step ({per_layer:g} per layer); "
              f"{len(plan['kernels'])} kernels; requires {p['requires_features'] or 'nothing'}")
        need = {n: list(plan["variant_features"].get(n, [])) + [f"{k} {v}" for k, v in plan["variant_limits"].get(n, {}).items()]
                for n in [*plan["variant_features"], *plan["variant_limits"]]}
        for kind in ("prefill", "decode"):
            names = [n + (f" (needs {', '.join(need[n])})" if n in need else "") for n in plan[f"{kind}_variants"]]
            print(f"  {kind} variants {', '.join(names)}")
    adapter, device = request_device()
    feats = sorted(f for f in device_features(device) if f in ("shader-f16", "subgroups"))
    print(f"adapter        {adapter_name(adapter)}; features: {', '.join(feats) or 'none of shader-f16, subgroups'}")
    return 0


def dispatches_per_layer(plan: dict, dispatches: list[dict], layers: int) -> float:
    """Dispatches from the first that binds a tensor of layer 0 to the last that binds one of the last
    layer, per layer (the embedding, final norm, head and sampling are outside)."""
    def layer_of(d):
        for b in plan["bind_groups"][d["bind_group"]]["buffers"]:
            if b.startswith("layers."):
                return int(b.split(".")[1])
        return None

    idx = [(i, layer_of(d)) for i, d in enumerate(dispatches)]
    first = min(i for i, lay in idx if lay == 0)
    last = max(i for i, lay in idx if lay == layers - 1)
    return (last - first + 1) / layers
