"""Weight storage formats shared by the compiler, the kernels and both runtimes.

Every matrix W of shape [N, K] (N output rows, K input columns; y = W @ x) is stored as one or more
arrays of 32-bit words, row-major, so WGSL reads them as `array<u32>` without any extension:

| format   | arrays                                   | value of W[n, k]                            |
| -------- | ---------------------------------------- | ------------------------------------------- |
| f32      | weight u32[N*K] (f32 bits)               | weight[n*K + k]                             |
| f16      | weight u32[N*K/2] (two f16, low first)   | f16 at half index n*K + k                   |
| q4s      | qweight u32[N*K/8], scales[N*K/32]       | (nibble - 8) * scale[n, k/32]               |
| q4a      | qweight u32[N*K/8], scales, mins         | nibble * scale[n, k/32] + min[n, k/32]      |
| q8s      | qweight u32[N*K/4], scales               | int8 * scale[n, k/32]                       |

Nibble i (bits 4i..4i+3) of word w in row n holds k = 8w + i. Int8 lane i (bits 8i..8i+7) of word w
holds k = 4w + i. `scales`/`mins` are f16 (two per u32, low half first) when `scale_dtype` is
"f16", else f32; they are indexed by n * (K/32) + k/32 over the whole matrix. Group size is 32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

GROUP = 32
FORMATS = ("f32", "f16", "q4s", "q4a", "q8s")


@dataclass
class PackedWeight:
    """A matrix in one of FORMATS: `arrays` maps array name -> 1-D numpy array (any dtype)."""

    format: str
    shape: tuple[int, int]  # (N, K)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    scale_dtype: str = "f16"  # for q formats: "f16" or "f32"

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def row_slice(self, lo: int, hi: int) -> PackedWeight:
        """Rows [lo, hi) as a new PackedWeight (used to split tensors over the binding limit)."""
        n, k = self.shape
        out = {}
        for name, a in self.arrays.items():
            per_row = a.size // n if name in ("weight", "qweight") else None
            if per_row is None:  # scales / mins: K/32 per row, maybe packed two per word
                per_row_vals = k // GROUP
                vals = _unpack_vals(a, self.scale_dtype, n * per_row_vals)
                out[name] = _pack_vals(vals[lo * per_row_vals : hi * per_row_vals], self.scale_dtype)
            else:
                out[name] = a[lo * per_row : hi * per_row]
        return PackedWeight(self.format, (hi - lo, k), out, self.scale_dtype)


def permute_rows(p: PackedWeight, perm: np.ndarray) -> PackedWeight:
    """The matrix with rows reordered: row r of the result is row perm[r] of `p` (exact, any format)."""
    n, k = p.shape
    out = {}
    for name, a in p.arrays.items():
        if name in ("weight", "qweight"):
            out[name] = np.ascontiguousarray(a.reshape(n, -1)[perm]).reshape(-1)
        else:
            dtype = p.scale_dtype if name == "scales" else "f16"
            vals = _unpack_vals(a, dtype, n * (k // GROUP)).reshape(n, -1)[perm]
            out[name] = _pack_vals(vals.reshape(-1), dtype)
    return PackedWeight(p.format, p.shape, out, p.scale_dtype)


def _pack_vals(v: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "f32":
        return np.ascontiguousarray(v, dtype=np.float32)
    h = np.ascontiguousarray(v, dtype=np.float16)
    if h.size % 2:
        h = np.concatenate([h, np.zeros(1, np.float16)])
    return h


def _unpack_vals(a: np.ndarray, dtype: str, count: int) -> np.ndarray:
    if dtype == "f32":
        return a.view(np.float32)[:count]
    return a.view(np.float16)[:count]


def check_shape(fmt: str, shape: tuple[int, int], name: str) -> None:
    from webllm.errors import UnsupportedModelError

    n, k = shape
    need = GROUP  # every kernel walks the input dimension in groups of 32
    if k % need:
        raise UnsupportedModelError(
            f"tensor {name}: input dimension {k} is not a multiple of {need}, required by format {fmt}"
        )


def pack_float(w: np.ndarray, fmt: str) -> PackedWeight:
    """Store a float matrix [N, K] as f32 or f16 (no quantization)."""
    w = np.asarray(w, dtype=np.float32)
    if fmt == "f32":
        return PackedWeight("f32", w.shape, {"weight": w.reshape(-1).copy()})
    if fmt == "f16":
        return PackedWeight("f16", w.shape, {"weight": w.astype(np.float16).reshape(-1)})
    raise ValueError(fmt)


def quantize_q4s(w: np.ndarray, scale_dtype: str = "f16") -> PackedWeight:
    """Symmetric 4-bit, group 32: scale = max|w| / 7 per group; q = clamp(round(w/scale) + 8, 0, 15).

    The scale is rounded to `scale_dtype` first and q computed against the rounded scale, so the
    dequantized values are exactly what the kernels compute.
    """
    w = np.asarray(w, dtype=np.float32)
    n, k = w.shape
    g = w.reshape(n, k // GROUP, GROUP)
    amax = np.abs(g).max(axis=2)
    scale = amax / 7.0
    scale = scale.astype(np.float16).astype(np.float32) if scale_dtype == "f16" else scale
    inv = np.where(scale > 0, 1.0 / np.where(scale > 0, scale, 1.0), 0.0)
    q = np.clip(np.rint(g * inv[:, :, None]) + 8, 0, 15).astype(np.uint32)
    return PackedWeight(
        "q4s", (n, k),
        {"qweight": _pack_nibbles(q.reshape(n, k)), "scales": _pack_vals(scale.reshape(-1), scale_dtype)},
        scale_dtype,
    )


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """q: uint [N, K] values 0..15 -> u32 [N*K/8], nibble i of word w = element 8w+i."""
    q = q.reshape(-1, 8).astype(np.uint32)
    shifts = (np.arange(8, dtype=np.uint32) * 4)[None, :]
    return np.bitwise_or.reduce(q << shifts, axis=1).astype(np.uint32)


def _unpack_nibbles(words: np.ndarray) -> np.ndarray:
    shifts = (np.arange(8, dtype=np.uint32) * 4)[None, :]
    return ((words.reshape(-1, 1) >> shifts) & 0xF).reshape(-1)


def pack_q4a(q: np.ndarray, scale: np.ndarray, minv: np.ndarray) -> PackedWeight:
    """Asymmetric 4-bit from already-quantized data (GGUF Q4_1): q uint [N, K], scale/min [N, K/32]."""
    n, k = q.shape
    return PackedWeight(
        "q4a", (n, k),
        {"qweight": _pack_nibbles(q), "scales": _pack_vals(scale.reshape(-1), "f16"),
         "mins": _pack_vals(minv.reshape(-1), "f16")},
        "f16",
    )


def pack_q4s(q: np.ndarray, scale: np.ndarray) -> PackedWeight:
    """Symmetric 4-bit from already-quantized data (GGUF Q4_0): q uint [N, K] in 0..15, scale [N, K/32]."""
    n, k = q.shape
    return PackedWeight("q4s", (n, k), {"qweight": _pack_nibbles(q), "scales": _pack_vals(scale.reshape(-1), "f16")}, "f16")


def pack_q8s(q: np.ndarray, scale: np.ndarray) -> PackedWeight:
    """Symmetric 8-bit from already-quantized data (GGUF Q8_0): q int8 [N, K], scale [N, K/32]."""
    n, k = q.shape
    words = np.ascontiguousarray(q.astype(np.int8).reshape(-1)).view(np.uint32)
    return PackedWeight("q8s", (n, k), {"qweight": words.copy(), "scales": _pack_vals(scale.reshape(-1), "f16")}, "f16")


def dequantize(p: PackedWeight) -> np.ndarray:
    """The float32 matrix [N, K] that the kernels compute with (reference for tests)."""
    n, k = p.shape
    if p.format == "f32":
        return p.arrays["weight"].view(np.float32).reshape(n, k).copy()
    if p.format == "f16":
        return p.arrays["weight"].view(np.float16).astype(np.float32)[: n * k].reshape(n, k)
    ng = n * k // GROUP
    scale = _unpack_vals(p.arrays["scales"], p.scale_dtype, ng).astype(np.float32).reshape(n, k // GROUP, 1)
    if p.format == "q8s":
        q = p.arrays["qweight"].view(np.int8).astype(np.float32).reshape(n, k // GROUP, GROUP)
        return (q * scale).reshape(n, k)
    q = _unpack_nibbles(p.arrays["qweight"]).astype(np.float32).reshape(n, k // GROUP, GROUP)
    if p.format == "q4s":
        return ((q - 8.0) * scale).reshape(n, k)
    minv = _unpack_vals(p.arrays["mins"], "f16", ng).astype(np.float32).reshape(n, k // GROUP, 1)
    return (q * scale + minv).reshape(n, k)
