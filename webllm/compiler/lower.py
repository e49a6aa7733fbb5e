"""Lowering: op graph + weight layout -> kernels and the dispatch plan of one device profile."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from webllm import kernels as K
from webllm.compiler.memory_plan import plan_memory
from webllm.errors import UnsupportedModelError

PREFILL_MIN_WORKGROUPS = 128  # a prefill matmul takes 128-token tiles only if a full chunk still gives this many
DECODE_SPLITS_MAX = 16  # most KV splits (workgroups per KV head) of decode attention
COMBINE_BYTES = 64 << 10  # at most this many bytes of attention partials for each o-matmul workgroup to combine
FOLD_NORM_MAX_EXTRA = 32 << 20  # bytes of extra reads a decode matmul may take on to absorb its RMSNorm
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


def combine_lanes(cfg, profile: K.Profile, lanes: int) -> int:
    """Threads per row of the o matmul that combines decode attention's splits (gemv.wgsl COMBINE_IN).
    With the combined x staged in workgroup memory (COMBINE_STAGED: once per workgroup, in one or more
    ranges of inputs) a workgroup of 16 rows (16 lanes) where that still makes 256 workgroups: half the
    combines of 8-row workgroups.
    Measured on an H100, Llama-3.1-8B shape, f16, context 4,096, 8 splits: the o matmul 32.0 µs with
    each row set combining for itself, 20.0 staged with 16 rows (benchmarks/decode_splits.py)."""
    if K.combine_staged(cfg.num_attention_heads * cfg.head_dim, profile.act_bytes) and cfg.hidden_size >= 16 * 256:
        return min(lanes, 16)
    return lanes


def residual_lanes(rows: int, lanes: int, threads: int) -> int:
    """Threads per row (so 256 // that rows a workgroup) of a one-token matmul that adds into the
    residual stream (o, down) in workgroups of up to `threads`: with 512 (the "...w" decode variants),
    16 rows where that still makes 256 workgroups. An H100 holds two such workgroups an SM (their 43-51
    registers a thread, benchmarks/kernel_stats.py), so Llama-3.1-8B's down (4,096 rows, 14,336 inputs)
    then runs in one wave of 256 where its 8-row workgroups took two of 512: decode tok/s at context
    1 / 4,096, f16 437.4 / 373.7 and 437.7 / 373.7 against 434.1 / 371.3 and 433.6 / 370.1, f32 435.9 /
    369.1 against 434.8 / 366.5 (docs/PERFORMANCE.md)."""
    return wide_lanes(rows, lanes, threads, 16)


def pair_lanes(rows: int, lanes: int, threads: int) -> int:
    """Threads per row of the SwiGLU pair's one-token matmul (gate_up; `rows` the outputs, gate rows)
    on int8 x in workgroups of up to `threads`: with 512, 32 rows a workgroup (64 rows of weights: a
    workgroup reads x once for all of them) where that still makes 256 workgroups. Llama-3.1-8B's
    gate_up (14,336 outputs) then runs 448 workgroups of 512 threads instead of 1,792 of 128. H100,
    decode tok/s at context 1 / 4,096, `q8gemv32sgw` (docs/PERFORMANCE.md): 8 rows 437.3 / 374.0 and
    436.9 / 373.5, 16 rows 440.6 / 376.9 and 441.0 / 377.8, 32 rows 443.2 / 380.2, 441.8 / 380.5 and
    443.0 / 379.1 (f16); f32: 8 rows 436.0 / 369.3, 32 rows 441.6 / 375.9. 64 rows (224 workgroups) 444.0 at
    context 1, but the split count timed at load then went wrong at 4,096."""
    return wide_lanes(rows, lanes, threads, 32)


def wide_lanes(rows: int, lanes: int, threads: int, want: int) -> int:
    """Threads per row for `want` rows a workgroup (256 // want lanes) where workgroups of more than
    256 threads are allowed and that still makes 256 workgroups; never more lanes than `lanes`."""
    if threads > 256 and -(-rows // want) >= 256:
        return min(lanes, 256 // want)
    return lanes


def decode_splits(cfg, profile: K.Profile) -> int:
    """Most KV splits of decode attention (wgsl/attention_splits.wgsl): the largest power of two up to
    DECODE_SPLITS_MAX whose partials [splits, heads, head_dim] stay within COMBINE_BYTES (twice that
    where the o matmul combines them once per 16-row workgroup, combine_lanes), since every workgroup of
    the o matmul reads all of them (gemv.wgsl COMBINE_IN; its x alone is 1/splits of that).
    Llama-3.1-8B: 16 splits in f16, 8 in f32 (whose combine is staged in two ranges); Llama-3.2-1B: 16
    and 8; short contexts use fewer (one per 64 positions), so this bounds the combine's cost at long
    context only. Llama-3.1-8B, f16,
    4,096 positions, attention + o per layer on an H100: 63.1 µs with 8 splits, 53.5 with 16."""
    per_split = cfg.num_attention_heads * cfg.head_dim * profile.act_bytes
    budget = COMBINE_BYTES * (2 if combine_lanes(cfg, profile, 32) < 32 else 1)
    s = 1
    while s * 2 <= DECODE_SPLITS_MAX and s * 2 * per_split <= budget:
        s *= 2
    return s


def fold_combine(ops: list) -> list:
    """Decode: attention writes per-split partials (`attn_part_o`, `attn_part_lse`) and the matmul that
    is its output's only reader (the o projection) combines them as it loads x (gemv.wgsl COMBINE_IN):
    no combine dispatch."""
    readers: dict[str, int] = {}
    for op in ops:
        for t in op.inputs:
            readers[t] = readers.get(t, 0) + 1
    out = list(ops)
    for i, op in enumerate(ops):
        if op.kind != "attention":
            continue
        j = next((j for j in range(i + 1, len(ops)) if op.outputs[0] in ops[j].inputs), None)
        if j is None or ops[j].kind != "matmul" or ops[j].inputs[0] != op.outputs[0] or readers[op.outputs[0]] != 1:
            raise UnsupportedModelError(f"decode attention output {op.outputs[0]} is not the input of one matmul")
        out[i] = replace(op, outputs=["attn_part_o", "attn_part_lse"])
        out[j] = replace(ops[j], inputs=["attn_part_o", "attn_part_lse"] + ops[j].inputs[1:],
                         attrs={**ops[j].attrs, "combine_in": True})
    return out


def decode_variant_names(gemv_lanes: tuple[int, ...], subgroups: bool, wide: bool = False) -> list[tuple[str, int, bool, int]]:
    """(name, lanes, subgroup reduction, most threads a workgroup) of each decode variant, most
    preferred first: for each lane count, the subgroup reduction ("gemv32sg", needing the `subgroups`
    feature) before the workgroup-memory tree ("gemv32") that runs everywhere. With `wide`, each of
    these with at least 32 lanes (a GPU's; fewer suit CPUs' adapters, where more threads only cost)
    comes first as "<name>w": its matmuls want twice the threads (kernels.gemv_threads), in workgroups
    of up to 512 threads, beyond WebGPU's default limit (so `variant_limits` lists them where they do)."""
    reductions = (True, False) if subgroups else (False,)
    out = []
    for lanes in gemv_lanes:
        for sg in reductions:
            name = f"gemv{lanes}{'sg' if sg else ''}"
            if wide and lanes >= 32:
                out.append((name + "w", lanes, sg, 512))
            out.append((name, lanes, sg, 256))
    return out


def prefill_variant_names(chunk: int, tiles: tuple[int, ...], wide: bool = False, half: bool = False,
                          int8: bool = False) -> list[tuple[str, int | None, str, bool]]:
    """(name, token tile or None for the rule, staging of the 128-token tiles, f16 arithmetic) of each
    prefill variant, the rule first ("rule", then "tile32", "tile128", ...); tiles larger than the chunk
    (rounded up to 32) are left out. With `wide` and a chunk of at least 128, then the variants whose
    128-token matmuls hold a whole group of k in 32 KiB of workgroup memory (matmul_tiled.wgsl STAGING;
    beyond WebGPU's default limit, so `variant_limits` lists them): "wide128" (staged whole) and
    "dbuf128" (double-buffered halves) on every matrix, and "widerule" (the rule's tiles, staged whole
    where they are 128). They come after the variants that need nothing beyond WebGPU's defaults, which
    runtimes fall back to. With `int8`, after the tiles, "q8" (staging "int8"): the rule's matmuls, but
    those of K.Q8_PREFILL_FORMATS weights multiply int8 blocks of their input with integer dot products
    (kernels.matmul_q8, after a kernels.quant_q8 dispatch each). With `half` (f16 profile; off by
    default), last, the rule and the tiles again as "<name>h" (ruleh, tile32h, ...): their matmuls stage
    and multiply in f16 (matmul_tiled `half`). On an H100 (Llama-3.1-8B / 3.2-1B shapes, 512 tokens)
    ruleh was 12% / 16% faster than rule (the f16 forms of the 32 KiB stagings lost to it, so they are
    not offered), but its logits stray about 3x further from transformers' (up to 2.2e-2 of the largest
    logit on the test models, beyond the f16 bound of 1.6e-2), so it is offered only on request."""
    names = [("rule", None, "halves")] + [(f"tile{t}", t, "halves") for t in tiles if t <= max(32, chunk)]
    f16_names = list(names) if half else []
    if int8:
        names.append(("q8", None, "int8"))
    if wide and chunk >= 128:
        names += [("wide128", 128, "wide"), ("dbuf128", 128, "dbuf"), ("widerule", None, "wide")]
    return ([(name, tile, staging, False) for name, tile, staging in names]
            + [(name + "h", tile, staging, True) for name, tile, staging in f16_names])


def fold_norms(ops: list, allow=lambda matmul: True) -> list:
    """Each RMSNorm whose only reader is the next matmul goes into that matmul (if `allow(matmul)`):
    the matmul reads the norm's input (the residual stream) and the norm weight and normalizes x
    itself (gemv.wgsl, one-token matmuls only): one dispatch and one activation round trip less."""
    readers: dict[str, int] = {}
    for op in ops:
        for t in op.inputs:
            readers[t] = readers.get(t, 0) + 1

    def folds(norm, mm) -> bool:
        return (norm.kind == "rmsnorm" and mm.kind == "matmul" and mm.inputs[0] == norm.outputs[0]
                and readers[norm.outputs[0]] == 1 and allow(mm))

    out = []
    for i, op in enumerate(ops):
        if i + 1 < len(ops) and folds(op, ops[i + 1]):
            continue
        if i > 0 and folds(ops[i - 1], op):
            norm = ops[i - 1]
            op = replace(op, inputs=[norm.inputs[0]] + op.inputs[1:],
                         attrs={**op.attrs, "norm": norm.weights[0], "x_last": bool(norm.attrs.get("last"))})
        out.append(op)
    return out


def chain_norms(ops: list) -> list:
    """Decode: a matmul that adds into the residual stream (o, down) followed by an RMSNorm whose only
    reader is the next matmul (gate_up, the next layer's qkv, after the last layer the output head,
    whose 16,032 workgroups on Llama-3.1-8B made folding its norm cost 170 us where a norm dispatch
    costs 8; the chain costs it ~2 KiB of partials a workgroup): the first writes the norm's pieces in
    its epilogue (h * norm weight into `norm_x`, per-workgroup sums of squares into `norm_ssq`) and
    the second reads them (gemv.wgsl NORM_OUT / NORM_IN): the norm dispatch is gone and every
    matmul workgroup still reads x once in the activation type."""
    readers: dict[str, int] = {}
    for op in ops:
        for t in op.inputs:
            readers[t] = readers.get(t, 0) + 1
    out, i = [], 0
    while i < len(ops):
        op = ops[i]
        if (i + 2 < len(ops) and op.kind == "matmul" and op.attrs.get("add") and op.outputs[0] == "h"
                and ops[i + 1].kind == "rmsnorm" and ops[i + 1].inputs[0] == "h"
                and ops[i + 2].kind == "matmul" and ops[i + 2].inputs[0] == ops[i + 1].outputs[0]
                and readers[ops[i + 1].outputs[0]] == 1):
            norm, mm = ops[i + 1], ops[i + 2]
            out.append(replace(op, outputs=op.outputs + ["norm_x", "norm_ssq"], attrs={**op.attrs, "norm_out": norm.weights[0]}))
            out.append(replace(mm, inputs=["norm_x", "norm_ssq"] + mm.inputs[1:], attrs={**mm.attrs, "norm_in": op.weights[0]}))
            i += 3
            continue
        out.append(op)
        i += 1
    return out


# Weight formats whose decode matmuls read int8 x by default (int8_edges). The kernels take q4a (GGUF
# Q4_1) too (kernels.Q8_FORMATS), but on a software adapter int8 loses: the embedded SmolLM2-135M
# (Q4_1) on lavapipe decodes at 9.0-9.7 tok/s with int8 x against 13.5 in float (its dot4I8Packed is
# emulated), and that model is the one a machine without a GPU runs. q4s: the GPU-bound packages.
INT8_READERS = ("q4s",)


def int8_edges(ops: list, matrices: dict[str, MatrixInfo], head_dim: int,
               formats: tuple[str, ...] = INT8_READERS) -> list:
    """Decode: where a one-token matmul's output is the next matmul's x (the SwiGLU product into down,
    the chained norm's x * weight into gate_up and the next layer's qkv), the first writes it as int8
    blocks and the second multiplies them with integer dot products (gemv.wgsl Q8_OUT / Q8_IN,
    attrs "q8_out" (the reader's inputs) and "q8_in"), if the reader's weights are of `formats` and the
    writer's parts start at multiples of 8 rows (the blocks); the output head too, after the last
    down (8B, H100: 402.9 -> 407.6 tok/s in f16, 393.7 -> 401.3 in f32), but only where a layer's
    matmuls do: a package whose layers keep float x (the embedded SmolLM2, Q4_1 layers with a Q4_0
    head) gets no int8 variants for its head alone, which would double the decode variants a software
    adapter times at first load. H100, one matmul in a chain of 32,
    Llama-3.1-8B shapes, us, int8 x against f16 x: gate_up 25.5 / 32.4, down 14.2 / 19.6, qkv 7.9 /
    10.7 (against f32 x 38.7, 22.8, 11.5); docs/PERFORMANCE.md. The o matmul, whose x it combines
    from attention's partials into workgroup memory, stages the combined x as such blocks ("q8_staged")
    where its weights are of `formats` and heads hold whole blocks."""
    out = list(ops)
    for i, op in enumerate(ops):
        m = matrices[op.weights[0]] if op.kind == "matmul" else None
        if m is not None and op.attrs.get("combine_in") and m.format in formats and K.q8_staging_fits(m.shape[1], head_dim):
            out[i] = replace(op, attrs={**op.attrs, "q8_staged": True})
    edges = []  # (writer's index, its outputs, whether the reader is the output head)
    for i in range(len(ops) - 1):
        w, r = ops[i], ops[i + 1]
        if w.kind != "matmul" or r.kind != "matmul" or w.attrs.get("single_row"):
            continue
        if r.attrs.get("norm") or r.attrs.get("combine_in") or r.attrs.get("x_last"):
            continue
        chained = bool(w.attrs.get("norm_out")) and r.inputs[0] == "norm_x"
        product = bool(w.attrs.get("pair")) and not w.attrs.get("add") and r.inputs[0] == w.outputs[0]
        if product and sum(t == r.inputs[0] for op in ops for t in op.inputs) > 1:
            continue  # the product has other readers, which read it in the activation type
        mw, mr = matrices[w.weights[0]], matrices[r.weights[0]]
        n_out = mw.shape[0] // (2 if w.attrs.get("pair") else 1)
        if not (chained or product) or mr.format not in formats or n_out % 32 or any(p.row0 % 8 for p in mw.parts):
            continue
        edges.append((i, n_out, bool(r.attrs.get("single_row"))))
    if any(not head for _, _, head in edges):
        for i, n_out, _ in edges:
            out[i] = replace(out[i], attrs={**out[i].attrs, "q8_out": n_out})
            out[i + 1] = replace(out[i + 1], attrs={**out[i + 1].attrs, "q8_in": True})
    return out


def lower(model, matrices: dict[str, MatrixInfo], profile: K.Profile, chunk: int,
          gemv_lanes: tuple[int, ...] = (32, 4), max_binding_size: int | None = None,
          decode_splits_max: int | None = None, subgroups: bool = True, prefill_tiles: tuple[int, ...] = (32, 128),
          prefill_wide: bool = True, prefill_half: bool = False, decode_heads: int | None = None,
          decode_int8: bool = True, decode_int8_formats: tuple[str, ...] = INT8_READERS,
          prefill_int8: bool = True, decode_wide: bool = True) -> dict:
    """Build the plan of one profile (docs/FORMAT.md, "Plans"): the uniform table, kernels, buffers,
    bind groups, and the prefill, score and decode dispatch lists, each as named variants that compute
    the same thing with differently shaped kernels; runtimes time them on their adapter and keep the
    fastest (see `decode_variant_names` and `prefill_variant_names`). `gemv_lanes`: threads per row of
    the one-token matmul (decode, output head; 32 suits GPUs, 4 is 2.3x faster on lavapipe), each
    also with the subgroup reduction when `subgroups`. `prefill_tiles`: token tiles of the prefill
    matmul tried on every matrix, besides the rule's per-matrix choice (`prefill_token_tile`);
    `prefill_wide`: also the variants whose 128-token tiles hold whole groups in 32 KiB;
    `prefill_half`: in the f16 profile, also the rule and the tiles with f16 arithmetic. The
    `score` phase is left out when its all-token logits would exceed `max_binding_size`.
    `decode_splits_max`: most KV splits of decode attention (default: decode_splits()); `decode_heads`:
    its query heads per workgroup (default: kernels.attention_decode_heads). `decode_int8`: decode's
    variants also with x passed to the next matmul as int8 where it can (int8_edges; readers of
    `decode_int8_formats`), offered first as "q8<name>". `prefill_int8`: the "q8" prefill variant,
    whose matmuls of q4s, q4a and q8s weights multiply int8 blocks of x (prefill_variant_names).
    `decode_wide`: also the decode variants whose matmuls run up to 512 threads a workgroup ("...w",
    decode_variant_names). The kernel sources come back under "_sources"."""
    cfg = model.cfg
    ops = model.graph()
    score_ops = model.graph(score=True)
    shapes = model.activation_shapes(chunk)
    elem = {"act": profile.act_bytes, "kv": 2}
    nbytes = {t: K.round16(n * elem.get(dt, 4)) for t, (n, dt) in shapes.items()}
    pinned = {"h", "token_ids", "logits"} | {t for t in shapes if t.startswith(("k_cache.", "v_cache."))}
    mem = plan_memory(ops, nbytes, pinned)
    # The scoring phase's own tensors get their own buffers, allocated only by runtimes that score.
    score_tensors = {t for op in score_ops for t in op.inputs + op.outputs}
    optional = {t: nbytes[t] for t in ("xn_all", "logits_all") if t in score_tensors}
    # Buffers whose size follows the KV capacity: size(C) = ceil(C / unit) * bytes (FORMAT.md).
    per_context = {t: (1, n // model.capacity * elem[dt]) for t, (n, dt) in shapes.items()
                   if t.startswith(("k_cache.", "v_cache."))}
    mem.where.update({t: t for t in optional})
    # decode attention's per-split partials (fold_combine): a fixed grid of at most `splits` splits
    # (no more splits than the context window fills, and the partials within one binding). The step's
    # uniform (kv_splits) may ask for fewer: the runtime times the plan's `decode_splits` choices at a
    # long context at first load, the compiler's rule (decode_splits) the default, half and twice it
    # the alternatives. `decode_splits_max` pins one count (measurements).
    per_split = cfg.num_attention_heads * cfg.head_dim * profile.act_bytes
    rule = decode_splits_max or decode_splits(cfg, profile)
    splits = min(rule if decode_splits_max else 2 * rule, -(-model.capacity // K.KV_SPLIT_UNIT))
    while splits > 1 and max_binding_size is not None and splits * per_split > max_binding_size:
        splits -= 1
    split_default = min(rule, splits)
    split_choices = [split_default]
    if not decode_splits_max:
        split_choices = sorted({c for c in (max(1, rule // 2), rule, 2 * rule) if c <= splits} | {split_default})
    mem.buffers["attn_part_o"] = K.round16(splits * per_split)
    mem.buffers["attn_part_lse"] = K.round16(splits * cfg.num_attention_heads * 4)
    mem.where.update({"attn_part_o": "attn_part_o", "attn_part_lse": "attn_part_lse"})
    # decode's chained norms (chain_norms): the next norm's x * weight, and per-workgroup sums of squares
    mem.buffers["norm_x"] = K.round16(cfg.hidden_size * profile.act_bytes)
    mem.buffers["norm_ssq"] = K.round16(4 * cfg.hidden_size)
    mem.where.update({"norm_x": "norm_x", "norm_ssq": "norm_ssq"})
    kernels: dict[str, K.Kernel] = {}
    # (binding types, buffers) -> (index in the plan's bind_groups, the kernel whose layout it names). Kernels
    # with the same binding types share one layout (FORMAT.md), so the variants of a phase share bind groups.
    bind_groups: dict[tuple, tuple[int, str]] = {}

    def buf(t: str) -> str:
        return mem.where[t]

    def emit(kernel: K.Kernel, bindings: list[str], workgroups: list[int], tokens_per_y: int | None) -> dict:
        kernels[kernel.name] = kernel
        key = (kernel.bindings, tuple(["uniform"] + bindings))
        group, _ = bind_groups.setdefault(key, (len(bind_groups), kernel.name))
        d = {"kernel": kernel.name, "bind_group": group, "workgroups": workgroups}
        if tokens_per_y is not None:
            d["tokens_per_y"] = tokens_per_y
        return d

    def phase(tt: int, ops: list = ops, lanes: int = gemv_lanes[0], sg: bool = False, threads: int = 256,
              tile: int | None = None, staging: str = "halves", half: bool = False) -> list[dict]:
        """Dispatches of a step of at most `tt` tokens. One-token matmuls: 256 // `lanes` rows a
        workgroup in at most `threads` threads, the subgroup reduction with `sg`. Tiled matmuls:
        `tile` tokens per workgroup (None: the rule), those of 128 with `staging` (K.matmul_tiled)."""
        out = []
        # the matmul that combines decode attention's splits (COMBINE_IN) may take more rows per
        # workgroup (combine_lanes): fewer workgroups combine; its producer's norm partials follow
        combine_mats = {op.weights[0] for op in ops if op.attrs.get("combine_in")}
        o_lanes = combine_lanes(cfg, profile, lanes)
        # with wider workgroups, also those adding into the residual stream (residual_lanes)
        adding = {op.weights[0] for op in ops if op.kind == "matmul" and op.attrs.get("add")}
        # and the SwiGLU pair on int8 x (pair_lanes; float x was not measured so)
        pairs = {op.weights[0] for op in ops if op.kind == "matmul" and op.attrs.get("pair") and op.attrs.get("q8_in")}

        def lanes_of(name: str) -> int:
            if name in combine_mats:
                return o_lanes
            if name in adding:
                return residual_lanes(sum(p.rows for p in matrices[name].parts), lanes, threads)
            if name in pairs:
                return pair_lanes(sum(p.rows for p in matrices[name].parts), lanes, threads)
            return lanes

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
                q8 = tiled and staging == "int8" and m.format in K.Q8_PREFILL_FORMATS
                if q8:  # x as int8 blocks, once for all the parts
                    q8_k.add(m.shape[1])
                    kern = K.quant_q8(profile, k=m.shape[1], x_type="f32" if x == "h" else profile.act,
                                      nibbles=K.quant_q8_nibbles(m.format))
                    out.append(emit(kern, [buf(x), "prefill_q8x", "prefill_q8d"], [math.ceil(m.shape[1] / 32 / 64), 1, 1], 4))
                for p in m.parts:
                    norm = op.attrs.get("norm")  # an RMSNorm folded in: x is the residual stream (f32)
                    norm_in, norm_out = op.attrs.get("norm_in"), op.attrs.get("norm_out")
                    kw = dict(n_rows=p.rows, n_out=n_out, row0=p.row0, pair=pair, add=bool(op.attrs.get("add")),
                              bias=p.bias is not None, x_type="f32" if x == "h" else profile.act,
                              y_type="f32" if y in ("h", "logits", "logits_all") else profile.act, rope=rope)
                    if q8:
                        kw.pop("x_type")
                        kern = K.matmul_q8(profile, m.part_view(p), **kw)
                        rows_per_wg, per_y = K.matmul_tile_rows(pair), K.MATMUL_Q8_TOKENS
                    elif tiled:
                        tokens = tile or prefill_token_tile(p.rows, pair, tt)
                        kern = K.matmul_tiled(profile, m.part_view(p), tokens=tokens,
                                              staging=staging if tokens == 128 and staging != "int8" else "halves",
                                              half=half, **kw)
                        rows_per_wg, per_y = K.matmul_tile_rows(pair), tokens
                    else:  # one token: decode, or the output head on the last token's row
                        kw.pop("n_out")
                        chain = {}
                        if norm_in:  # the producer's workgroups each left one partial sum of squares
                            chain["norm_in"] = sum(-(-q.rows // (256 // lanes_of(norm_in))) for q in matrices[norm_in].parts)
                            chain["eps"] = cfg.rms_norm_eps
                        if norm_out:
                            chain["norm_out_offset"] = sum(-(-q.rows // (256 // lanes_of(op.weights[0]))) for q in m.parts
                                                           if q.row0 < p.row0)
                        if op.attrs.get("combine_in"):  # x: decode attention's partials (fold_combine)
                            chain["combine_in"] = dict(nq=cfg.num_attention_heads, hd=cfg.head_dim,
                                                       window=cfg.sliding_window or 0, splits=splits)
                            kw["x_type"] = profile.act
                        ln = lanes_of(op.weights[0])
                        kern = K.gemv(profile, m.part_view(p), lanes=ln, x_last=bool(op.attrs.get("x_last")),
                                      norm_eps=cfg.rms_norm_eps if norm else None, subgroups=sg,
                                      q8_in=bool(op.attrs.get("q8_in")), q8_out=op.attrs.get("q8_out", 0),
                                      q8_staged=bool(op.attrs.get("q8_staged")), threads=threads, **chain, **kw)
                        rows_per_wg, per_y = 256 // ln, None
                    binds = ["prefill_q8x" if q8 else buf(x), buf(y)] + m.arrays(p) + ([p.bias] if p.bias else [])
                    if rope:
                        binds += [buf(op.outputs[1]), buf(op.outputs[2]), "rope_table"]
                    if q8:
                        binds.append("prefill_q8d")
                    if norm:
                        binds.append(norm)
                    if norm_in:
                        binds.append("norm_ssq")
                    if norm_out:
                        binds += [norm_out, "norm_x", "norm_ssq"]
                    if op.attrs.get("combine_in"):
                        binds.append(buf(op.inputs[1]))  # the partials' lse
                    gx = _check_grid(math.ceil(p.rows / rows_per_wg), f"tensor {p.tensor}")
                    out.append(emit(kern, binds, [gx, 1, 1], per_y))
            elif op.kind == "attention":
                kw = dict(nq=cfg.num_attention_heads, nkv=cfg.num_key_value_heads, hd=cfg.head_dim,
                          window=cfg.sliding_window or 0, scale=cfg.head_dim ** -0.5)
                binds = [buf(t) for t in op.inputs]
                if tt == 1:  # decode: split the KV range over workgroups; the o matmul combines (fold_combine)
                    if decode_heads and (kw["nq"] // kw["nkv"]) % decode_heads:
                        raise UnsupportedModelError(f"--decode-heads {decode_heads}: not a divisor of the "
                                                    f"{kw['nq'] // kw['nkv']} query heads per KV head")
                    assert op.outputs == ["attn_part_o", "attn_part_lse"], "decode attention without fold_combine"
                    if K.attention_decode_fits(nq=kw["nq"], nkv=kw["nkv"], hd=kw["hd"], heads_per_wg=decode_heads or 0):
                        gw = decode_heads or K.attention_decode_heads(nq=kw["nq"], nkv=kw["nkv"], hd=kw["hd"])
                        kern, gx = K.attention_decode(profile, splits=splits, heads_per_wg=gw, **kw), kw["nq"] // gw
                    else:
                        kern, gx = K.attention(profile, splits=splits, **kw), cfg.num_attention_heads
                    d = emit(kern, binds + [buf(t) for t in op.outputs], [gx, 1, splits], None)
                    # one workgroup per 64 positions up to `splits`: the kernels find the same split count
                    # from step.past (attention_splits.wgsl); software adapters pay for idle workgroups
                    d["kv_per_z"], d["max_z"] = K.KV_SPLIT_UNIT, splits
                    out.append(d)
                    continue
                if K.attention_tiled_fits(nq=kw["nq"], nkv=kw["nkv"], hd=kw["hd"]):
                    # prefill: 32 query rows (tokens x the heads sharing a KV head) share each K/V block
                    kern, gx = K.attention_tiled(profile, **kw), kw["nkv"]
                    per_y = K.attention_tiled_tokens(nq=kw["nq"], nkv=kw["nkv"])
                else:
                    kern, per_y, gx = K.attention(profile, **kw), 1, cfg.num_attention_heads
                out.append(emit(kern, binds + [buf(op.outputs[0])], [gx, 1, 1], per_y))
            elif op.kind == "sample":
                binds = [buf("logits"), buf("token_ids"), *K.sample_plan_buffers(cfg.vocab_size)]
                for kern, grid in K.sample_dispatches(profile, vocab=cfg.vocab_size):
                    out.append(emit(kern, binds, grid, None))
            else:  # pragma: no cover - the graph only holds the kinds above
                raise AssertionError(op.kind)
        return out

    # Prefill variants: the rule's tiles first, then each tile on every matrix; one identical to an
    # earlier variant is dropped (small models: the rule already takes 32 everywhere).
    prefill_variants: dict[str, list[dict]] = {}
    half = prefill_half and profile.name == "f16"
    q8_k: set[int] = set()  # K of the matmuls that read int8 blocks (the "q8" variants' buffers)
    names = prefill_variant_names(chunk, prefill_tiles, prefill_wide, half, prefill_int8)
    for name, tile, staging, h in names:
        dl = phase(chunk, tile=tile, staging=staging, half=h)
        if dl not in prefill_variants.values():
            prefill_variants[name] = dl

    def fold_in_decode(lanes: int):
        """Whether a decode matmul takes its RMSNorm in. Every workgroup of the one-token matmul then
        reads the f32 residual row and the norm weight (8 bytes per input instead of the profile's
        activation): worth it while that extra traffic stays small. Measured on an H100 (8B shape):
        a norm dispatch costs ~8 us; folding it cost the qkv matmul (768 workgroups, 24 MB more
        reads) 3 us, gate_up (1,792 workgroups, 57 MB) 15 us and the output head (16,032
        workgroups) 170 us. Prefill keeps its norms (folding them made the tiled matmul 14% slower)."""
        def allow(mm) -> bool:
            m = matrices[mm.weights[0]]
            rows = sum(p.rows for p in m.parts)
            return -(-rows // (256 // lanes)) * m.shape[1] * 8 <= FOLD_NORM_MAX_EXTRA
        return allow

    decode_ops = fold_combine(ops)
    # Decode variants: each lane count and reduction in float, and (decode_int8) first the same with x
    # passed on as int8 ("q8" + name, int8_edges) where the graph has such edges. The runtime times them:
    # an H100 takes int8 (8B 393 against 337 tok/s), lavapipe float (its dot4I8Packed is emulated:
    # SmolLM2-135M 9.0-9.7 against 13.5 tok/s).
    # A wide variant ("...w", decode_variant_names) identical to its 256-thread twin (small matrices,
    # whose threads the groups along K bound) is left out.
    float_variants, int8_variants = {}, {}
    for name, lanes, sg, threads in decode_variant_names(gemv_lanes, subgroups, decode_wide):
        g = fold_norms(chain_norms(decode_ops), fold_in_decode(lanes))
        float_variants[name] = phase(1, g, lanes=lanes, sg=sg, threads=threads)
        # a writer's workgroup must hold whole blocks of 8 rows (256 / lanes of them)
        g8 = int8_edges(g, matrices, cfg.head_dim, decode_int8_formats) if decode_int8 and (256 // lanes) % 8 == 0 else g
        if g8 != g:
            int8_variants["q8" + name] = phase(1, g8, lanes=lanes, sg=sg, threads=threads)
    for variants in (float_variants, int8_variants):
        for name in [n for n in variants if n.endswith("w")]:
            if variants[name] == variants.get(name[:-1]):
                del variants[name]
    decode_variants = {**int8_variants, **float_variants}
    scoring = max_binding_size is None or max(optional.values()) <= max_binding_size
    # the scoring phase is prefill-shaped: one list per prefill variant, under the same names
    score_variants = {name: phase(chunk, score_ops, tile=tile, staging=staging, half=h)
                      for name, tile, staging, h in names if name in prefill_variants} if scoring else None
    if q8_k:  # int8 blocks of the largest input of a chunk: a byte an input, (d, d sum q) a block
        mem.buffers["prefill_q8x"] = K.round16(chunk * max(q8_k))
        mem.buffers["prefill_q8d"] = K.round16(chunk * max(q8_k) // 32 * 8)
    variant_features, variant_limits = {}, {}
    for name, dl in [*prefill_variants.items(), *decode_variants.items(), *(score_variants or {}).items()]:
        feats = sorted({f for d in dl for f in kernels[d["kernel"]].features})
        if feats:
            variant_features[name] = feats
        limits: dict[str, int] = dict(variant_limits.get(name, {}))  # score lists share their prefill name
        for d in dl:
            for lim, v in kernels[d["kernel"]].limits:
                limits[lim] = max(v, limits.get(lim, 0))
        if limits:
            variant_limits[name] = dict(sorted(limits.items()))
    uniform = K.uniform_table()
    for f in uniform["fields"]:
        if f["name"] == "kv_splits":
            f["default"] = split_default
    storage = ["STORAGE", "COPY_SRC", "COPY_DST"]
    buffers = [{"name": "uniform", "size": uniform["size"], "usage": ["UNIFORM", "COPY_DST"]}]
    for b, size in K.sample_plan_buffers(cfg.vocab_size).items():
        mem.buffers[b] = K.round16(size)
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
        "bind_groups": [{"kernel": k, "buffers": list(b)} for (_, b), (_, k) in bind_groups.items()],
        "prefill_variants": prefill_variants,
    }
    if score_variants is not None:
        plan["score_variants"] = score_variants
    plan["decode_variants"] = decode_variants
    plan["variant_features"] = variant_features
    plan["variant_limits"] = variant_limits
    plan["decode_splits"] = {"default": split_default, "choices": split_choices}
    plan["_sources"] = {name: k.source for name, k in kernels.items()}
    return plan
