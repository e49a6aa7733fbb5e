// Register-tiled dequantizing matmul for prefill:  y[t, ROW0 + n] (op) sum_k W[n, k] * x[t, k]
//   (op) = store | ADD into y (the residual stream) | PAIR: y = silu(W[n]·x + b) * (W[n + N_ROWS]·x + b')
// A workgroup computes BM tokens x 128 rows (PAIR: 64 rows, whose 64 gate and 64 up rows are staged),
// walking K in groups of 32. For each group, threads 0..127 each read one staged row's 32 weights
// (w_fetch: the raw words) and every thread reads XU vec4 of x (4 lanes a token, so a warp's loads
// touch 8 tokens' rows, not 32: H100, 8B shapes, 512 tokens, 6-8% faster than a token a lane; the
// stores go through a swizzle, xcol, that keeps them free of bank conflicts); the group goes through workgroup
// memory in two halves of 16 k (at most 16 KiB, WebGPU's default limit), each weight dequantized once
// per tile as it is staged (w_half), and the next group is fetched into registers while the second
// half is multiplied: 4 barriers per group, threads 128.. idle while the others dequantize.
// With 256 threads (BM 128) and 32 KiB of workgroup memory (beyond WebGPU's default limit: the plan
// lists such a variant's need under `variant_limits`), the workgroup memory holds a whole group
// ([32 k]) and every thread stages weights, 2 barriers per group (STAGING):
//   WIDE: the whole group staged at once (thread lid: half lid / 128 of row lid % 128), then its 32 k
//     multiplied while the next group is fetched;
//   DBUF: the two halves double-buffered (k 0..15, 16..31; thread lid: 8 k of a half), each half's
//     stores going in beside the other half's multiply, so no stretch between barriers is staging alone.
// Thread (tx, ty) of 16 x 16 (BM 32: 16 x 8) accumulates TPT x 8 outputs: tokens 4ty..4ty+3 (and, with
// TPT 8, BM/2 + 4ty..) x rows 4tx..4tx+3 and 64+4tx.. (PAIR: the gate and the up row of 4tx..4tx+3).
// Per k, (TPT + 8) / 4 vec4 reads of workgroup memory feed 8 TPT FMAs; a warp covers 8 tx x 4 ty, so
// each of its reads touches at most 128 bytes.
// Bindings: 0 step; 1 x [T, K] (vec4 of f16); 2 y [T, N_OUT] (f16); 3.. weight arrays of format
// q4s; then bias [rows] f32 (HAS_BIAS); with ROPE, y is q_out, then k_cache, v_cache, rope_table.
// Grid: x = ceil(N_ROWS / TILE_ROWS), y = ceil(T / BM).
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
const KV4: u32 = K / 4u;
const w_KG: u32 = K / 32u;
const N_ROWS: u32 = 128u;
const N_OUT: u32 = 128u;
const ROW0: u32 = 0u;
const PAIR: bool = false;
const ADD: bool = false;
const HAS_BIAS: bool = false;
const ROPE: bool = true;  // y is q_out and rows come in rope pairs: see rope_store
const BM: u32 = 32u;       // tokens per workgroup: 32, 64 or 128
const BM4: u32 = BM / 4u;
const TPT: u32 = 4u;     // tokens per thread: 4, or 8 with BM 128
const NT: u32 = 4u * BM / (TPT / 4u);  // threads: 128 or 256
const XU: u32 = 8u * BM / NT;  // vec4 of x each thread stages per group: 2 or 4
const TILE_ROWS: u32 = 128u;  // output rows per workgroup: 128, or 64 with PAIR
const STAGING: u32 = 0u;  // 0: halves (16 KiB), 1: WIDE, 2: DBUF (32 KiB; NT 256)
const WIDE: u32 = 1u;
const DBUF: u32 = 2u;
const KS: u32 = 16u;  // k held in workgroup memory: 16 (halves) or 32
// F16_MATH (shader-f16): x and W staged as f16 and multiplied in f16: half the workgroup memory (the
// wide stagings fit in 16 KiB) and half the bytes of its reads, which bound the multiply about as much
// as the FMAs do (an H100 through Vulkan runs f16 FMAs at about the f32 rate). The products of one
// group of 32 k are summed in f16 (the accumulators a0..) and added to f32 totals (s_a0..) after each
// group, so no f16 sum runs over more than 32 terms. Still about 3x the f16 profile's error against
// transformers: plans carry such variants only on request (webllm compile --prefill-half).
const F16_MATH: bool = false;
alias mt = f32;

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


