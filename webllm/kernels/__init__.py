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
    features: tuple[str, ...] = ()  # WebGPU features the device needs beyond the profile's (e.g. "subgroups")
    # WebGPU limits ("max..." ones, camelCase) the device must reach where the kernel needs more than the
    # WebGPU default, e.g. (("maxComputeWorkgroupStorageSize", 32768),)
    limits: tuple[tuple[str, int], ...] = ()

    def to_json(self) -> dict:
        return {"file": f"{self.name}.wgsl", "entry_point": "main", "bindings": list(self.bindings)}


@dataclass(frozen=True)
class UniformField:
    """One field of the per-step uniform (binding 0 of every kernel): 4 bytes, u32 or f32."""

    name: str
    type: str  # "u32" or "f32"
    default: float
    doc: str


# The per-step uniform, in order. The one definition: the WGSL `Step` struct of every kernel and the
# plan's `uniform` table (which runtimes write by field name) are both generated from it.
STEP_FIELDS: tuple[UniformField, ...] = (
    UniformField("n_tokens", "u32", 0, "tokens in this step (1 for decode, <= prefill chunk for prefill)"),
    UniformField("past", "u32", 0, "tokens already in the KV cache: position of this step's first token"),
    UniformField("counter", "u32", 0, "steps since the sampling parameters were set: with seed, picks the draw"),
    UniformField("seed", "u32", 0, "sampling seed"),
    UniformField("temperature", "f32", 0.0, "<= 0: greedy"),
    UniformField("top_p", "f32", 1.0, "nucleus mass, (0, 1]"),
    UniformField("top_k", "u32", 0, "sample among the top_k largest logits (ties kept); 0: no limit"),
    UniformField("min_p", "f32", 0.0, "drop tokens whose probability is below min_p times the largest"),
    UniformField("repetition_penalty", "f32", 1.0, "seen tokens: positive logits divided, negative multiplied"),
    UniformField("frequency_penalty", "f32", 0.0, "subtracted once per time a token was generated"),
    UniformField("presence_penalty", "f32", 0.0, "subtracted once if a token was generated"),
    UniformField("sample_flags", "u32", 0, "1 penalties, 2 logit_bias, 4 token_mask, 8 logprobs"),
    UniformField("n_logprobs", "u32", 0, "top logprobs to write to sample_out (<= MAX_TOP_LOGPROBS)"),
    UniformField("emit", "u32", 1, "0: a prefill chunk before the prompt's last; the sampler does nothing"),
    UniformField("kv_splits", "u32", 0, "most KV splits of decode attention (0: the compiled most, SPLITS)"),
)

# The sampler's buffers (FORMAT.md, "Sampling"): what the runtime writes and reads by name.
MAX_TOP_LOGPROBS = 20
SAMPLE_FLAGS = {"penalties": 1, "bias": 2, "mask": 4, "logprobs": 8}


