// Decode matmul (one token):  y[ROW0 + n] (op) sum_k W[n, k] * x[k]
//   (op) = store | ADD into y (the residual stream) | PAIR: y = silu(W[n]·x + b) * (W[n + N_ROWS]·x + b')
// A workgroup computes RW = 256 / LANES consecutive rows. Its T threads form S row sets of L threads
// (L = 32: one warp on NVIDIA); a set owns R consecutive rows and its threads walk the groups of 32
// inputs g = lane, lane + L, ... (a constant trip count, so the driver can unroll and issue the
// loads of several groups at once). Each thread loads a group of x once and multiplies it with the
// same group of its R rows (x is read R times less than with one row per thread: with f32
// activations x is 7x the bytes of a q4 group). R = 4, or 2 with PAIR (whose threads also hold the
// up rows) where x is at most 8 KiB (kernels.gemv_threads has the rule and its measurements). The format's
// w_dot does the dequantization and the 32 products in straight-line code (no indexed arrays, so
// nothing spills). Partial sums meet in workgroup memory.
// NORM: x is the residual stream and the kernel applies the RMSNorm before the matmul:
//   y = (W (x * norm_w)) / sqrt(mean_k x[k]^2 + EPS)  (+ bias): each thread also sums the squares of the
//   x it loads, the row set's reduction gives the whole row's, and the scalar scales the row sums.
// NORM_IN: the same RMSNorm, with its pieces made by the matmul that wrote the residual (NORM_OUT):
//   x is already x * norm_w (the activation type), and the sum of squares is the sum of the NSSQ
//   per-workgroup partials ssq_in[] (summed by each row set before the usual reduction).
// NORM_OUT (with ADD, into the residual stream): the epilogue also writes the next RMSNorm's pieces:
//   xo[o] = act(h[o] * nw_out[o]) for the rows it wrote, and its workgroup's sum of h[o]^2 over those
//   rows into ssq_out[SSQ_OFF + workgroup], so that the next matmul (NORM_IN) needs no norm dispatch.
// X_LAST: x is the step's last token's row (the output head after a prefill).
// COMBINE_IN (the o matmul in decode): x is decode attention's per-split partials, combined as they
//   are loaded, or (COMBINE_STAGED) once per workgroup into workgroup memory first (see the COMBINE_IN
//   block below).
// Bindings: 0 step; 1 x [K] (vec4 of f16); 2 y [N_OUT] (f16); 3.. weight arrays of format
// q4s; then bias [rows] f32 (HAS_BIAS); with ROPE, y is q_out, then k_cache, v_cache, rope_table;
// last, with NORM: norm_w [K] f32; with NORM_IN: ssq_in [NSSQ] f32; with NORM_OUT: nw_out [N_OUT] f32,
// xo [N_OUT] act, ssq_out [..] f32; with COMBINE_IN (x is then part_o [SPLITS, K] act): part_lse
// [SPLITS, K / HEAD_DIM] f32. Int8 x (Q8_IN: x is the int8 blocks, vec4<u32>, 2 bytes an input;
// gemv_q8_in.wgsl) and int8 output (Q8_OUT: y with PAIR, else xo, as u32 in that layout) bind the same
// buffers, read and written in another layout.
// Grid: x = ceil(N_ROWS / RW), y = 1; T = S * L threads per workgroup: at most 256 (WebGPU's default
// limit), or 512 in the decode variants that ask for more (kernels.gemv_threads).
// The reduction (how a row set's L partial sums meet) is gemv_reduce_tree.wgsl, or, for devices with the
// `subgroups` feature, gemv_reduce_subgroups.wgsl (then the kernel also enables subgroups and takes the
// subgroup_size builtin).
enable subgroups;
// Shared prelude of every kernel. `act` is the activation storage type of the device profile
// (f32, or f16 with shader-f16); arithmetic is always done in f32.
enable f16;
alias act = f16;