var<workgroup> xs: array<vec4<mt>, KS * BM4>;  // [KS k][BM tokens], 4 tokens per vec4
var<workgroup> ws: array<vec4<mt>, KS * 32u>;  // [KS k][128 staged rows], 4 rows per vec4

// Accumulators of this thread: token 4ty + i (a, b) and, with TPT 8, BM/2 + 4ty + i (c, d), by rows
// 4tx..+3 (a, c) and 64 + 4tx..+3 (b, d; PAIR: the up rows of 4tx..).
var<private> a0: vec4<mt>;
var<private> a1: vec4<mt>;
var<private> a2: vec4<mt>;
var<private> a3: vec4<mt>;
var<private> b0: vec4<mt>;
var<private> b1: vec4<mt>;
var<private> b2: vec4<mt>;
var<private> b3: vec4<mt>;
var<private> c0: vec4<mt>;
var<private> c1: vec4<mt>;
var<private> c2: vec4<mt>;
var<private> c3: vec4<mt>;
var<private> d0: vec4<mt>;
var<private> d1: vec4<mt>;
var<private> d2: vec4<mt>;
var<private> d3: vec4<mt>;
// F16_MATH: the f32 totals of the accumulators, added to after each group (fold)
var<private> s_a0: vec4<f32>;
var<private> s_a1: vec4<f32>;
var<private> s_a2: vec4<f32>;
var<private> s_a3: vec4<f32>;
var<private> s_b0: vec4<f32>;
var<private> s_b1: vec4<f32>;
var<private> s_b2: vec4<f32>;
var<private> s_b3: vec4<f32>;
var<private> s_c0: vec4<f32>;
var<private> s_c1: vec4<f32>;
var<private> s_c2: vec4<f32>;
var<private> s_c3: vec4<f32>;
var<private> s_d0: vec4<f32>;
var<private> s_d1: vec4<f32>;
var<private> s_d2: vec4<f32>;
var<private> s_d3: vec4<f32>;

fn fold() {
    s_a0 += vec4<f32>(a0);
    a0 = vec4<mt>();
    s_a1 += vec4<f32>(a1);
    a1 = vec4<mt>();
    s_a2 += vec4<f32>(a2);
    a2 = vec4<mt>();
    s_a3 += vec4<f32>(a3);
    a3 = vec4<mt>();
    s_b0 += vec4<f32>(b0);
    b0 = vec4<mt>();
    s_b1 += vec4<f32>(b1);
    b1 = vec4<mt>();
    s_b2 += vec4<f32>(b2);
    b2 = vec4<mt>();
    s_b3 += vec4<f32>(b3);
    b3 = vec4<mt>();
    if (TPT == 8u) {
        s_c0 += vec4<f32>(c0);
        c0 = vec4<mt>();
        s_c1 += vec4<f32>(c1);
        c1 = vec4<mt>();
        s_c2 += vec4<f32>(c2);
        c2 = vec4<mt>();
        s_c3 += vec4<f32>(c3);
        c3 = vec4<mt>();
        s_d0 += vec4<f32>(d0);
        d0 = vec4<mt>();
        s_d1 += vec4<f32>(d1);
        d1 = vec4<mt>();
        s_d2 += vec4<f32>(d2);
        d2 = vec4<mt>();
        s_d3 += vec4<f32>(d3);
        d3 = vec4<mt>();
    }
}

