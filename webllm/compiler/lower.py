"""Lowering: op graph + weight layout -> kernels and the dispatch plan of one device profile."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from webllm import kernels as K
from webllm.compiler.memory_plan import plan_memory
from webllm.errors import UnsupportedModelError

PREFILL_MIN_WORKGROUPS = 128  # a prefill matmul takes 128-token tiles only if a full chunk still gives this many
KV_SPLIT = 128  # cache positions per workgroup in decode attention (flash-decoding)
ATTENTION_QUERY_TILE = 16  # query tokens per workgroup in prefill attention (attention_tiled.wgsl)
MAX_WORKGROUPS = 65535  # WebGPU's default maxComputeWorkgroupsPerDimension


@dataclass
class MatrixPart:
    tensor: str  # package tensor name of this part ("layers.0.qkv" or "embed.part1")
    row0: int  # first output row of this part
    rows: int  # output rows (for a pair weight: rows of each half)
    bias: str | None = None  # package tensor holding this part's bias rows


@dataclass
class MatrixInfo:
    """Layout of one (possibly split) matrix in the package, enough to specialize kernels."""

    name: str
    format: str
    scale_dtype: str
    shape: tuple[int, int]  # whole matrix (N, K)
    pair: bool = False  # rows are [gate; up] halves
    parts: list[MatrixPart] = field(default_factory=list)

    def arrays(self, part: MatrixPart) -> list[str]:
        return [f"{part.tensor}.{a}" for a in K.WEIGHT_ARRAYS[self.format]]

    def part_view(self, part: MatrixPart):
        """An object with .shape/.format/.scale_dtype describing this part, for the kernel generators."""
        rows = part.rows * (2 if self.pair else 1)
        return _View(self.format, self.scale_dtype, (rows, self.shape[1]))


@dataclass(frozen=True)
class _View:
    format: str
    scale_dtype: str
    shape: tuple[int, int]


def _check_grid(x: int, what: str) -> int:
    if x > MAX_WORKGROUPS:
        raise UnsupportedModelError(f"{what}: needs {x} workgroups in one dimension (limit {MAX_WORKGROUPS})")
    return x


def prefill_token_tile(rows: int, pair: bool, chunk: int) -> int:
    """Tokens per workgroup of a prefill matmul of `rows` output rows (matmul_tiled.wgsl): 128 (8 x 8
    outputs per thread) where a full chunk still makes PREFILL_MIN_WORKGROUPS workgroups, else 32 (4 x 8
    per thread, four times the workgroups). On an H200 at 512 tokens (benchmarks/matmul_bench.py) the
    128 tile won on every Llama-8B matrix (gate_up 24 TFLOP/s against 18 with 32) and on Llama-1B's
    gate_up, and lost on Llama-1B's qkv, o and down (64 or fewer tiles of 128: 6-13 against 11-15)."""
    tiles = -(-rows // K.matmul_tile_rows(pair))
    return 128 if chunk >= 128 and tiles * (chunk // 128) >= PREFILL_MIN_WORKGROUPS else 32


def lower(model, matrices: dict[str, MatrixInfo], profile: K.Profile, chunk: int,
          gemv_lanes: tuple[int, ...] = (32, 4), max_binding_size: int | None = None) -> dict:
    """Build the plan of one profile (docs/FORMAT.md, "Plans"): the uniform table, kernels, buffers,
    bind groups, and the prefill, score and decode dispatch lists. `gemv_lanes`: candidate threads per
    row of the one-token matmul (decode, output head); the plan gets one decode list per candidate
    ("decode_variants", the first preferred), and runtimes time them on their adapter and keep the
    fastest (32 suits GPUs; 4 is 2.3x faster on lavapipe). The `score` phase is left out when its
    all-token logits would exceed `max_binding_size`. The kernel sources come back under "_sources"."""
    cfg = model.cfg
    ops = model.graph()
    score_ops = model.graph(score=True)
    shapes = model.activation_shapes(chunk)
    nbytes = {t: _round16(n * (profile.act_bytes if dt == "act" else 4)) for t, (n, dt) in shapes.items()}
    pinned = {"h", "token_ids", "logits"} | {t for t in shapes if t.startswith(("k_cache.", "v_cache."))}
    mem = plan_memory(ops, nbytes, pinned)
    # The scoring phase's own tensors get their own buffers, allocated only by runtimes that score.
    optional = {"xn_all": nbytes["xn_all"], "logits_all": nbytes["logits_all"]}
    # Buffers whose size follows the KV capacity: size(C) = ceil(C / unit) * bytes (FORMAT.md).
    per_context = {t: (1, n // model.capacity * profile.act_bytes) for t, (n, _) in shapes.items()
                   if t.startswith(("k_cache.", "v_cache."))}
    per_context["attn_part_acc"] = (KV_SPLIT, cfg.num_attention_heads * cfg.head_dim * 4)
    per_context["attn_part_ml"] = (KV_SPLIT, cfg.num_attention_heads * 8)
    for t in ("attn_part_acc", "attn_part_ml"):
        unit, per = per_context[t]
        mem.buffers[t] = _round16(-(-model.capacity // unit) * per)
    mem.where.update({t: t for t in optional})
    kernels: dict[str, K.Kernel] = {}
    bind_groups: dict[tuple, int] = {}  # (kernel, buffers) -> index in the plan's bind_groups

    def buf(t: str) -> str:
        return mem.where[t]

    def emit(kernel: K.Kernel, bindings: list[str], workgroups: list[int], tokens_per_y: int | None) -> dict:
        kernels[kernel.name] = kernel
        key = (kernel.name, tuple(["uniform"] + bindings))
        d = {"kernel": kernel.name, "bind_group": bind_groups.setdefault(key, len(bind_groups)), "workgroups": workgroups}
        if tokens_per_y is not None:
            d["tokens_per_y"] = tokens_per_y
        return d

    def phase(tt: int, ops: list = ops, lanes: int = gemv_lanes[0]) -> list[dict]:  # tt: most tokens per step
        out = []
        for op in ops:
            if op.kind == "embed":
                m = matrices[op.weights[0]]
                for p in m.parts:
                    kern = K.embed(profile, m.part_view(p), row0=p.row0)
                    gx = math.ceil(m.shape[1] // 32 / 64)
                    out.append(emit(kern, [buf("token_ids"), buf("h")] + m.arrays(p), [gx, 1, 1], 1))
            elif op.kind == "rmsnorm":
                last = bool(op.attrs.get("last"))
                kern = K.rmsnorm(profile, hidden=cfg.hidden_size, eps=cfg.rms_norm_eps, last=last)
                out.append(emit(kern, [buf(op.inputs[0]), buf(op.outputs[0]), op.weights[0]], [1, 1, 1],
                                None if last else 1))
            elif op.kind == "matmul":
                m = matrices[op.weights[0]]
                x, y = op.inputs[0], op.outputs[0]
                single = bool(op.attrs.get("single_row"))  # the output head: one row (the last token's)
                pair = bool(op.attrs.get("pair"))
                n_out = m.shape[0] // (2 if pair else 1)
                t_tile = 1 if single else tt
                tiled = t_tile > 1
                rope = None
                if op.attrs.get("rope"):  # qkv: the epilogue ropes q and k, appends k and v to the cache
                    rope = dict(nq=cfg.num_attention_heads, nkv=cfg.num_key_value_heads, hd=cfg.head_dim)
                for p in m.parts:
                    kw = dict(n_rows=p.rows, n_out=n_out, row0=p.row0, pair=pair, add=bool(op.attrs.get("add")),
                              bias=p.bias is not None, x_type=profile.act,
                              y_type="f32" if y in ("h", "logits", "logits_all") else profile.act, rope=rope)
                    if tiled:
                        tokens = prefill_token_tile(p.rows, pair, tt)
                        kern = K.matmul_tiled(profile, m.part_view(p), tokens=tokens, **kw)
                        rows_per_wg, per_y = K.matmul_tile_rows(pair), tokens
                    else:  # one token: decode, or the output head on the last token's row
                        kw.pop("n_out")
                        kern = K.gemv(profile, m.part_view(p), lanes=lanes, **kw)
                        rows_per_wg, per_y = 256 // lanes, None
                    binds = [buf(x), buf(y)] + m.arrays(p) + ([p.bias] if p.bias else [])
                    if rope:
                        binds += [buf(op.outputs[1]), buf(op.outputs[2]), "rope_table"]
                    gx = _check_grid(math.ceil(p.rows / rows_per_wg), f"tensor {p.tensor}")
                    out.append(emit(kern, binds, [gx, 1, 1], per_y))
            elif op.kind == "attention":
                kw = dict(nq=cfg.num_attention_heads, nkv=cfg.num_key_value_heads, hd=cfg.head_dim,
                          window=cfg.sliding_window or 0, scale=cfg.head_dim ** -0.5)
                binds = [buf(t) for t in op.inputs]
                if tt == 1:  # decode: split the KV range over workgroups, then combine (flash-decoding)
                    kern = K.attention(profile, split=KV_SPLIT, **kw)
                    d = emit(kern, binds + ["attn_part_acc", "attn_part_ml"], [cfg.num_attention_heads, 1, 1], None)
                    d["kv_per_z"] = KV_SPLIT
                    out.append(d)
                    kern = K.attention_combine(profile, nq=cfg.num_attention_heads, hd=cfg.head_dim, split=KV_SPLIT)
                    out.append(emit(kern, ["attn_part_acc", "attn_part_ml", buf(op.outputs[0])],
                                    [cfg.num_attention_heads, 1, 1], None))
                    continue
                if cfg.head_dim % 16 == 0:  # prefill: 16 queries share each K/V block
                    kern, per_y = K.attention_tiled(profile, **kw), ATTENTION_QUERY_TILE
                else:
                    kern, per_y = K.attention(profile, **kw), 1
                out.append(emit(kern, binds + [buf(op.outputs[0])], [cfg.num_attention_heads, 1, 1], per_y))
            elif op.kind == "sample":
                kern = K.sample(profile, vocab=cfg.vocab_size)
                out.append(emit(kern, [buf("logits"), buf("token_ids"), *K.sampler_buffers(cfg.vocab_size)],
                                [1, 1, 1], None))
            else:  # pragma: no cover - the graph only holds the kinds above
                raise AssertionError(op.kind)
        return out

    prefill = phase(chunk)
    variants = {f"gemv{lanes}": phase(1, lanes=lanes) for lanes in gemv_lanes}
    scoring = max_binding_size is None or max(optional.values()) <= max_binding_size
    score = phase(chunk, score_ops) if scoring else None
    uniform = K.uniform_table()
    storage = ["STORAGE", "COPY_SRC", "COPY_DST"]
    buffers = [{"name": "uniform", "size": uniform["size"], "usage": ["UNIFORM", "COPY_DST"]}]
    for b, size in K.sampler_buffers(cfg.vocab_size).items():
        mem.buffers[b] = _round16(size)
    for b, size in sorted(mem.buffers.items()):
        entry = {"name": b, "size": max(16, size), "usage": storage}
        if b in per_context:
            entry["per_context"] = {"unit": per_context[b][0], "bytes": per_context[b][1]}
        buffers.append(entry)
    if scoring:
        buffers += [{"name": b, "size": s, "usage": storage, "optional": "score"} for b, s in optional.items()]
    plan = {
        "profile": profile.name,
        "requires_features": ["shader-f16"] if profile.name == "f16" else [],
        "uniform": uniform,
        "kernels": {name: k.to_json() for name, k in sorted(kernels.items())},
        "buffers": buffers,
        "bind_groups": [{"kernel": k, "buffers": list(b)} for (k, b) in bind_groups],
        "prefill": prefill,
    }
    if score is not None:
        plan["score"] = score
    plan["decode_variants"] = variants
    plan["_sources"] = {name: k.source for name, k in kernels.items()}
    return plan


def _round16(n: int) -> int:
    return (n + 15) // 16 * 16