// The per-step uniform, written once per step by the runtime; its fields are generated from
// STEP_FIELDS (webllm/kernels/__init__.py), the same table the plan's `uniform` entry gives runtimes.
struct Step {
    n_tokens: u32,  // tokens in this step (1 for decode, <= prefill chunk for prefill)
    past: u32,  // tokens already in the KV cache: position of this step's first token
    counter: u32,  // steps since the sampling parameters were set: with seed, picks the draw
    seed: u32,  // sampling seed
    temperature: f32,  // <= 0: greedy
    top_p: f32,  // nucleus mass, (0, 1]
    top_k: u32,  // sample among the top_k largest logits (ties kept); 0: no limit
    min_p: f32,  // drop tokens whose probability is below min_p times the largest
    repetition_penalty: f32,  // seen tokens: positive logits divided, negative multiplied
    frequency_penalty: f32,  // subtracted once per time a token was generated
    presence_penalty: f32,  // subtracted once if a token was generated
    sample_flags: u32,  // 1 penalties, 2 logit_bias, 4 token_mask, 8 logprobs
    n_logprobs: u32,  // top logprobs to write to sample_out (<= MAX_TOP_LOGPROBS)
    emit: u32,  // 0: a prefill chunk before the prompt's last; the sampler does nothing
    kv_splits: u32,  // most KV splits of decode attention (0: the compiled most, SPLITS)
    _pad0: u32,
}
@group(0) @binding(0) var<uniform> step: Step;

// 32 consecutive inputs as eight vec4 (and their sum, which folds a quantization offset out of the
// inner loop): plain struct fields, so they live in registers (indexed arrays may not).
struct X8 { v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>,
            v4: vec4<f32>, v5: vec4<f32>, v6: vec4<f32>, v7: vec4<f32>, sum: f32 }

// The eight 4-bit values of a u32 (nibble i = element i), low four and high four.
fn nib_lo(w: u32) -> vec4<f32> { return vec4<f32>(vec4<u32>(w, w >> 4u, w >> 8u, w >> 12u) & vec4<u32>(15u)); }
fn nib_hi(w: u32) -> vec4<f32> { return vec4<f32>(vec4<u32>(w >> 16u, w >> 20u, w >> 24u, w >> 28u) & vec4<u32>(15u)); }

// The same nibbles as the f32 1 + n/16, without an int-to-float conversion (a slow instruction on some
// GPUs): n moved into mantissa bits 19..22 of 1.0.
fn mant_lo(w: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>((vec4<u32>(w << 19u, w << 15u, w << 11u, w << 7u) & vec4<u32>(0x00780000u)) | vec4<u32>(0x3f800000u));
}
fn mant_hi(w: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>((vec4<u32>(w << 3u, w >> 1u, w >> 5u, w >> 9u) & vec4<u32>(0x00780000u)) | vec4<u32>(0x3f800000u));
}

// sum of nibble * x over one group of 32 (four words)
fn nib_dot(q: vec4<u32>, x: X8) -> f32 {
    return dot(nib_lo(q.x), x.v0) + dot(nib_hi(q.x), x.v1) + dot(nib_lo(q.y), x.v2) + dot(nib_hi(q.y), x.v3)
         + dot(nib_lo(q.z), x.v4) + dot(nib_hi(q.z), x.v5) + dot(nib_lo(q.w), x.v6) + dot(nib_hi(q.w), x.v7);
}

const K: u32 = 64u;
const w_KG: u32 = K / 32u;
const N_ROWS: u32 = 128u;
const ROW0: u32 = 0u;
const LANES: u32 = 32u;
const RW: u32 = 256u / LANES;  // rows per workgroup
const PAIR: bool = false;
// Q8_IN (x in int8 blocks, integer dot products: gemv_q8_in.wgsl): few registers for x, so 4 rows with
// PAIR, else 2 (H100, one matmul in a chain: 8B down 15.0 us with 4 rows, 14.2 with 2; qkv 8.3 / 7.9).
// Q8_STAGED (with COMBINE_STAGED): the combined x is staged as such int8 blocks (x8w, d8w) instead of
// in the activation type, and multiplied the same way.
const Q8_IN: bool = false;
const Q8_STAGED: bool = false;
const Q8_OUT: bool = false;  // the output as Q8_IN's int8 blocks (gemv_q8_out.wgsl)
const Q8_K: u32 = 0u;      // Q8_OUT: inputs of the reading matmul (all rows of the output)
const R: u32 = 4u;          // rows per row set (kernels.gemv_threads)
const S: u32 = RW / R;          // row sets
const L: u32 = 32u;          // threads per row set, 4..128 (kernels.gemv_threads)
const T: u32 = S * L;           // threads per workgroup
const ITERS: u32 = w_KG / L;     // groups every thread of a set walks
const TAIL: u32 = w_KG % L;      // lanes below TAIL walk one group more
const ADD: bool = false;
const HAS_BIAS: bool = false;
const ROPE: bool = true;  // y is q_out and rows come in rope pairs: see rope_store
const NORM: bool = false;
const NORM_IN: bool = true;
const NSSQ: u32 = 8u;
const NORM_OUT: bool = false;
const SSQ_OFF: u32 = 0u;
const EPS: f32 = 1e-05;
const X_LAST: bool = false;

