"""WGSL kernel library: readable templates in wgsl/, specialized here with compile-time constants.

Each generator returns a Kernel: its WGSL source and the types of its bindings (in binding order), which
the runtimes turn into an explicit bind group layout. Shapes are baked in as constants; the token
count and KV length come from the per-step uniform (binding 0), so one kernel serves any length.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from webllm.quantization.formats import PackedWeight

_DIR = Path(__file__).parent / "wgsl"
UNIFORM, READ, WRITE = "uniform", "read-only-storage", "storage"

# Arrays of each weight format, in binding order.
WEIGHT_ARRAYS = {"f32": ("weight",), "f16": ("weight",), "q4s": ("qweight", "scales"),
                 "q4a": ("qweight", "scales", "mins"), "q8s": ("qweight", "scales")}


@dataclass(frozen=True)
class Kernel:
    name: str  # stable, content-derived: "<kind>_<hash>"
    source: str
    bindings: tuple[str, ...]  # binding i's type: UNIFORM, READ or WRITE

    def to_json(self) -> dict:
        return {"file": f"{self.name}.wgsl", "entry_point": "main", "bindings": list(self.bindings)}


@dataclass(frozen=True)
class Profile:
    """A device profile: how activations are stored. Arithmetic is f32 in both."""

    name: str  # "f16" or "f32"

    @property
    def act(self) -> str:
        return self.name

    @property
    def act_bytes(self) -> int:
        return 2 if self.name == "f16" else 4


@cache
def _template(name: str) -> str:
    return (_DIR / f"{name}.wgsl").read_text()


def _fill(text: str, **params) -> str:
    for k, v in params.items():
        text = text.replace("{{" + k + "}}", str(v))
    if "{{" in text:
        raise AssertionError(f"unfilled placeholder in kernel: {text[text.index('{{'):][:40]}")
    return text


def _header(profile: Profile) -> str:
    return _fill(_template("header"), ENABLE_F16="enable f16;" if profile.name == "f16" else "", ACT=profile.act)


def _f32(v: float) -> str:
    s = repr(float(v))
    return s if ("e" in s or "." in s) else s + ".0"


def _make(kind: str, source: str, bindings: tuple[str, ...]) -> Kernel:
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    return Kernel(f"{kind}_{digest}", source, bindings)


def weight_snippet(fmt: str, scale_dtype: str, first_binding: int) -> tuple[str, int]:
    """WGSL declaring a weight's arrays from `first_binding` on, and `w_load_group(row, g)`."""
    b = first_binding
    params = {"B": b, "B1": b + 1, "B2": b + 2, "P": "w_"}
    if fmt == "q4s":
        if scale_dtype == "f16":
            params.update(SCALE="f16 pairs in u32", SCALE_ELEM="u32",
                          SCALE_LOAD="let p = unpack2x16float(w_s[i >> 1u]); return select(p.x, p.y, (i & 1u) == 1u);")
        else:
            params.update(SCALE="f32", SCALE_ELEM="f32", SCALE_LOAD="return w_s[i];")
    return _fill(_template(f"weights_{fmt}"), **params), len(WEIGHT_ARRAYS[fmt])


def matmul(profile: Profile, w: PackedWeight, *, n_rows: int, n_out: int, row0: int, tt: int,
           x_type: str, y_type: str, norm_eps: float | None = None, pair: bool = False, add: bool = False,
           last: bool = False, bias: bool = False) -> Kernel:
    """y[t, row0 + n] (=, += or silu-pair) W[n] . x'[t]; see wgsl/matmul.wgsl."""
    n, k = w.shape
    weights, nw = weight_snippet(w.format, w.scale_dtype, 3)
    extra, nxt = [], 3 + nw
    bias_load, norm_load = "return 0.0;", "return vec4<f32>(1.0);"
    if bias:
        extra.append(f"@group(0) @binding({nxt}) var<storage, read> bias: array<f32>;")
        bias_load, nxt = "return bias[i];", nxt + 1
    if norm_eps is not None:
        extra.append(f"@group(0) @binding({nxt}) var<storage, read> norm_w: array<vec4<f32>>;")
        norm_load, nxt = "return norm_w[i];", nxt + 1
    src = _fill(
        _template("matmul"), HEADER=_header(profile), K=k, N_ROWS=n_rows, N_OUT=n_out, ROW0=row0, TT=tt,
        NORM=str(norm_eps is not None).lower(), PAIR=str(pair).lower(), ADD=str(add).lower(),
        LAST=str(last).lower(), HAS_BIAS=str(bias).lower(), EPS=_f32(norm_eps or 0.0), XT=x_type, YT=y_type,
        WEIGHTS=weights, EXTRA_BINDINGS="\n".join(extra), NORM_LOAD=norm_load, BIAS_LOAD=bias_load,
        RED=128 * tt * (2 if pair else 1), FORMAT=w.format,
    )
    return _make("matmul", src, (UNIFORM, READ, WRITE) + (READ,) * (nxt - 3))


def embed(profile: Profile, w, *, row0: int) -> Kernel:
    n, k = w.shape
    weights, nw = weight_snippet(w.format, w.scale_dtype, 3)
    src = _fill(_template("embed"), HEADER=_header(profile), K=k, ROW0=row0, N_ROWS=n, WEIGHTS=weights, FORMAT=w.format)
    return _make("embed", src, (UNIFORM, READ, WRITE) + (READ,) * nw)


def rope_kv(profile: Profile, *, nq: int, nkv: int, hd: int, cap: int) -> Kernel:
    src = _fill(_template("rope_kv"), HEADER=_header(profile), NQ=nq, NKV=nkv, HD=hd, CAP=cap)
    return _make("rope_kv", src, (UNIFORM, READ, WRITE, WRITE, WRITE, READ))


def attention(profile: Profile, *, nq: int, nkv: int, hd: int, cap: int, window: int, scale: float) -> Kernel:
    src = _fill(_template("attention"), HEADER=_header(profile), NQ=nq, NKV=nkv, HD=hd, CAP=cap, WINDOW=window,
                SCALE=_f32(scale))
    return _make("attention", src, (UNIFORM, READ, READ, READ, WRITE))


def argmax(profile: Profile, *, vocab: int) -> Kernel:
    src = _fill(_template("argmax"), HEADER=_header(profile), V=vocab)
    return _make("argmax", src, (UNIFORM, READ, WRITE))