// an accumulator's sum over all of K
fn total(h: vec4<mt>, s: vec4<f32>) -> vec4<f32> {
    if (F16_MATH) { return s; }
    return vec4<f32>(h);
}

// x[t, 32g + 4kq .. + 3]. Loads are never skipped (a branch would make the warp wait for them before
// the multiply that should hide them): rows and tokens past the end are clamped to the last, and
// their sums are never stored.
fn load_x(t: u32, g: u32, kq: u32) -> vec4<mt> {
    return vec4<mt>(x[t * KV4 + g * 8u + kq]);
}

// 8 k of one staged row into workgroup memory: W's k kb..kb+7 (a = kb.., b = kb+4..) of staged row s
// (< 128), stored transposed ([k][row]). Straight-line stores (no loop indexing a local: a dynamically
// indexed local may live in memory).
fn stage_w8(s: u32, kb: u32, af: vec4<f32>, bf: vec4<f32>) {
    let a = vec4<mt>(af);
    let b = vec4<mt>(bf);
    let q = s / 4u;
    let wl = s % 4u;
    ws[(kb + 0u) * 32u + q][wl] = a.x;
    ws[(kb + 1u) * 32u + q][wl] = a.y;
    ws[(kb + 2u) * 32u + q][wl] = a.z;
    ws[(kb + 3u) * 32u + q][wl] = a.w;
    ws[(kb + 4u) * 32u + q][wl] = b.x;
    ws[(kb + 5u) * 32u + q][wl] = b.y;
    ws[(kb + 6u) * 32u + q][wl] = b.z;
    ws[(kb + 7u) * 32u + q][wl] = b.w;
}

// 16 k of staged row s from k kb on: v = a half of W's group (w_half); v[i] holds k 4i..4i+3
fn stage_w(s: u32, kb: u32, v: mat4x4<f32>) {
    stage_w8(s, kb, v[0], v[1]);
    stage_w8(s, kb + 8u, v[2], v[3]);
}

// Column of token quad c (tokens 4c..4c+3) in row k of xs: quads swizzled by k (XOR with 2 * the
// k quad's index mod 4), so that the stores of stage_x (4 lanes a token, 8 tokens a warp) fall in 32
// different banks; the multiply reads each row's columns through the same map.
fn xcol(k: u32, c: u32) -> u32 { return k * BM4 + (c ^ (2u * ((k >> 2u) & 3u))); }

// x vec4s into workgroup memory at stage k 4kq..4kq+3: xv of token xa and, with XU 4, xw of token xb.
// The loads behind them (load_x) are coalesced: 4 lanes read a token's 4 consecutive vec4.
fn stage_x(kq: u32, xa: u32, xb: u32, xv: vec4<mt>, xw: vec4<mt>) {
    xs[xcol(4u * kq + 0u, xa / 4u)][xa % 4u] = xv.x;
    xs[xcol(4u * kq + 1u, xa / 4u)][xa % 4u] = xv.y;
    xs[xcol(4u * kq + 2u, xa / 4u)][xa % 4u] = xv.z;
    xs[xcol(4u * kq + 3u, xa / 4u)][xa % 4u] = xv.w;
    if (XU == 4u) {
        xs[xcol(4u * kq + 0u, xb / 4u)][xb % 4u] = xw.x;
        xs[xcol(4u * kq + 1u, xb / 4u)][xb % 4u] = xw.y;
        xs[xcol(4u * kq + 2u, xb / 4u)][xb % 4u] = xw.z;
        xs[xcol(4u * kq + 3u, xb / 4u)][xb % 4u] = xw.w;
    }
}