@group(0) @binding(1) var<storage, read> x: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read_write> y: array<f16>;
// Weight format q4s: symmetric 4-bit, group 32. q [N, K/32] vec4<u32> (nibble i of word j = element
// 8j+i of the group); scales [N*K/32] (f16 pairs in u32). W[n, k] = (nibble - 8) * scale[n*K/32 + k/32].
@group(0) @binding(3) var<storage, read> w_q: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> w_s: array<u32>;

fn w_scale(i: u32) -> f32 { let p = unpack2x16float(w_s[i >> 1u]); return select(p.x, p.y, (i & 1u) == 1u); }

// Prefill (matmul_tiled): a group's words fetched ahead, dequantized a half (16) at a time when staged.
// Nibble n as the f32 1 + n/16 (mant_lo/hi): (n - 8) s = (1 + n/16) 16 s - 24 s, no int-to-float.
struct w_Raw { q: vec4<u32>, s: f32 }

fn w_fetch(row: u32, g: u32) -> w_Raw {
    let i = row * w_KG + g;
    return w_Raw(w_q[i], w_scale(i));
}

fn w_half(r: w_Raw, h: u32) -> mat4x4<f32> {
    let a = select(r.q.x, r.q.z, h == 1u);
    let b = select(r.q.y, r.q.w, h == 1u);
    let s = vec4<f32>(16.0 * r.s);
    let o = vec4<f32>(-24.0 * r.s);
    return mat4x4<f32>(fma(mant_lo(a), s, o), fma(mant_hi(a), s, o), fma(mant_lo(b), s, o), fma(mant_hi(b), s, o));
}

fn w_load_group(row: u32, g: u32) -> array<vec4<f32>, 8> {
    let i = row * w_KG + g;
    let q = w_q[i];
    let s = w_scale(i);
    var o: array<vec4<f32>, 8>;
    for (var j = 0u; j < 4u; j++) {
        let w = q[j];
        o[2u * j] = (nib_lo(w) - 8.0) * s;
        o[2u * j + 1u] = (nib_hi(w) - 8.0) * s;
    }
    return o;
}

// sum_k W[row, k] x[k] over group g (decode): sum (n - 8) x * scale = (16 sum (1 + n/16) x - 24 sum x) * scale,
// with the nibbles as 1 + n/16 (mant_lo/hi, header.wgsl)
fn w_dot(row: u32, g: u32, x: X8) -> f32 {
    let i = row * w_KG + g;
    let q = w_q[i];
    let m = dot(mant_lo(q.x), x.v0) + dot(mant_hi(q.x), x.v1) + dot(mant_lo(q.y), x.v2) + dot(mant_hi(q.y), x.v3)
          + dot(mant_lo(q.z), x.v4) + dot(mant_hi(q.z), x.v5) + dot(mant_lo(q.w), x.v6) + dot(mant_hi(q.w), x.v7);
    return (16.0 * m - 24.0 * x.sum) * w_scale(i);
}


// Rope epilogue of the qkv matmul (ROPE). The package orders each head's rows in rope pairs: rows
// 2i, 2i + 1 of head h are its dims i and i + HD/2. Given both values (a, b) of token t at position
// p: query heads write rope(a, b) to q_out; key heads append rope(a, b) to k_cache; value heads append
// (a, b) to v_cache. rope (HF rotate_half): (a cos - b sin, b cos + a sin), (cos, sin) = rope_table[p, i].
// The KV cache holds f16 in both profiles (half the bytes of f32 for the f32 profile, which has no f16
// type): a row of a head is HD/2 words, word i the f16 pair (dim i, dim i + HD/2), the pair this
// thread has; readers unpack it with unpack2x16float.
const NQ: u32 = 4u;
const NKV: u32 = 2u;
const HD: u32 = 16u;
const HALF: u32 = HD / 2u;

