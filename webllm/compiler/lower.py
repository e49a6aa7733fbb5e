"""Lowering: op graph + weight layout -> kernels and the dispatch plan of one device profile."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from webllm import kernels as K
from webllm.compiler.memory_plan import plan_memory
from webllm.errors import UnsupportedModelError

PREFILL_TOKEN_TILE = 8  # tokens per matmul workgroup in prefill (weights reused across them)
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


def lower(model, matrices: dict[str, MatrixInfo], profile: K.Profile, chunk: int) -> dict:
    """Build the plan of one profile: kernels, buffers, and the prefill and decode dispatch lists."""
    cfg = model.cfg
    ops = model.graph()
    shapes = model.activation_shapes(chunk)
    nbytes = {t: _round16(n * (profile.act_bytes if dt == "act" else 4)) for t, (n, dt) in shapes.items()}
    pinned = {"h", "token_ids", "logits"} | {t for t in shapes if t.startswith(("k_cache.", "v_cache."))}
    mem = plan_memory(ops, nbytes, pinned)
    kernels: dict[str, K.Kernel] = {}

    def buf(t: str) -> str:
        return mem.where[t]

    def emit(kernel: K.Kernel, bindings: list[str], workgroups: list[int], tokens_per_y: int | None) -> dict:
        kernels[kernel.name] = kernel
        d = {"kernel": kernel.name, "bindings": ["uniform"] + bindings, "workgroups": workgroups}
        if tokens_per_y is not None:
            d["tokens_per_y"] = tokens_per_y
        return d

    def phase(tt: int) -> list[dict]:
        out = []
        for op in ops:
            if op.kind == "embed":
                m = matrices[op.weights[0]]
                for p in m.parts:
                    kern = K.embed(profile, m.part_view(p), row0=p.row0)
                    gx = math.ceil(m.shape[1] // 32 / 64)
                    out.append(emit(kern, [buf("token_ids"), buf("h")] + m.arrays(p), [gx, 1, 1], 1))
            elif op.kind == "matmul":
                m = matrices[op.weights[0]]
                x, y = op.inputs[0], op.outputs[0]
                last = bool(op.attrs.get("last"))
                norm = op.attrs.get("norm")
                pair = bool(op.attrs.get("pair"))
                n_out = m.shape[0] // (2 if pair else 1)
                t_tile = 1 if last else tt
                for p in m.parts:
                    kern = K.matmul(
                        profile, m.part_view(p), n_rows=p.rows, n_out=n_out, row0=p.row0, tt=t_tile,
                        x_type="f32" if x == "h" else profile.act, y_type="f32" if y in ("h", "logits") else profile.act,
                        norm_eps=cfg.rms_norm_eps if norm else None, pair=pair, add=bool(op.attrs.get("add")),
                        last=last, bias=p.bias is not None,
                    )
                    binds = [buf(x), buf(y)] + m.arrays(p) + ([p.bias] if p.bias else []) + ([norm] if norm else [])
                    gx = _check_grid(math.ceil(p.rows / 4), f"tensor {p.tensor}")
                    out.append(emit(kern, binds, [gx, 1, 1], None if last else t_tile))
            elif op.kind == "rope_kv":
                kern = K.rope_kv(profile, nq=cfg.num_attention_heads, nkv=cfg.num_key_value_heads, hd=cfg.head_dim,
                                 cap=model.capacity)
                n = (cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * cfg.head_dim // 2
                out.append(emit(kern, [buf(op.inputs[0])] + [buf(t) for t in op.outputs] + ["rope_table"],
                                [math.ceil(n / 64), 1, 1], 1))
            elif op.kind == "attention":
                kern = K.attention(profile, nq=cfg.num_attention_heads, nkv=cfg.num_key_value_heads, hd=cfg.head_dim,
                                   cap=model.capacity, window=cfg.sliding_window or 0, scale=cfg.head_dim ** -0.5)
                out.append(emit(kern, [buf(t) for t in op.inputs] + [buf(op.outputs[0])],
                                [cfg.num_attention_heads, 1, 1], 1))
            elif op.kind == "argmax":
                kern = K.argmax(profile, vocab=cfg.vocab_size)
                out.append(emit(kern, [buf("logits"), buf("token_ids")], [1, 1, 1], None))
            else:  # pragma: no cover - the graph only holds the kinds above
                raise AssertionError(op.kind)
        return out

    prefill, decode = phase(PREFILL_TOKEN_TILE), phase(1)
    buffers = [{"name": "uniform", "size": 16, "usage": "uniform"}]
    buffers += [{"name": b, "size": s, "usage": "storage"} for b, s in sorted(mem.buffers.items())]
    return {
        "profile": profile.name,
        "requires_features": ["shader-f16"] if profile.name == "f16" else [],
        "kernels": {name: k.to_json() for name, k in sorted(kernels.items())},
        "buffers": buffers,
        "io": {"token_ids": "token_ids", "logits": "logits"},
        "prefill": prefill,
        "decode": decode,
        "_sources": {name: k.source for name, k in kernels.items()},
    }


def _round16(n: int) -> int:
    return (n + 15) // 16 * 16