// staged k k into this thread's accumulators (fma: one instruction per product, never a multiply
// and an add)
fn multiply_k(tx: u32, ty: u32, k: u32) {
    let xk = xs[xcol(k, ty)];
    let wa = ws[k * 32u + tx];
    let wb = ws[k * 32u + 16u + tx];
    a0 = fma(vec4<mt>(xk.x), wa, a0);
    b0 = fma(vec4<mt>(xk.x), wb, b0);
    a1 = fma(vec4<mt>(xk.y), wa, a1);
    b1 = fma(vec4<mt>(xk.y), wb, b1);
    a2 = fma(vec4<mt>(xk.z), wa, a2);
    b2 = fma(vec4<mt>(xk.z), wb, b2);
    a3 = fma(vec4<mt>(xk.w), wa, a3);
    b3 = fma(vec4<mt>(xk.w), wb, b3);
    if (TPT == 8u) {
        let xl = xs[xcol(k, BM4 / 2u + ty)];
        c0 = fma(vec4<mt>(xl.x), wa, c0);
        d0 = fma(vec4<mt>(xl.x), wb, d0);
        c1 = fma(vec4<mt>(xl.y), wa, c1);
        d1 = fma(vec4<mt>(xl.y), wb, d1);
        c2 = fma(vec4<mt>(xl.z), wa, c2);
        d2 = fma(vec4<mt>(xl.z), wb, d2);
        c3 = fma(vec4<mt>(xl.w), wa, c3);
        d3 = fma(vec4<mt>(xl.w), wb, d3);
    }
}

// staged k k0..k0+15: 16 calls, not a loop, which NVIDIA's Vulkan compiler leaves rolled (H100, 8B
// gate_up, 512 tokens, wide128 staging: 4.80 ms as a loop, 3.72 ms so)
fn multiply(tx: u32, ty: u32, k0: u32) {
    multiply_k(tx, ty, k0 + 0u);
    multiply_k(tx, ty, k0 + 1u);
    multiply_k(tx, ty, k0 + 2u);
    multiply_k(tx, ty, k0 + 3u);
    multiply_k(tx, ty, k0 + 4u);
    multiply_k(tx, ty, k0 + 5u);
    multiply_k(tx, ty, k0 + 6u);
    multiply_k(tx, ty, k0 + 7u);
    multiply_k(tx, ty, k0 + 8u);
    multiply_k(tx, ty, k0 + 9u);
    multiply_k(tx, ty, k0 + 10u);
    multiply_k(tx, ty, k0 + 11u);
    multiply_k(tx, ty, k0 + 12u);
    multiply_k(tx, ty, k0 + 13u);
    multiply_k(tx, ty, k0 + 14u);
    multiply_k(tx, ty, k0 + 15u);
}

// What the prefill matmuls (matmul_tiled.wgsl, matmul_q8.wgsl) share: which weight row a tile stages, and
// the epilogue, one token's sums for 4 consecutive rows into y (store, ADD into the residual stream,
// PAIR: silu(gate) * up, or ROPE: rope_store), with the bias. Expects N_ROWS, N_OUT, ROW0, PAIR, ADD,
// HAS_BIAS, ROPE, y and rope_store.

// staged row s (0..127) of the tile at row n0, clamped to the matrix
fn staged_row(n0: u32, s: u32) -> u32 {
    if (PAIR) {
        let r = min(n0 + s % 64u, N_ROWS - 1u);
        return select(r, r + N_ROWS, s >= 64u);
    }
    return min(n0 + s, N_ROWS - 1u);
}

fn bias_at(i: u32) -> f32 { return 0.0; }

// The epilogue of one token and 4 consecutive rows: a = W x (+ bias); PAIR: b = the up rows.
fn finish(t0: u32, t: u32, nt: u32, r0: u32, a: vec4<f32>, b: vec4<f32>) {
    if (t >= nt) { return; }
    if (ROPE) {  // rows r0.. are two rope pairs
        for (var c = 0u; c < 4u; c += 2u) {
            let row = r0 + c;
            if (row >= N_ROWS) { continue; }
            var u = a[c];
            var v = a[c + 1u];
            if (HAS_BIAS) {
                u += bias_at(row);
                v += bias_at(row + 1u);
            }
            rope_store(t0 + t, step.past + t0 + t, ROW0 + row, u, v);
        }
        return;
    }
    for (var c = 0u; c < 4u; c++) {
        let row = r0 + c;
        if (row >= N_ROWS) { continue; }
        var u = a[c];
        if (HAS_BIAS) { u += bias_at(row); }
        if (PAIR) {
            var v = b[c];
            if (HAS_BIAS) { v += bias_at(row + N_ROWS); }
            u = u / (1.0 + exp(-u)) * v;
        }
        let o = (t0 + t) * N_OUT + ROW0 + row;
        if (ADD) {
            y[o] = f16(f32(y[o]) + u);
        } else {
            y[o] = f16(u);
        }
    }
}