@group(0) @binding(5) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(7) var<storage, read> rope_table: array<vec2<f32>>;

fn rope_store(t: u32, p: u32, pair_row: u32, a: f32, b: f32) {
    let head = pair_row / HD;
    let i = (pair_row % HD) / 2u;
    if (head < NQ + NKV) {
        let cs = rope_table[p * HALF + i];
        let ra = a * cs.x - b * cs.y;
        let rb = b * cs.x + a * cs.y;
        if (head < NQ) {
            let dst = (t * NQ + head) * HD;
            y[dst + i] = act(ra);
            y[dst + i + HALF] = act(rb);
        } else {
            k_cache[(p * NKV + head - NQ) * HALF + i] = pack2x16float(vec2<f32>(ra, rb));  // position-major
        }
    } else {
        v_cache[(p * NKV + head - NQ - NKV) * HALF + i] = pack2x16float(vec2<f32>(a, b));
    }
}

fn norm_weight(i: u32) -> vec4<f32> { return vec4<f32>(1.0); }
@group(0) @binding(8) var<storage, read> ssq_in: array<f32>;
fn ssq_at(i: u32) -> f32 { return ssq_in[i]; }
fn xo_store(o: u32, h: f32) {}
fn nw_at(o: u32) -> f32 { return 0.0; }
fn ssq_store(i: u32, v: f32) {}

var<workgroup> red_s: array<f32, T>;          // sums of squares of x (NORM, NORM_IN)
var<workgroup> red_q: array<f32, RW>;         // squares of the rows written (NORM_OUT)
var<workgroup> red_a: array<vec4<f32>, T>;  // partial sums of the R rows (gate rows with PAIR)
var<workgroup> red_b: array<vec4<f32>, (T - 1u) * 0u + 1u>;  // up rows (PAIR; else one unused slot)

fn bias_at(i: u32) -> f32 { return 0.0; }

// NORM_IN: partial i of the sum of squares, 0 past the last. The row set sums the NSSQ partials in
// straight-line groups of eight: a loop of one load an iteration, which GPU compilers keep rolled,
// would wait out one load latency per partial before the matmul's own loads start.
fn ssq_part(i: u32) -> f32 { return select(0.0, ssq_at(min(i, max(NSSQ, 1u) - 1u)), i < NSSQ); }

// ---- COMBINE_IN: x from decode attention's partials (attention_decode.wgsl) ----------------------
// x[k] = sum_z o_z[k] w_z / sum_z w_z, w_z = exp(lse_z[h] - max_z lse_z[h]), h = k's head, over the
// splits z the step used (kv_splits, the same rule as the attention kernel). A group of 32 inputs lies
// in one head when HEAD_DIM % 32 == 0, else in at most two (h0, h1).
const COMBINE_IN: bool = false;
// COMBINE_STAGED: the workgroup combines x once into workgroup memory (xw, K values in the activation
// type) before its row sets walk it, instead of each row set combining all of x for itself: the
// combine's reads of the partials (splits x K a workgroup) then fall with the rows per workgroup, and
// more splits cost the o matmul less. Where K values of the activation type exceed 8 KiB (an 8B's
// 4,096 in f32), x is staged and walked in XW_CHUNKS consecutive ranges of XW_GROUPS groups, a barrier
// between them.
const COMBINE_STAGED: bool = false;
const XW_CHUNKS: u32 = 1u;
const XW_GROUPS: u32 = w_KG / XW_CHUNKS;  // groups staged at once
const C_ITERS: u32 = XW_GROUPS / L;       // of a staged range, as ITERS and TAIL of all of K
const C_TAIL: u32 = XW_GROUPS % L;
var<workgroup> xw: array<vec4<f16>, 1u>;
var<workgroup> x8w: array<vec4<u32>, 1u>;  // Q8_STAGED: a range's int8 blocks, two vec4 a group
var<workgroup> d8w: array<vec2<f32>, 1u>;  //   and (d, c) per block (gemv_q8_in.wgsl)
var<private> xw_g0: u32;  // the first group staged in xw
fn combined_x(g: u32) -> X8 { return X8(); }
const CV = 1u;
fn stage_vec4s(v: u32, o: u32) {}
// ---- end COMBINE_IN ------------------------------------------------------------------------------