def sampler_buffers(vocab: int) -> dict[str, int]:
    """Name -> bytes of the buffers the sample kernel binds besides logits and token_ids."""
    return {"logit_bias": 4 * vocab, "token_counts": 4 * vocab, "token_mask": 4 * ((vocab + 31) // 32),
            "sample_out": 4 * (2 + 2 * MAX_TOP_LOGPROBS)}


def uniform_table(fields: tuple[UniformField, ...] = STEP_FIELDS) -> dict:
    """The plan's `uniform` entry: buffer name, size (a multiple of 16) and the field table."""
    size = max(16, (4 * len(fields) + 15) // 16 * 16)
    return {"buffer": "uniform", "size": size,
            "fields": [{"name": f.name, "offset": 4 * i, "type": f.type, "default": f.default} for i, f in enumerate(fields)]}


def step_struct_fields(fields: tuple[UniformField, ...] = STEP_FIELDS) -> str:
    """The members of the WGSL `Step` struct, padded to the uniform's size."""
    lines = [f"    {f.name}: {f.type},  // {f.doc}" for f in fields]
    lines += [f"    _pad{i}: u32," for i in range(uniform_table(fields)["size"] // 4 - len(fields))]
    return "\n".join(lines)


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
    return _fill(_template("header"), ENABLE_F16="enable f16;" if profile.name == "f16" else "", ACT=profile.act,
                 STEP_FIELDS=step_struct_fields())


def _f32(v: float) -> str:
    s = repr(float(v))
    return s if ("e" in s or "." in s) else s + ".0"


def _make(kind: str, source: str, bindings: tuple[str, ...], features: tuple[str, ...] = (),
          limits: tuple[tuple[str, int], ...] = ()) -> Kernel:
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    return Kernel(f"{kind}_{digest}", source, bindings, features, limits)


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


def _weights_and_bias(w: PackedWeight, bias: bool, rope: dict | None = None,
                      norm_eps: float | None = None) -> tuple[dict, tuple[str, ...]]:
    """Template parameters declaring a matmul's weight arrays (from binding 3), optional bias and rope
    epilogue (`rope`: nq, nkv, hd; see wgsl/rope_store.wgsl), optional RMSNorm of x folded in
    (`norm_eps`; its weight is the last binding), and the kernel's binding types."""
    weights, nw = weight_snippet(w.format, w.scale_dtype, 3)
    params = {"WEIGHTS": weights, "EXTRA_BINDINGS": "", "BIAS_LOAD": "return 0.0;", "HAS_BIAS": str(bias).lower(),
              "FORMAT": w.format, "K": w.shape[1], "ROPE": str(rope is not None).lower(),
              "ROPE_STORE": "fn rope_store(t: u32, p: u32, pair_row: u32, a: f32, b: f32) {}"}
    if bias:
        params["EXTRA_BINDINGS"] = f"@group(0) @binding({3 + nw}) var<storage, read> bias: array<f32>;"
        params["BIAS_LOAD"] = "return bias[i];"
    bindings = (UNIFORM, READ, WRITE) + (READ,) * (nw + int(bias))
    if rope is not None:
        b = len(bindings)
        params["ROPE_STORE"] = _fill(_template("rope_store"), B=b, B1=b + 1, B2=b + 2, NQ=rope["nq"], NKV=rope["nkv"],
                                     HD=rope["hd"])
        bindings += (WRITE, WRITE, READ)
    params.update(NORM=str(norm_eps is not None).lower(), EPS=_f32(norm_eps or 0.0),
                  NORM_DECL="fn norm_weight(i: u32) -> vec4<f32> { return vec4<f32>(1.0); }")
    if norm_eps is not None:
        params["NORM_DECL"] = (f"@group(0) @binding({len(bindings)}) var<storage, read> norm_w: array<vec4<f32>>;\n"
                               "fn norm_weight(i: u32) -> vec4<f32> { return norm_w[i]; }")
        bindings += (READ,)
    return params, bindings


WEBGPU_WORKGROUP_STORAGE = 16384  # WebGPU's default (and guaranteed) maxComputeWorkgroupStorageSize
MATMUL_STAGINGS = ("halves", "wide", "dbuf")  # matmul_tiled's STAGING modes, in its numbering


def matmul_tiled(profile: Profile, w: PackedWeight, *, n_rows: int, n_out: int, row0: int, x_type: str, y_type: str,
                 pair: bool = False, add: bool = False, bias: bool = False, rope: dict | None = None,
                 tokens: int = 64, staging: str = "halves", half: bool = False) -> Kernel:
    """The prefill matmul: `tokens` (32, 64 or 128) x 128-row tiles (64 with `pair`), 4 (128: 8) tokens x 8
    rows per thread; see wgsl/matmul_tiled.wgsl. `staging` (MATMUL_STAGINGS): how each group of 32 k goes
    through workgroup memory: "halves" (16 KiB, 4 barriers per group), or with tokens 128 "wide" (whole)
    or "dbuf" (double-buffered halves), 2 barriers per group in 32 KiB (the kernel's `limits` say so).
    With `half` (the f16 profile only), x and W are staged and multiplied in f16, each group's products
    summed in f16 and added to f32 totals: half the workgroup memory and its reads (an H100 through
    Vulkan runs f16 FMAs at about the f32 rate), about 3x the error, so plans carry such variants only
    on request (lower.prefill_variant_names).
    Grid: x = ceil(n_rows / matmul_tile_rows(pair)), y = ceil(T / tokens)."""
    if half and profile.name != "f16":
        raise ValueError(f"matmul_tiled: f16 arithmetic needs the f16 profile, not {profile.name}")
    if tokens not in (32, 64, 128):
        raise ValueError(f"matmul_tiled: tokens must be 32, 64 or 128, not {tokens}")
    if staging not in MATMUL_STAGINGS:
        raise ValueError(f"matmul_tiled: staging must be one of {', '.join(MATMUL_STAGINGS)}, not {staging!r}")
    if staging != "halves" and tokens != 128:
        raise ValueError(f"matmul_tiled: {staging} staging needs 128 tokens (256 threads), not {tokens}")
    params, bindings = _weights_and_bias(w, bias, rope)
    ks = 16 if staging == "halves" else 32  # k held in workgroup memory
    src = _fill(_template("matmul_tiled"), HEADER=_header(profile), SHARED=_matmul_shared(params, y_type), N_ROWS=n_rows,
                N_OUT=n_out, ROW0=row0, PAIR=str(pair).lower(), ADD=str(add).lower(), XT=x_type, YT=y_type, BM=tokens,
                TPT=8 if tokens == 128 else 4, TILE_ROWS=matmul_tile_rows(pair), STAGING=MATMUL_STAGINGS.index(staging), KS=ks,
                F16_MATH=str(half).lower(), MT="f16" if half else "f32", **params)
    shared = ks * (tokens + 128) * (2 if half else 4)  # xs [KS][tokens] and ws [KS][128 rows]
    limits = (("maxComputeWorkgroupStorageSize", shared),) if shared > WEBGPU_WORKGROUP_STORAGE else ()
    return _make("matmul_tiled", src, bindings, limits=limits)


# matmul_q8: per weight format, a staged row's block as 8 words of bytes in its inputs' order (W8), its
# scale and min. 4-bit: the nibbles masked in place (word 2j: nibbles 0, 2, 4, 6 of word j, 2j + 1 the
# odd ones; quant_q8 NIBBLES), q4s as the signed bytes n - 8 (| 0x80 per byte, - 8, ^ 0x80: no borrow
# crosses a byte); q8s: its int8 words as they are.
Q8_STAGING = {
    "q4s": """fn sb(v: u32) -> u32 { return ((v | 0x80808080u) - 0x08080808u) ^ 0x80808080u; }
fn q8_w(r: w_Raw) -> W8 {
    let q = r.q;
    return W8(vec4<u32>(sb(q.x & M4), sb((q.x >> 4u) & M4), sb(q.y & M4), sb((q.y >> 4u) & M4)),
              vec4<u32>(sb(q.z & M4), sb((q.z >> 4u) & M4), sb(q.w & M4), sb((q.w >> 4u) & M4)), r.s, 0.0);
}""",
    "q4a": """fn q8_w(r: w_Raw) -> W8 {
    let q = r.q;
    return W8(vec4<u32>(q.x & M4, (q.x >> 4u) & M4, q.y & M4, (q.y >> 4u) & M4),
              vec4<u32>(q.z & M4, (q.z >> 4u) & M4, q.w & M4, (q.w >> 4u) & M4), r.s, r.m);
}""",
    "q8s": """fn q8_w(r: w_Raw) -> W8 { return W8(r.a, r.b, r.s, 0.0); }""",
}
Q8_PREFILL_FORMATS = tuple(Q8_STAGING)  # weight formats matmul_q8 multiplies
MATMUL_Q8_TOKENS = 64  # tokens per workgroup of matmul_q8 (its staging takes 2 threads a token)


def matmul_q8(profile: Profile, w: PackedWeight, *, n_rows: int, n_out: int, row0: int, y_type: str,
              pair: bool = False, add: bool = False, bias: bool = False, rope: dict | None = None) -> Kernel:
    """The prefill matmul with integer dot products (wgsl/matmul_q8.wgsl) for weights of
    Q8_PREFILL_FORMATS: x as int8 blocks of 32 (quant_q8's q8x and q8d, the last binding; ordered for
    the format: quant_q8_nibbles), 64 tokens x 128 rows a workgroup (64 with `pair`), the epilogues of
    matmul_tiled. Grid: x = ceil(n_rows / matmul_tile_rows(pair)), y = ceil(T / 64)."""
    if w.format not in Q8_PREFILL_FORMATS:
        raise ValueError(f"matmul_q8: weights of format {w.format}, not one of {', '.join(Q8_PREFILL_FORMATS)}")
    params, bindings = _weights_and_bias(w, bias, rope)
    src = _fill(_template("matmul_q8"), HEADER=_header(profile), SHARED=_matmul_shared(params, y_type), N_ROWS=n_rows,
                N_OUT=n_out, ROW0=row0, PAIR=str(pair).lower(), ADD=str(add).lower(), YT=y_type, BM=MATMUL_Q8_TOKENS,
                TILE_ROWS=matmul_tile_rows(pair), BD=len(bindings), MIN=str(w.format == "q4a").lower(),
                Q8_W=Q8_STAGING[w.format], **params)
    return _make("matmul_q8", src, bindings + (READ,), features=("packed_4x8_integer_dot_product",))



def quant_q8_nibbles(fmt: str) -> bool:
    """Whether matmul_q8 on weights of `fmt` takes its input's bytes in 4-bit words' nibble order."""
    return fmt != "q8s"


def quant_q8(profile: Profile, *, k: int, x_type: str, nibbles: bool = True) -> Kernel:
    """A prefill matmul's input [T, k] as int8 blocks of 32 for matmul_q8 (wgsl/quant_q8.wgsl): q8x
    [T, k/32] pairs of vec4<u32> (with `nibbles` in 4-bit words' nibble order, else in order), q8d
    [T, k/32] vec2<f32> (d, d sum q). Grid: x = ceil(k / 32 / 64), y = ceil(T / 4)."""
    if k % 32:
        raise ValueError(f"quant_q8: k {k} is not a multiple of 32")
    src = _fill(_template("quant_q8"), HEADER=_header(profile), K=k, XT=x_type, NIBBLES=str(nibbles).lower())
    return _make("quant_q8", src, (UNIFORM, READ, WRITE, WRITE), features=("packed_4x8_integer_dot_product",))


def _matmul_shared(params: dict, y_type: str) -> str:
    """wgsl/matmul_shared.wgsl (staged rows, the epilogue) for a prefill matmul with these weight parameters."""
    return _fill(_template("matmul_shared"), BIAS_LOAD=params["BIAS_LOAD"], YT=y_type)


def matmul_tile_rows(pair: bool) -> int:
    """Output rows per workgroup of matmul_tiled: 128 staged weight rows, half gate and half up with `pair`."""
    return 64 if pair else 128


# gemv.wgsl COMBINE_STAGED: the o matmul's combined x in workgroup memory, this much at a time (Llama-3.1-8B's
# 4,096 inputs in f16 at once, in f32 in two ranges); with the reduction's arrays it stays within WebGPU's
# default 16 KiB
COMBINE_STAGE_BYTES = 8192
COMBINE_STAGE_CHUNKS = 4  # most ranges


def combine_staged(k: int, act_bytes: int) -> int:
    """In how many ranges of inputs the o matmul stages its combine of decode attention's splits (K
    inputs) in workgroup memory (gemv.wgsl COMBINE_STAGED, XW_CHUNKS); 0: not staged (each row set
    combines for itself)."""
    groups = k // 32
    for chunks in range(1, COMBINE_STAGE_CHUNKS + 1):
        if groups % chunks == 0 and k * act_bytes <= chunks * COMBINE_STAGE_BYTES:
            return chunks
    return 0


# weight formats whose decode matmul can read int8 x (gemv_q8_in.wgsl)
Q8_FORMATS = ("q4s", "q4a")


def q8_x_blocks(x) -> tuple:
    """x [k] (float) as gemv's int8 x (gemv_q8_in.wgsl, what a Q8_OUT matmul writes): blocks of 8 inputs,
    d = the block's largest |x| / 127, q = round(x / d). Returns (words: u32 [k / 2], the dequantized
    x = d q [k]): the layout's reference encoder, for tests and benchmarks (the runtime writes it on
    the GPU). k a multiple of 32."""
    import numpy as np

    x = np.asarray(x, np.float64)
    k = x.size
    d = np.abs(x.reshape(-1, 8)).max(1) / 127
    q = np.rint(x.reshape(-1, 8) / np.where(d > 0, d, 1)[:, None]).astype(np.int8)
    g = q.reshape(k // 32, 4, 8)
    b = np.empty((k // 32, 2, 4, 4), np.int8)  # group, even / odd inputs, word, byte
    b[:, 0], b[:, 1] = g[:, :, 0::2], g[:, :, 1::2]
    dc = np.stack([d, 8 * d * q.sum(1, dtype=np.int64)], 1).astype(np.float32)
    words = np.concatenate([b.reshape(-1).view(np.uint32), dc.reshape(-1).view(np.uint32)])
    return words, (q.astype(np.float64) * d[:, None]).reshape(k)


def q8_x_values(words, k: int) -> tuple:
    """The inverse of q8_x_blocks: gemv's int8 x of `k` inputs -> (q [k] int, d [k / 8], c [k / 8])."""
    import numpy as np

    words = np.asarray(words, np.uint32)
    b = words[: k // 4].view(np.int8).reshape(k // 32, 2, 4, 4)  # group, even / odd inputs, word, byte
    x = np.empty((k // 32, 4, 8), np.int32)
    x[:, :, 0::2], x[:, :, 1::2] = b[:, 0], b[:, 1]
    dc = words[k // 4: k // 2].view(np.float32).reshape(k // 8, 2)
    return x.reshape(k), dc[:, 0].copy(), dc[:, 1].copy()


def q8_staging_fits(k: int, head_dim: int) -> bool:
    """Whether the o matmul (K inputs, heads of head_dim) can stage its combined x as int8 blocks
    (gemv `q8_staged`): blocks of 8 within a head, and ranges of COMBINE_STAGE_BYTES at 2 bytes an input."""
    return head_dim % 8 == 0 and bool(combine_staged(k, 2))


GEMV_THREADS = (256, 512)  # gemv's workgroup sizes: WebGPU's default limit, and the "w" decode variants'


def gemv_threads(k: int, n_rows: int, lanes: int, *, pair: bool, int8_x: bool, x_bytes: int,
                 threads: int = 256) -> tuple[int, int]:
    """(R, L) of gemv.wgsl: rows per row set and threads per row set; a workgroup holds 256 // lanes
    rows in S = rows // R row sets, so S * L threads.
    R: 4, or 2 with `pair` where x is at most 8 KiB: there 8 rows' words and sums a thread cost the
    gate_up matmul more (fewer threads resident) than reading x twice as often; with more x, the reads
    cost more (H100, decode tok/s with 2 against 4: 8B shape f16 (8 KiB of x) 337 / 328, f32 (16 KiB)
    285 / 292; 1B f16 1,226 / 1,197, f32 (8 KiB) 1,110 / 1,091). With int8 x (`int8_x`: few registers
    for x) 4 with `pair`, else 2 (H100, one matmul in a chain: 8B down 15.0 us with 4 rows, 14.2 with
    2; qkv 8.3 / 7.9), and 4 again in workgroups of 512 threads where x exceeds 16 KiB (more than 8,192
    inputs: the 8B's down, 16 rows a workgroup there, lower.residual_lanes), which then reads x half as
    often (H100, decode tok/s at context 1 / 4,096, `q8gemv32sgw`: f16 447.1 / 382.5 and 446.8 / 382.8
    against 441.7 and 442.2 at context 1, f32 446.0 / 379.6 against 442.1 / 376.0).
    L: a power of two in 32..128, capped by the groups of 32 along K and by `threads` a workgroup: enough
    for 512 x `threads` threads on the whole matrix (a large GPU's worth of memory requests in flight),
    so few-row matrices (an 8B's down and o: 4,096 rows) spread K over more threads while many-row ones
    (gate_up, the output head) keep one warp per row set and reduce less. `threads` 512 (the "w" decode
    variants, beyond WebGPU's default limit of 256) doubles both: on an H100 the 8B's qkv then runs 256
    threads a workgroup (within the default), o and down 512 (and gate_up, with 32 rows a workgroup:
    lower.pair_lanes). Llama-3.1-8B Q4_0 there, decode tok/s at context 1 / 4,096 (docs/PERFORMANCE.md):
    f16 434 / 371 against 427 / 361, f32 434 / 367 against 424 / 348; 1,024 threads (and 2x again)
    lost (414 / 356)."""
    if threads not in GEMV_THREADS:
        raise ValueError(f"gemv: threads must be one of {GEMV_THREADS}, not {threads}")
    rw = 256 // lanes
    if int8_x:
        r = 4 if pair or (threads > 256 and k > 8192) else 2
    else:
        r = 2 if pair and k * x_bytes <= 8192 else 4
    r = min(r, rw)
    want = min(512 * threads * r // n_rows, k // 32)
    el = 32 + 32 * min(1, want // 64) + 64 * min(1, want // 128)
    return r, min(el, threads // (rw // r))


def round16(n: int) -> int:
    """n rounded up to a multiple of 16 (buffer sizes; workgroup variables as WebGPU counts them)."""
    return -(-n // 16) * 16


def gemv(profile: Profile, w: PackedWeight, *, n_rows: int, row0: int, x_type: str, y_type: str, lanes: int = 32,
         pair: bool = False, add: bool = False, bias: bool = False, rope: dict | None = None,
         norm_eps: float | None = None, x_last: bool = False, norm_in: int = 0, norm_out_offset: int | None = None,
         eps: float = 0.0, combine_in: dict | None = None, subgroups: bool = False, q8_in: bool = False,
         q8_out: int = 0, q8_staged: bool = False, threads: int = 256) -> Kernel:
    """The decode matmul (one token); see wgsl/gemv.wgsl. 256 // lanes rows per workgroup, in at most
    `threads` threads (gemv_threads; beyond 256 the kernel's `limits` say what the device needs). `norm_eps`:
    x is the residual stream, RMSNormed in the kernel; `x_last`: x is the step's last token's row.
    `norm_in` > 0: x is x * norm weight and its sum of squares is that many partials (binding after the
    weights); `norm_out_offset`: also write the next norm's x * weight and this workgroup's partial at
    that offset (bindings: norm weight, xo, ssq). `eps`: the norm's epsilon for norm_in. `combine_in`
    (nq, hd, window, splits): x is decode attention's partials [splits, K] (act), combined as loaded;
    the partials' lse [splits, nq] f32 is the last binding (gemv_combine_in.wgsl). `subgroups`: the row
    sets' sums meet through subgroup operations (the kernel then needs the `subgroups` feature).
    `q8_in`: x is int8 blocks (2 bytes an input, written by a `q8_out` matmul) multiplied with integer
    dot products (4-bit weights: Q8_FORMATS; wgsl/gemv_q8_in.wgsl); `q8_out` > 0: the output (the PAIR product,
    or with norm_out the next norm's x * weight) is written so, for a reader of that many inputs (all
    rows of this matmul). `q8_staged` (with `combine_in`): the combined x is staged in workgroup memory
    as such blocks and multiplied the same way (needs 4-bit weights and head_dim % 8 == 0)."""
    assert not (norm_in and norm_eps is not None)
    if q8_in and (w.format not in Q8_FORMATS or norm_eps is not None or x_last or combine_in is not None):
        raise ValueError("gemv: int8 x needs 4-bit weights and x from a q8_out matmul")
    if q8_staged and (w.format not in Q8_FORMATS or combine_in is None
                      or not q8_staging_fits(w.shape[1], combine_in["hd"])):
        raise ValueError("gemv: int8 staging needs 4-bit weights and a staged combine of heads of 8k inputs")
    if q8_out and ((256 // lanes) % 8 or row0 % 8):
        raise ValueError(f"gemv: int8 output needs workgroups and parts of whole blocks of 8 rows (lanes {lanes}, row0 {row0})")
    if q8_out and not (pair and not add or norm_out_offset is not None) or q8_out % 32:
        raise ValueError("gemv: int8 output is the PAIR product or the next norm's x, of whole groups")
    params, bindings = _weights_and_bias(w, bias, rope, norm_eps)
    decl = ["fn ssq_at(i: u32) -> f32 { return 0.0; }",
            "fn xo_store(o: u32, h: f32) {}\nfn nw_at(o: u32) -> f32 { return 0.0; }", "fn ssq_store(i: u32, v: f32) {}"]
    if norm_in:
        params["EPS"] = _f32(eps)
        decl[0] = (f"@group(0) @binding({len(bindings)}) var<storage, read> ssq_in: array<f32>;\n"
                   "fn ssq_at(i: u32) -> f32 { return ssq_in[i]; }")
        bindings += (READ,)
    if norm_out_offset is not None:
        b = len(bindings)
        decl[1] = (f"@group(0) @binding({b}) var<storage, read> nw_out: array<f32>;\n"
                   f"@group(0) @binding({b + 1}) var<storage, read_write> xo: array<{'u32' if q8_out else 'act'}>;\n"
                   "fn nw_at(o: u32) -> f32 { return nw_out[o]; }\n"
                   + "fn xo_store(o: u32, h: f32) { " + ("" if q8_out else "xo[o] = act(h * nw_out[o]); ") + "}")
        decl[2] = (f"@group(0) @binding({b + 2}) var<storage, read_write> ssq_out: array<f32>;\n"
                   "fn ssq_store(i: u32, v: f32) { ssq_out[i] = v; }")
        bindings += (READ, WRITE, WRITE)
    params["NORM_DECL"] += "\n" + "\n".join(decl)
    # staged combine: in ranges of at most COMBINE_STAGE_BYTES (int8 blocks: 2 bytes an input)
    staged = combine_staged(w.shape[1], 2 if x_type == "f16" or q8_staged else 4) if combine_in is not None else 0
    groups = w.shape[1] // 32 // staged if staged else 0  # per range
    params.update(COMBINE_IN=str(combine_in is not None).lower(), COMBINE_STAGED=str(bool(staged)).lower(),
                  XW_LEN=8 * groups if staged and not q8_staged else 1, X8W_LEN=2 * groups if q8_staged else 1,
                  D8W_LEN=4 * groups if q8_staged else 1, XW_CHUNKS=staged or 1, PAIR_U=int(pair),
                  COMBINE_DECL="fn combined_x(g: u32) -> X8 { return X8(); }\nconst CV = 1u;\nfn stage_vec4s(v: u32, o: u32) {}")
    if combine_in is not None:
        c = combine_in
        params["COMBINE_DECL"] = _fill(_template("gemv_combine_in"), B=len(bindings), NQ=c["nq"], HD=c["hd"],
                                       SPLITS_FN=_splits_fn(c["splits"], c["window"]), XT=x_type)
        bindings += (READ,)
    params.update(NORM_IN=str(bool(norm_in)).lower(), NSSQ=norm_in, NORM_OUT=str(norm_out_offset is not None).lower(),
                  SSQ_OFF=norm_out_offset or 0)
    if subgroups:
        params.update(ENABLE_SUBGROUPS="enable subgroups;", REDUCE=_template("gemv_reduce_subgroups"),
                      SUBGROUP_BUILTINS=", @builtin(subgroup_size) sg_size: u32", SUBGROUP_ARGS=", sg_size")
    else:
        params.update(ENABLE_SUBGROUPS="", REDUCE=_template("gemv_reduce_tree"), SUBGROUP_BUILTINS="", SUBGROUP_ARGS="")
    # x's vec4s read as each word needs them where x is f32 and the weights q4s (gemv_rows_q4s.wgsl)
    rows_first = w.format == "q4s" and x_type == "f32" and (combine_in is None or bool(staged)) and not (q8_in or q8_staged)
    params.update(ROWS_FIRST=str(rows_first).lower(), ROWS_FIRST_FNS=_template("gemv_rows_q4s") if rows_first else (
        "fn accumulate_rows_first(g: u32, rows: vec4<u32>, a: ptr<function, vec4<f32>>, b: ptr<function, vec4<f32>>, "
        "ss: ptr<function, f32>) {}"))
    q8_x = ("fn q8_x(g: u32) -> Q8X {\n    let r = g - xw_g0;\n"
            "    return Q8X(x8w[2u * r], x8w[2u * r + 1u], vec4<f32>(d8w[4u * r], d8w[4u * r + 1u]), "
            "vec4<f32>(d8w[4u * r + 2u], d8w[4u * r + 3u]));\n}" if q8_staged else
            "fn q8_x(g: u32) -> Q8X {\n    return Q8X(x[2u * g], x[2u * g + 1u], bitcast<vec4<f32>>(x[K / 16u + 2u * g]), "
            "bitcast<vec4<f32>>(x[K / 16u + 2u * g + 1u]));\n}")
    q8_row = ("return dot(p, dv) * w_half_at(i, w_s[i >> 1u]) + w_half_at(i, w_m[i >> 1u]) * (0.125 * c);"
              if w.format == "q4a" else "return (dot(p, dv) - c) * w_scale(i);")
    q8_fns = [_fill(_template("gemv_q8_in"), Q8_X=q8_x, Q8_ROW=q8_row) if q8_in or q8_staged else
              "fn accumulate_q8(g: u32, rows: vec4<u32>, a: ptr<function, vec4<f32>>, b: ptr<function, vec4<f32>>) {}",
              _fill(_template("gemv_q8_out"), Q8_OUT_BUF="xo" if norm_out_offset is not None else "y") if q8_out else
              "var<workgroup> q8v: array<f32, 1>;\nfn q8_store_block(t: u32, first_row: u32) {}"]
    params.update(Q8_IN=str(q8_in).lower(), Q8_STAGED=str(q8_staged).lower(), Q8_OUT=str(bool(q8_out)).lower(),
                  Q8_K=q8_out, Q8_FNS="\n".join(q8_fns))
    if q8_in:
        x_type = "u32"
    if q8_out and pair:
        y_type = "u32"
    r, el = gemv_threads(w.shape[1], n_rows, lanes, pair=pair, int8_x=q8_in or q8_staged,
                         x_bytes=2 if x_type == "f16" else 4, threads=threads)
    src = _fill(_template("gemv"), HEADER=_header(profile), N_ROWS=n_rows, ROW0=row0, LANES=lanes, R=r, L=el,
                X_LAST=str(x_last).lower(), PAIR=str(pair).lower(), ADD=str(add).lower(), XT=x_type, YT=y_type, **params)
    # int8 x or output: WGSL's dot4I8Packed / pack4xI8, a language feature (variant_features, FORMAT.md)
    feats = (("packed_4x8_integer_dot_product",) if q8_in or q8_out or q8_staged else ()) + (("subgroups",) if subgroups else ())
    rw = 256 // lanes
    t = rw // r * el
    # workgroup memory (gemv.wgsl's var<workgroup>s; each rounded up to 16 bytes as WebGPU counts them):
    # red_s, red_q, red_a, red_b, xw, x8w, d8w, q8v
    shared = sum(round16(n) for n in (4 * t, 4 * rw, 16 * t, 16 * ((t - 1) * pair + 1),
                                       params["XW_LEN"] * (8 if x_type == "f16" else 16), 16 * params["X8W_LEN"],
                                       8 * params["D8W_LEN"], 4 * rw if q8_out else 4))
    limits = ((("maxComputeInvocationsPerWorkgroup", t), ("maxComputeWorkgroupSizeX", t)) if t > 256 else ()) + (
        (("maxComputeWorkgroupStorageSize", shared),) if shared > WEBGPU_WORKGROUP_STORAGE else ())
    return _make("gemv", src, bindings, feats, tuple(sorted(limits)))



def rmsnorm(profile: Profile, *, hidden: int, eps: float, last: bool) -> Kernel:
    src = _fill(_template("rmsnorm"), HEADER=_header(profile), H=hidden, EPS=_f32(eps), LAST=str(last).lower())
    return _make("rmsnorm", src, (UNIFORM, READ, WRITE, READ))


def embed(profile: Profile, w, *, row0: int) -> Kernel:
    n, k = w.shape
    weights, nw = weight_snippet(w.format, w.scale_dtype, 3)
    src = _fill(_template("embed"), HEADER=_header(profile), K=k, ROW0=row0, N_ROWS=n, WEIGHTS=weights, FORMAT=w.format)
    return _make("embed", src, (UNIFORM, READ, WRITE) + (READ,) * nw)


KV_SPLIT_UNIT = 64  # decode attention's split spans are multiples of this many positions


def _splits_fn(splits: int, window: int) -> str:
    """WGSL of `kv_splits(p)`: how decode attention cuts a step's KV range (wgsl/attention_splits.wgsl)."""
    return _fill(_template("attention_splits"), SPLITS=splits, WINDOW=window, UNIT=KV_SPLIT_UNIT)


def attention(profile: Profile, *, nq: int, nkv: int, hd: int, window: int, scale: float, splits: int = 0) -> Kernel:
    """Attention with one workgroup per (head, token); `splits` > 0: decode (one token) over at most that
    many KV splits, writing per-split partials for the o matmul (see wgsl/attention.wgsl)."""
    if splits:
        out_decl = ("@group(0) @binding(4) var<storage, read_write> part_o: array<act>;\n"
                    "@group(0) @binding(5) var<storage, read_write> part_lse: array<f32>;")
        write_out = """    let slot = wid.z * NQ + h;
    for (var e = 0u; e < DPT; e++) {
        let d = lid + 64u * e;
        if (d < HD) { part_o[slot * HD + d] = act(acc[e] / l); }
    }
    if (lid == 0u) { part_lse[slot] = m + log(l); }"""
        bindings = (UNIFORM, READ, READ, READ, WRITE, WRITE)
    else:
        out_decl = "@group(0) @binding(4) var<storage, read_write> out: array<act>;"
        write_out = """    for (var e = 0u; e < DPT; e++) {
        let d = lid + 64u * e;
        if (d < HD) { out[qbase + d] = act(acc[e] / l); }
    }"""
        bindings = (UNIFORM, READ, READ, READ, WRITE)
    src = _fill(_template("attention"), HEADER=_header(profile), NQ=nq, NKV=nkv, HD=hd, WINDOW=window,
                SCALE=_f32(scale), DECODE=str(bool(splits)).lower(), SPLITS_FN=_splits_fn(max(1, splits), window),
                OUT_DECL=out_decl, WRITE_OUT=write_out)
    return _make("attention", src, bindings)


def _decode_head_blocks(g: int, hd: int) -> int:
    """Head blocks of attention_decode's V phase: the largest divisor of G with (hd / 8) * blocks <= 16,
    so that 16 row groups of (slot, block) threads fit in 256 (each thread then sums G / blocks heads)."""
    return max(d for d in range(1, g + 1) if g % d == 0 and hd // 8 * d <= 16)


def attention_decode_heads(*, nq: int, nkv: int, hd: int) -> int:
    """Query heads per workgroup of attention_decode (its GW): one where one head's V slots fill the
    workgroup's 16 row groups (head_dim >= 128), else two where the G = nq / nkv heads sharing a KV
    head pair up, else one. More heads a workgroup read each K and V row fewer times but give each V
    thread a softmax and sums per head and end the split in a pass per head; at head_dim 64 one head
    leaves half the (slot, row group) pairs of a 256-thread workgroup to 2 rows a chunk instead of 4.
    The H100 figures are in wgsl/attention_decode.wgsl."""
    g = nq // nkv
    return 1 if hd >= 128 or g % 2 else 2


def attention_decode_fits(*, nq: int, nkv: int, hd: int, heads_per_wg: int = 0) -> bool:
    """Whether attention_decode serves this shape: rows in 4 to 16 slots of 8 dims, at most 8 query heads
    per KV head (the most a workgroup's named registers take, where `heads_per_wg` puts them all in
    one), and workgroup memory within WebGPU's default 16 KiB for its heads per workgroup."""
    if hd % 8 or not 32 <= hd <= 128 or nq // nkv > 8:
        return False
    g = heads_per_wg or attention_decode_heads(nq=nq, nkv=nkv, hd=hd)  # heads per workgroup
    return _decode_words(g, hd, 1) <= 4096


def _decode_words(g: int, hd: int, halves: int) -> int:
    """Workgroup memory of attention_decode in 4-byte words, with `halves` (1 or 2) chunks of partial
    dots: qs, sc (the partial dots, or at the end two vec4 of V sums a V thread), lred + mred."""
    rg = _decode_row_groups(g, hd)
    vt = hd // 8 * _decode_head_blocks(g, hd) * rg  # threads with V work
    return g * hd + 4 * max(halves * g * 64, 2 * vt) + 2 * rg * _decode_head_blocks(g, hd)


def _decode_row_groups(g: int, hd: int) -> int:
    """Row groups of attention_decode's V phase: 32 (2 rows of a 64-row chunk a thread) where the
    (slot, head block) threads number at most 8 (head_dim 64, one head block), so that all 256 threads
    take V rows; else 16 (4 rows a thread)."""
    return 32 if hd // 8 * _decode_head_blocks(g, hd) <= 8 else 16


def attention_decode(profile: Profile, *, nq: int, nkv: int, hd: int, window: int, scale: float, splits: int,
                     heads_per_wg: int = 0) -> Kernel:
    """Decode attention, one workgroup per (KV head, block of `heads_per_wg` of the query heads sharing
    it, split), at most `splits` splits, writing per-split partials for the o matmul; heads_per_wg 0:
    attention_decode_heads. The grid's x is nq / heads_per_wg. See wgsl/attention_decode.wgsl."""
    gw = heads_per_wg or attention_decode_heads(nq=nq, nkv=nkv, hd=hd)  # a divisor of nq / nkv (lower checks --decode-heads)
    src = _fill(_template("attention_decode"), HEADER=_header(profile), NQ=nq, NKV=nkv, HD=hd, SCALE=_f32(scale),
                SPLITS_FN=_splits_fn(splits, window), NHB=_decode_head_blocks(gw, hd), GW=gw, RG=_decode_row_groups(gw, hd),
                HALVES=2 if _decode_words(gw, hd, 2) <= 4096 else 1)
    return _make("attention_decode", src, (UNIFORM, READ, READ, READ, WRITE, WRITE))


ATTN_TILED_WG_BYTES = 16384  # WebGPU's default maxComputeWorkgroupStorageSize


def attention_tiled_slots(*, nq: int, nkv: int) -> int:
    """Query-row slots of an attention_tiled workgroup: 32, or 64 where more heads share a KV head."""
    return 32 if nq // nkv <= 32 else 64


def attention_tiled_tokens(*, nq: int, nkv: int) -> int:
    """Query tokens per workgroup of attention_tiled: its row slots over the nq / nkv heads sharing a KV
    head (8 tokens x 4 heads for Llama-3)."""
    return max(1, attention_tiled_slots(nq=nq, nkv=nkv) // (nq // nkv))


def attention_tiled_fits(*, nq: int, nkv: int, hd: int) -> bool:
    """Whether attention_tiled serves this shape: head_dim splits into 4 shares of vec4, at most 64
    query heads share a KV head, and a block of 4 positions fits 16 KiB (head_dim up to 256)."""
    if hd % 16 or nq // nkv > 64:
        return False
    return attention_tiled_bytes(hd=hd, slots=attention_tiled_slots(nq=nq, nkv=nkv), split=attention_tiled_split(hd),
                                 stage_bytes=4, block=4) <= ATTN_TILED_WG_BYTES


def attention_tiled_bytes(*, hd: int, slots: int, split: int, stage_bytes: int, block: int) -> int:
    """Workgroup memory of attention_tiled: a block's K and V (stage_bytes an element) and its partial
    dots (4 bytes per position, row slot and share of head_dim)."""
    return block * (2 * hd * stage_bytes + 4 * slots * split)


def attention_tiled_block(*, hd: int, slots: int, split: int, stage_bytes: int, rows_per_thread: int) -> int:
    """Positions per block of attention_tiled: the most (a multiple of 4, at least 4) that fit 16 KiB
    of workgroup memory and keep the block's scores (blocks x rows a thread) within 16 registers (the
    softmax and p * V are unrolled over the block: at 32 SwiftShader's shader compiler, Dawn's
    software adapter in test_web_node, grew past 8 GB on the conformance package)."""
    bk = max(4, 16 // rows_per_thread // 4 * 4)
    while bk > 4 and attention_tiled_bytes(hd=hd, slots=slots, split=split, stage_bytes=stage_bytes,
                                           block=bk) > ATTN_TILED_WG_BYTES:
        bk -= 4
    return bk


def attention_tiled_split(hd: int) -> int:
    """Default threads per row group of attention_tiled: 4 (2 rows a thread then keep 2 x 2 x head_dim
    / 4 = 128 registers of q and output sums at head_dim 128). On an H100 (benchmarks/attention_bench.py,
    512 tokens, f16): Llama-3.1-8B's heads 176 µs with 4 threads a row group against 222 with 8, and
    the kernel before this tiling 1,097; Llama-3.2-1B's (head_dim 64) 116-120 µs with 4, 180 with 8."""
    return 4


def attention_tiled(profile: Profile, *, nq: int, nkv: int, hd: int, window: int, scale: float,
                    rows_per_thread: int = 2, split: int | None = None, stage: str = "f32",
                    block: int | None = None) -> Kernel:
    """Prefill attention, one workgroup per (KV head, attention_tiled_tokens query tokens); see
    wgsl/attention_tiled.wgsl. A thread holds `rows_per_thread` query rows (each K/V vec4 it reads
    from workgroup memory feeds that many FMAs) over a 1/`split` share of head_dim (split 4 or 8
    threads a row group; default attention_tiled_split): q and the output sums take
    2 x rows x head_dim / split registers. `stage`: the type K and V are staged in (f32; "act" halves
    the bytes, so blocks hold more positions, and converts on every read); `block`: positions per
    block (default: attention_tiled_block)."""
    slots = attention_tiled_slots(nq=nq, nkv=nkv)
    rt = rows_per_thread
    ds = split or attention_tiled_split(hd)
    kvt = profile.act if stage == "act" else "f32"
    sb = 4 if kvt == "f32" else 2
    bk = block or attention_tiled_block(hd=hd, slots=slots, split=ds, stage_bytes=sb, rows_per_thread=rt)
    nt = slots // rt * ds
    if (ds not in (4, 8) or slots % rt or hd % (4 * ds) or nt > 256  # WebGPU's default invocation limit
            or attention_tiled_bytes(hd=hd, slots=slots, split=ds, stage_bytes=sb, block=bk) > ATTN_TILED_WG_BYTES):
        raise ValueError(f"attention_tiled: no tiling for head_dim {hd} with {rt} rows a thread, {ds} threads "
                         f"a row group, blocks of {bk}")
    n = hd // 4 // ds  # vec4 of q and of output sums per thread and row
    rows, es = range(rt), range(n)

    def block_of(lines: list[str], indent: int) -> str:
        return "\n".join(" " * indent + line for line in lines)

    decls = []
    for i in rows:
        decls += [f"let row{i} = rg + {i}u * NG;",
                  f"let tq{i} = row{i} / G;",
                  f"let valid{i} = row{i} < ROWS && tq{i} < nt;",
                  f"let p{i} = step.past + t0 + tq{i};  // the row's query position",
                  f"let qb{i} = ((t0 + tq{i}) * NQ + kh * G + row{i} % G) * HD4 + c;  // its vec4 0 of share c",
                  f"var m{i} = NEG;",
                  f"var l{i} = 0.0;"]
        decls += [f"var q{i}_{e} = vec4<f32>(0.0);" for e in es] + [f"var a{i}_{e} = vec4<f32>(0.0);" for e in es]
        decls += [f"if (valid{i}) {{"] + [f"    q{i}_{e} = vec4<f32>(q[qb{i} + {ds * e}u]) * SCALE;" for e in es] + ["}"]
    # the block's K/V vec4<u32> (8 dims) this thread loads: lid + l * NT (a guard where NT does not
    # divide the block)
    nload = -(-bk * hd // 8 // nt)
    guard = (bk * hd // 8) % nt != 0

    def load(j0: str, decl: bool) -> list[str]:
        out = []
        for li in range(nload):
            idx = f"lid + {li * nt}u"
            kw = "var " if decl else ""
            at = (f"cache + min({j0} + ({idx}) / HD8, kv_end - 1u) * NKV * HD8 + ({idx}) % HD8")
            if guard:  # past the block: a real row of the cache, not stored
                at = (f"cache + min({j0} + min({idx}, BK * HD8 - 1u) / HD8, kv_end - 1u) * NKV * HD8 "
                      f"+ ({idx}) % HD8")
            out += [f"{kw}kn{li} = k_cache[{at}];", f"{kw}vn{li} = v_cache[{at}];"]
        return out

    stage_lines = []
    for li in range(nload):
        dst = f"(lid + {li * nt}u) / HD8 * HD4 + (lid + {li * nt}u) % HD8"  # dims 4e..: the row's vec4 e
        store = [f"ks[{dst}] = vec4<{kvt}>(lo4(kn{li}));", f"ks[{dst} + HD8] = vec4<{kvt}>(hi4(kn{li}));",
                 f"vs[{dst}] = vec4<{kvt}>(lo4(vn{li}));", f"vs[{dst} + HD8] = vec4<{kvt}>(hi4(vn{li}));"]
        if guard:
            stage_lines += [f"if (lid + {li * nt}u < BK * HD8) {{"] + ["    " + s for s in store] + ["}"]
        else:
            stage_lines += store
    qk = ["let kb = jj * HD4 + c;"] + [f"var d{i} = vec4<f32>(0.0);" for i in rows]
    for e in es:
        qk.append(f"let k{e} = vec4<f32>(ks[kb + {ds * e}u]);")
        qk += [f"d{i} = fma(q{i}_{e}, k{e}, d{i});" for i in rows]
    qk += [f"part[(jj * SLOTS + row{i}) * PV4 + c / 4u][c % 4u] = (d{i}.x + d{i}.y) + (d{i}.z + d{i}.w);"
           for i in rows]
    # softmax and p * V, unrolled over the block: the scores stay in named registers (BK x RT of them)
    sp = [f"let s{i}_{jj} = score(row{i}, {jj}u, j0 + {jj}u, p{i}, valid{i});" for jj in range(bk) for i in rows]
    for i in rows:
        sp += [f"let nm{i} = max(m{i}, " + "".join(f"max(s{i}_{jj}, " for jj in range(bk - 1))
               + f"s{i}_{bk - 1}" + ")" * (bk - 1) + ");",
               f"let al{i} = exp(m{i} - nm{i});"]
        sp += [f"a{i}_{e} *= al{i};" for e in es] + [f"l{i} *= al{i};", f"m{i} = nm{i};"]
    for jj in range(bk):
        for i in rows:  # masked positions weigh nothing
            sp += [f"let w{i}_{jj} = vec4<f32>(select(0.0, exp(s{i}_{jj} - m{i}), s{i}_{jj} > -1e29));",
                   f"l{i} += w{i}_{jj}.x;"]
        for e in es:
            sp.append(f"let v{jj}_{e} = vec4<f32>(vs[{jj * hd // 4}u + c + {ds * e}u]);")
            sp += [f"a{i}_{e} = fma(w{i}_{jj}, v{jj}_{e}, a{i}_{e});" for i in rows]
    store = []
    for i in rows:
        store += [f"if (valid{i}) {{", f"    let inv = 1.0 / l{i};"]
        store += [f"    out[qb{i} + {ds * e}u] = vec4<act>(a{i}_{e} * inv);" for e in es] + ["}"]
    src = _fill(_template("attention_tiled"), HEADER=_header(profile), NQ=nq, NKV=nkv, HD=hd, WINDOW=window,
                SCALE=_f32(scale), QT=attention_tiled_tokens(nq=nq, nkv=nkv), SLOTS=slots, RT=rt, DS=ds, BK=bk, KVT=kvt,
                ROWDECLS=block_of(decls, 4), LOADDECLS=block_of(load("kv_start", True), 4),
                STAGE=block_of(stage_lines, 8), LOADNEXT=block_of(load("j1", False), 12), QK=block_of(qk, 12),
                SOFTMAX_PV=block_of(sp, 8), STORE=block_of(store, 4))
    return _make("attention_tiled", src, (UNIFORM, READ, READ, READ, WRITE))


SAMPLE_CAP = 64  # tokens listed per vocabulary chunk by sample_chunks (top_k up to this needs no full pass)
SAMPLE_STAGES = ("sample_chunks", "sample_mass", "sample_draw")
# Below this vocabulary the plans sample with the one-workgroup kernel: a thread's scan covers at most
# 32 tokens there, and the split's 256-workgroup stages would be mostly idle (software adapters, which
# run the tests' tiny models, pay for every workgroup: 30-100 ms a step on lavapipe at 1,000 tokens).
SAMPLE_SPLIT_MIN_VOCAB = 8192


def sample_scratch_buffers(vocab: int) -> dict[str, int]:
    """Name -> bytes of the split sampler's own buffers (sample.wgsl): the adjusted logits and the
    per-chunk results (stats, lists, top raw logits)."""
    words = 2048 + 2 * SAMPLE_CAP * 256 + 2 * MAX_TOP_LOGPROBS * 256
    return {"sample_adjusted": 4 * 256 * -(-vocab // 256), "sample_chunks": 4 * words}


def sample_dispatches(profile: Profile, *, vocab: int) -> list[tuple[Kernel, list[int]]]:
    """The sampler as the plans run it: (kernel, grid) in dispatch order, all bound alike (logits,
    token_ids, the sampler's buffers, its scratch buffers)."""
    if vocab < SAMPLE_SPLIT_MIN_VOCAB:
        return [(sample_single(profile, vocab=vocab), [1, 1, 1])]
    return sample(profile, vocab=vocab)


def sample_plan_buffers(vocab: int) -> dict[str, int]:
    """Name -> bytes of every buffer the plan's sampler binds besides logits and token_ids, in binding
    order: the runtime's (sampler_buffers), then the split's scratch when the plan splits."""
    scratch = sample_scratch_buffers(vocab) if vocab >= SAMPLE_SPLIT_MIN_VOCAB else {}
    return sampler_buffers(vocab) | scratch


def sample(profile: Profile, *, vocab: int) -> list[tuple[Kernel, list[int]]]:
    """The next token: greedy, or a seeded draw after penalties, bias, grammar mask, top-k, min-p and
    top-p; plus logprobs. See wgsl/sample.wgsl and FORMAT.md ("Sampling"). Three kernels, dispatched
    in order with the returned grids: per-chunk work over 256 workgroups twice, then one workgroup.
    Bindings: logits, token_ids, logit_bias, token_counts, token_mask, sample_out, sample_adjusted,
    sample_chunks."""
    bindings = (UNIFORM, READ, WRITE, READ, WRITE, READ, WRITE, WRITE, WRITE)
    out = []
    for stage in SAMPLE_STAGES:
        # per-chunk stages: 32 threads, 16 tokens each for Llama-3's 501-token chunks (one warp: cheap
        # barriers; on lavapipe, which pays per invocation, 64 threads took twice as long); the draw:
        # one thread per chunk
        wg, grid = (256, [1, 1, 1]) if stage == "sample_draw" else (32, [256, 1, 1])
        prelude = _fill(_template("sample"), HEADER=_header(profile), V=vocab, MAX_TOP=MAX_TOP_LOGPROBS,
                        CAP=SAMPLE_CAP, WG=wg, RULE=_template("sample_rule"))
        out.append((_make(stage, _fill(_template(stage), PRELUDE=prelude), bindings), grid))
    return out


def sample_single(profile: Profile, *, vocab: int) -> Kernel:
    """The sampling rule stated by one workgroup (wgsl/sample_single.wgsl): slow, kept as the reference
    the split sampler is tested and benchmarked against, and the plans' sampler for small vocabularies.
    Bindings: logits, token_ids, logit_bias, token_counts, token_mask, sample_out."""
    src = _fill(_template("sample_single"), HEADER=_header(profile), V=vocab, MAX_TOP=MAX_TOP_LOGPROBS,
                RULE=_template("sample_rule"))
    return _make("sample_single", src, (UNIFORM, READ, WRITE, READ, WRITE, READ, WRITE))