@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t0 = wid.y * BM;
    let n0 = wid.x * TILE_ROWS;
    let nt = min(BM, step.n_tokens - t0);
    let warp = lid / 32u;
    let lane = lid % 32u;
    let tx = lane % 8u + 8u * (warp % 2u);  // row quads 4tx.. and 64 + 4tx..
    let ty = lane / 8u + 4u * (warp / 2u);  // tokens 4ty.. (and BM/2 + 4ty.. with TPT 8)
    // staging roles: x vec4 kq of each half of tokens xa (and xb with XU 4); W row lid % 128
    let kq = lid % 4u;
    let xa = lid / 4u;
    let xb = xa + NT / 4u;
    let xrow = t0 + min(xa, nt - 1u);
    let xrow2 = t0 + min(xb, nt - 1u);
    let wn = staged_row(n0, lid % 128u);

    var wr = w_fetch(wn, 0u);
    var x0 = load_x(xrow, 0u, kq);
    var x1 = load_x(xrow, 0u, kq + 4u);
    var x2 = vec4<mt>();
    var x3 = vec4<mt>();
    if (XU == 4u) {
        x2 = load_x(xrow2, 0u, kq);
        x3 = load_x(xrow2, 0u, kq + 4u);
    }
    if (STAGING == DBUF) {  // the first group's first half: the loop finds k 0..15 staged
        let h = w_half(wr, 0u);
        stage_w8(lid % 128u, 8u * (lid / 128u), select(h[0], h[2], lid >= 128u), select(h[1], h[3], lid >= 128u));
        stage_x(kq, xa, xb, x0, x2);
        workgroupBarrier();
    }
    for (var g = 0u; g < w_KG; g++) {
        let gn = min(g + 1u, w_KG - 1u);  // the next group (the last one again at the end)
        if (STAGING == WIDE) {  // the whole group, then its 32 k: 2 barriers
            stage_w(lid % 128u, 16u * (lid / 128u), w_half(wr, lid / 128u));
            stage_x(kq, xa, xb, x0, x2);
            stage_x(kq + 4u, xa, xb, x1, x3);
            workgroupBarrier();
            wr = w_fetch(wn, gn);  // fetched while the group is multiplied
            x0 = load_x(xrow, gn, kq);
            x1 = load_x(xrow, gn, kq + 4u);
            x2 = load_x(xrow2, gn, kq);
            x3 = load_x(xrow2, gn, kq + 4u);
            multiply(tx, ty, 0u);
            multiply(tx, ty, 16u);
            if (F16_MATH) { fold(); }
            workgroupBarrier();
        } else if (STAGING == DBUF) {  // k 0..15 staged; 2 barriers
            // this group's second half into k 16..31 (free since the last barrier) beside the first's multiply
            let h = w_half(wr, 1u);
            stage_w8(lid % 128u, 16u + 8u * (lid / 128u), select(h[0], h[2], lid >= 128u), select(h[1], h[3], lid >= 128u));
            stage_x(kq + 4u, xa, xb, x1, x3);
            multiply(tx, ty, 0u);
            workgroupBarrier();
            wr = w_fetch(wn, gn);  // fetched while the second half is multiplied
            x0 = load_x(xrow, gn, kq);
            x1 = load_x(xrow, gn, kq + 4u);
            x2 = load_x(xrow2, gn, kq);
            x3 = load_x(xrow2, gn, kq + 4u);
            multiply(tx, ty, 16u);
            if (F16_MATH) { fold(); }
            // the next group's first half into k 0..15, free since the barrier above
            let n = w_half(wr, 0u);
            stage_w8(lid % 128u, 8u * (lid / 128u), select(n[0], n[2], lid >= 128u), select(n[1], n[3], lid >= 128u));
            stage_x(kq, xa, xb, x0, x2);
            workgroupBarrier();
        } else {  // halves through 16 k of workgroup memory: 4 barriers
            if (lid < 128u) { stage_w(lid, 0u, w_half(wr, 0u)); }
            stage_x(kq, xa, xb, x0, x2);
            workgroupBarrier();
            multiply(tx, ty, 0u);
            workgroupBarrier();
            if (lid < 128u) { stage_w(lid, 0u, w_half(wr, 1u)); }
            stage_x(kq, xa, xb, x1, x3);
            workgroupBarrier();
            wr = w_fetch(wn, gn);  // fetched while the second half is multiplied
            x0 = load_x(xrow, gn, kq);
            x1 = load_x(xrow, gn, kq + 4u);
            if (XU == 4u) {
                x2 = load_x(xrow2, gn, kq);
                x3 = load_x(xrow2, gn, kq + 4u);
            }
            multiply(tx, ty, 0u);
            if (F16_MATH) { fold(); }
            workgroupBarrier();
        }
    }

    let ra = n0 + 4u * tx;
    let rb = select(ra + 64u, ra, PAIR);
    let t = 4u * ty;
    let u = t + BM / 2u;
    if (PAIR) {
        finish(t0, t, nt, ra, total(a0, s_a0), total(b0, s_b0));
        finish(t0, t + 1u, nt, ra, total(a1, s_a1), total(b1, s_b1));
        finish(t0, t + 2u, nt, ra, total(a2, s_a2), total(b2, s_b2));
        finish(t0, t + 3u, nt, ra, total(a3, s_a3), total(b3, s_b3));
        if (TPT == 8u) {
            finish(t0, u, nt, ra, total(c0, s_c0), total(d0, s_d0));
            finish(t0, u + 1u, nt, ra, total(c1, s_c1), total(d1, s_d1));
            finish(t0, u + 2u, nt, ra, total(c2, s_c2), total(d2, s_d2));
            finish(t0, u + 3u, nt, ra, total(c3, s_c3), total(d3, s_d3));
        }
        return;
    }
    finish(t0, t, nt, ra, total(a0, s_a0), total(a0, s_a0));
    finish(t0, t + 1u, nt, ra, total(a1, s_a1), total(a1, s_a1));
    finish(t0, t + 2u, nt, ra, total(a2, s_a2), total(a2, s_a2));
    finish(t0, t + 3u, nt, ra, total(a3, s_a3), total(a3, s_a3));
    finish(t0, t, nt, rb, total(b0, s_b0), total(b0, s_b0));
    finish(t0, t + 1u, nt, rb, total(b1, s_b1), total(b1, s_b1));
    finish(t0, t + 2u, nt, rb, total(b2, s_b2), total(b2, s_b2));
    finish(t0, t + 3u, nt, rb, total(b3, s_b3), total(b3, s_b3));
    if (TPT == 8u) {
        finish(t0, u, nt, ra, total(c0, s_c0), total(c0, s_c0));
        finish(t0, u + 1u, nt, ra, total(c1, s_c1), total(c1, s_c1));
        finish(t0, u + 2u, nt, ra, total(c2, s_c2), total(c2, s_c2));
        finish(t0, u + 3u, nt, ra, total(c3, s_c3), total(c3, s_c3));
        finish(t0, u, nt, rb, total(d0, s_d0), total(d0, s_d0));
        finish(t0, u + 1u, nt, rb, total(d1, s_d1), total(d1, s_d1));
        finish(t0, u + 2u, nt, rb, total(d2, s_d2), total(d2, s_d2));
        finish(t0, u + 3u, nt, rb, total(d3, s_d3), total(d3, s_d3));
    }
}