// the combined x of the staged range into xw (COMBINE_STAGED), CV vec4 a thread at a time
fn stage_combined(lid: u32) {
    for (var v = lid * CV; v < XW_GROUPS * 8u; v += T * CV) {
        stage_vec4s(xw_g0 * 8u + v, v);
    }
}

// vec4 k (0..7) of group g of x, as stored (COMBINE_STAGED: from xw; X_LAST: the last token's row)
fn x_raw(g: u32, k: u32) -> vec4<f32> {
    if (COMBINE_STAGED) { return vec4<f32>(xw[(g - xw_g0) * 8u + k]); }
    var i = g * 8u + k;
    if (X_LAST) { i += (step.n_tokens - 1u) * (K / 4u); }
    return vec4<f32>(x[i]);
}

fn load_x(g: u32) -> X8 {
    if (COMBINE_IN && !COMBINE_STAGED) { return combined_x(g); }
    var r: X8;
    r.v0 = x_raw(g, 0u);
    r.v1 = x_raw(g, 1u);
    r.v2 = x_raw(g, 2u);
    r.v3 = x_raw(g, 3u);
    r.v4 = x_raw(g, 4u);
    r.v5 = x_raw(g, 5u);
    r.v6 = x_raw(g, 6u);
    r.v7 = x_raw(g, 7u);
    r.sum = dot((r.v0 + r.v1) + (r.v2 + r.v3) + (r.v4 + r.v5) + (r.v6 + r.v7), vec4<f32>(1.0));
    return r;
}

// gemv.wgsl's reduction with subgroup operations (the `subgroups` feature), right for any power-of-two
// subgroup size P (4 on SwiftShader, 8 on lavapipe, 32 on NVIDIA, 32 or 64 on AMD, 8 to 32 on Intel).
// A row set is L consecutive invocations starting at a multiple of L, and a subgroup P consecutive
// invocations starting at a multiple of P (local_invocation_index = the subgroup's first + its
// subgroup_invocation_id: WGSL does not promise this, but every implementation we know lays out a
// one-dimensional workgroup so). Hence:
// - P <= L: each subgroup lies within one row set. subgroupAdd sums it and its first invocation leaves
//   one partial in workgroup memory; a set has L / P of them, which row_sum adds.
// - P > L: a subgroup holds several whole row sets. A butterfly over the lane bits below L
//   (subgroupShuffleXor with masks 1, 2, .., L / 2) sums each set without crossing into the next, and
//   the set's first invocation leaves the total.
// One barrier in all, against 1 + log2(L) for the tree.
// P is the `subgroup_size` built-in, known only when the kernel runs. Where it is P_FOLD (32: NVIDIA,
// Apple, AMD in wave32) the same code runs with P a constant, which the shader compiler folds (the
// modulo, the loop over a row set's partials): the branch is uniform, and native decode on an H100
// gains 0.6-1.1% (docs/PERFORMANCE.md; Dawn's compiler gains nothing, it already ran as fast).
const P_FOLD: u32 = 32u;
var<private> red_stride: u32;  // slots between a row set's partials: min(P, L)

fn reduce_row_sets(lid: u32, a0: vec4<f32>, b0: vec4<f32>, ss0: f32, sg_size: u32) {
    if (sg_size == P_FOLD) {
        reduce_subgroups(lid, a0, b0, ss0, P_FOLD);
    } else {
        reduce_subgroups(lid, a0, b0, ss0, sg_size);
    }
    workgroupBarrier();
}

fn reduce_subgroups(lid: u32, a0: vec4<f32>, b0: vec4<f32>, ss0: f32, p: u32) {
    var a = a0;
    var b = b0;
    var ss = ss0;
    if (p <= L) {
        a = subgroupAdd(a);
        if (PAIR) { b = subgroupAdd(b); }
        if (NORM || NORM_IN) { ss = subgroupAdd(ss); }
    } else {
        for (var m = 1u; m < L; m <<= 1u) {
            a += subgroupShuffleXor(a, m);
            if (PAIR) { b += subgroupShuffleXor(b, m); }
            if (NORM || NORM_IN) { ss += subgroupShuffleXor(ss, m); }
        }
    }
    red_stride = min(p, L);
    if (lid % min(p, L) == 0u) {
        red_a[lid] = a;
        if (PAIR) { red_b[lid] = b; }
        if (NORM || NORM_IN) { red_s[lid] = ss; }
    }
}

// y value of the workgroup's row j after the reduction: (W·x, W_up·x)
fn row_sum(j: u32) -> vec2<f32> {
    if (red_stride == min(P_FOLD, L)) { return row_sum_by(j, min(P_FOLD, L)); }
    return row_sum_by(j, red_stride);
}

fn row_sum_by(j: u32, stride: u32) -> vec2<f32> {
    let slot = (j / R) * L;
    var v = vec2<f32>(0.0);
    var ss = 0.0;
    for (var i = slot; i < slot + L; i += stride) {
        v += vec2<f32>(red_a[i][j % R], red_b[i][j % R]);
        ss += red_s[i];
    }
    if (NORM || NORM_IN) { v *= inverseSqrt(ss / f32(K) + EPS); }
    return v;
}


// x * norm_w over group g, and the squares of x into *ss
fn normed(g: u32, r: X8, ss: ptr<function, f32>) -> X8 {
    *ss += dot(r.v0, r.v0) + dot(r.v1, r.v1) + dot(r.v2, r.v2) + dot(r.v3, r.v3)
         + dot(r.v4, r.v4) + dot(r.v5, r.v5) + dot(r.v6, r.v6) + dot(r.v7, r.v7);
    let b = g * 8u;
    var o: X8;
    o.v0 = r.v0 * norm_weight(b);
    o.v1 = r.v1 * norm_weight(b + 1u);
    o.v2 = r.v2 * norm_weight(b + 2u);
    o.v3 = r.v3 * norm_weight(b + 3u);
    o.v4 = r.v4 * norm_weight(b + 4u);
    o.v5 = r.v5 * norm_weight(b + 5u);
    o.v6 = r.v6 * norm_weight(b + 6u);
    o.v7 = r.v7 * norm_weight(b + 7u);
    o.sum = dot((o.v0 + o.v1) + (o.v2 + o.v3) + (o.v4 + o.v5) + (o.v6 + o.v7), vec4<f32>(1.0));
    return o;
}

// vec4 k (0..7) of group g of x for the matmul (NORM: times the norm weight, its squares into *ss)
fn x_vec(g: u32, k: u32, ss: ptr<function, f32>) -> vec4<f32> {
    var v = x_raw(g, k);
    if (NORM) {
        *ss += dot(v, v);
        v *= norm_weight(g * 8u + k);
    }
    return v;
}

// ROWS_FIRST (gemv_rows_q4s.wgsl, for q4s weights with f32 x): the group's words of every row first,
// then x a word's worth at a time; else x's group first (load_x), then each row's w_dot.
const ROWS_FIRST: bool = false;
fn accumulate_rows_first(g: u32, rows: vec4<u32>, a: ptr<function, vec4<f32>>, b: ptr<function, vec4<f32>>, ss: ptr<function, f32>) {}
fn accumulate_q8(g: u32, rows: vec4<u32>, a: ptr<function, vec4<f32>>, b: ptr<function, vec4<f32>>) {}
var<workgroup> q8v: array<f32, 1>;
fn q8_store_block(t: u32, first_row: u32) {}

fn accumulate(g: u32, rows: vec4<u32>, a: ptr<function, vec4<f32>>, b: ptr<function, vec4<f32>>,
              ss: ptr<function, f32>) {
    if (ROWS_FIRST) {
        accumulate_rows_first(g, rows, a, b, ss);
        return;
    }
    if (Q8_IN || Q8_STAGED) {
        accumulate_q8(g, rows, a, b);
        return;
    }
    var xg = load_x(g);
    if (NORM) { xg = normed(g, xg, ss); }
    (*a).x += w_dot(rows.x, g, xg);
    if (R > 1u) { (*a).y += w_dot(rows.y, g, xg); }
    if (R > 2u) {
        (*a).z += w_dot(rows.z, g, xg);
        (*a).w += w_dot(rows.w, g, xg);
    }
    if (PAIR) {
        (*b).x += w_dot(rows.x + N_ROWS, g, xg);
        if (R > 1u) { (*b).y += w_dot(rows.y + N_ROWS, g, xg); }
        if (R > 2u) {
            (*b).z += w_dot(rows.z + N_ROWS, g, xg);
            (*b).w += w_dot(rows.w + N_ROWS, g, xg);
        }
    }
}

@compute @workgroup_size(T)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_size) sg_size: u32) {
    let lane = lid % L;
    let first = wid.x * RW + (lid / L) * R;  // this thread's first row
    // rows past the end read the last row (their sums are never stored)
    let rows = min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(N_ROWS - 1u));
    var a = vec4<f32>(0.0);
    var b = vec4<f32>(0.0);
    var ss = 0.0;
    if (COMBINE_STAGED) {
        for (var c = 0u; c < XW_CHUNKS; c++) {
            if (c > 0u) { workgroupBarrier(); }  // every row set is done with the last range
            xw_g0 = c * XW_GROUPS;
            stage_combined(lid);
            workgroupBarrier();
            for (var i = 0u; i < C_ITERS; i++) {
                accumulate(xw_g0 + lane + i * L, rows, &a, &b, &ss);
            }
            if (C_TAIL > 0u && lane < C_TAIL) {
                accumulate(xw_g0 + lane + C_ITERS * L, rows, &a, &b, &ss);
            }
        }
    } else {
        for (var i = 0u; i < ITERS; i++) {
            accumulate(lane + i * L, rows, &a, &b, &ss);
        }
        if (TAIL > 0u && lane < TAIL) {
            accumulate(lane + ITERS * L, rows, &a, &b, &ss);
        }
    }
    // NORM_IN: eight partials an iteration, loaded at once (see ssq_part); after the matmul, which
    // needs none of them, so that no thread waits for them before its first weight loads
    if (NORM_IN) {
        for (var i = lane; i < NSSQ; i += 8u * L) {
            ss += ((ssq_part(i) + ssq_part(i + L)) + (ssq_part(i + 2u * L) + ssq_part(i + 3u * L)))
                + ((ssq_part(i + 4u * L) + ssq_part(i + 5u * L)) + (ssq_part(i + 6u * L) + ssq_part(i + 7u * L)));
        }
    }
    // ---- reduction: each row set's partial sums meet; row_sum(j) then gives row j's ----
    reduce_row_sets(lid, a, b, ss, sg_size);
    // epilogue: thread j < RW finishes the workgroup's row j
    let j = lid;
    let row = wid.x * RW + j;
    let live = j < RW && row < N_ROWS;
    if (ROPE) {
        if (live && (row & 1u) == 0u) {  // the pair's second row is the next one, in this workgroup (RW is even)
            var p = row_sum(j).x;
            var q = row_sum(j + 1u).x;
            if (HAS_BIAS) {
                p += bias_at(row);
                q += bias_at(row + 1u);
            }
            rope_store(0u, step.past, ROW0 + row, p, q);
        }
        return;
    }
    var sq = 0.0;
    if (Q8_OUT && j < RW) { q8v[j] = 0.0; }  // rows past the end quantize as zeros
    if (live) {
        var v = row_sum(j);
        if (HAS_BIAS) {
            v.x += bias_at(row);
            if (PAIR) { v.y += bias_at(row + N_ROWS); }
        }
        if (PAIR) { v.x = v.x / (1.0 + exp(-v.x)) * v.y; }
        let o = ROW0 + row;
        if (ADD) {
            let h = f32(y[o]) + v.x;
            y[o] = f16(h);
            if (NORM_OUT) {
                if (Q8_OUT) { q8v[j] = h * nw_at(o); } else { xo_store(o, h); }
                sq = h * h;
            }
        } else if (Q8_OUT) {
            q8v[j] = v.x;
        } else {
            y[o] = f16(v.x);
        }
    }
    if (Q8_OUT) {
        workgroupBarrier();
        if (j < RW / 8u && wid.x * RW + 8u * j < N_ROWS) { q8_store_block(j, wid.x * RW); }
    }
    if (NORM_OUT) {
        if (j < RW) { red_q[j] = sq; }
        workgroupBarrier();
        if (lid == 0u) {
            var total = 0.0;
            for (var i = 0u; i < RW; i++) { total += red_q[i]; }
            ssq_store(SSQ_OFF + wid.x, total);
        }
    }
}
