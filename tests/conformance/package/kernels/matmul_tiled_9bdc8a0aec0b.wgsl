// Tiled dequantizing matmul for prefill:  y[t, ROW0 + n] (op) sum_k W[n, k] * x[t, k]
//   (op) = store | ADD into y (the residual stream) | PAIR: y = silu(W[n]·x + b) * (W[n + N_ROWS]·x + b')
// A workgroup computes a tile of 32 tokens x 32 rows, walking K in groups of 32: each step stages
// x[32 tokens, 32] and the dequantized W[32 rows (x2 for PAIR), 32] in workgroup memory; each of the
// 128 threads accumulates 2 tokens x 4 rows in vec4 registers. Weights are dequantized once per tile.
// Bindings: 0 step; 1 x [T, K] (vec4 of f16); 2 y [T, N_OUT] (f32); 3.. weight arrays of format
// q4s; then bias [rows] f32 (HAS_BIAS); with ROPE, y is q_out, then k_cache, v_cache, rope_table.
// Grid: x = ceil(N_ROWS / 32), y = ceil(T / 32).
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
    _pad0: u32,
    _pad1: u32,
}
@group(0) @binding(0) var<uniform> step: Step;

// 32 consecutive inputs as eight vec4 (and their sum, which folds a quantization offset out of the
// inner loop): plain struct fields, so they live in registers (indexed arrays may not).
struct X8 { v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>,
            v4: vec4<f32>, v5: vec4<f32>, v6: vec4<f32>, v7: vec4<f32>, sum: f32 }

// The eight 4-bit values of a u32 (nibble i = element i), low four and high four.
fn nib_lo(w: u32) -> vec4<f32> { return vec4<f32>(vec4<u32>(w, w >> 4u, w >> 8u, w >> 12u) & vec4<u32>(15u)); }
fn nib_hi(w: u32) -> vec4<f32> { return vec4<f32>(vec4<u32>(w >> 16u, w >> 20u, w >> 24u, w >> 28u) & vec4<u32>(15u)); }

// sum of nibble * x over one group of 32 (four words)
fn nib_dot(q: vec4<u32>, x: X8) -> f32 {
    return dot(nib_lo(q.x), x.v0) + dot(nib_hi(q.x), x.v1) + dot(nib_lo(q.y), x.v2) + dot(nib_hi(q.y), x.v3)
         + dot(nib_lo(q.z), x.v4) + dot(nib_hi(q.z), x.v5) + dot(nib_lo(q.w), x.v6) + dot(nib_hi(q.w), x.v7);
}

const K: u32 = 128u;
const KV4: u32 = K / 4u;
const w_KG: u32 = K / 32u;
const N_ROWS: u32 = 64u;
const N_OUT: u32 = 64u;
const ROW0: u32 = 0u;
const PAIR: bool = false;
const ADD: bool = true;
const HAS_BIAS: bool = false;
const ROPE: bool = false;  // y is q_out and rows come in rope pairs: see rope_store
const WROWS: u32 = 32u;  // weight rows staged per tile: 32, or 64 with PAIR (gate then up)

@group(0) @binding(1) var<storage, read> x: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
// Weight format q4s: symmetric 4-bit, group 32. q [N, K/32] vec4<u32> (nibble i of word j = element
// 8j+i of the group); scales [N*K/32] (f16 pairs in u32). W[n, k] = (nibble - 8) * scale[n*K/32 + k/32].
@group(0) @binding(3) var<storage, read> w_q: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> w_s: array<u32>;

fn w_scale(i: u32) -> f32 { let p = unpack2x16float(w_s[i >> 1u]); return select(p.x, p.y, (i & 1u) == 1u); }

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

// sum_k W[row, k] x[k] over group g: (sum q x - 8 sum x) * scale
fn w_dot(row: u32, g: u32, x: X8) -> f32 {
    let i = row * w_KG + g;
    return (nib_dot(w_q[i], x) - 8.0 * x.sum) * w_scale(i);
}


fn rope_store(t: u32, p: u32, pair_row: u32, a: f32, b: f32) {}

var<workgroup> xs: array<vec4<f32>, 256>;        // [32 tokens][8 vec4] of the current k-group
var<workgroup> ws: array<vec4<f32>, 256>;     // [32 k][WROWS / 4 vec4]: transposed, 4 rows per vec4

fn bias_at(i: u32) -> f32 { return 0.0; }

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t0 = wid.y * 32u;
    let n0 = wid.x * 32u;
    let nt = min(32u, step.n_tokens - t0);
    let tp = lid / 8u;        // token pair: tokens 2tp, 2tp + 1 of the tile
    let rq = lid % 8u;        // row quad: rows 4rq .. 4rq + 3 of the tile
    var a0 = vec4<f32>(0.0);  // token 2tp, rows 4rq..+3 (gate rows with PAIR)
    var a1 = vec4<f32>(0.0);  // token 2tp + 1
    var u0 = vec4<f32>(0.0);  // up rows (PAIR)
    var u1 = vec4<f32>(0.0);

    for (var g = 0u; g < w_KG; g++) {
        // stage x: 32 tokens x 8 vec4 = 256 vec4, two per thread (zeros past the step's tokens)
        for (var i = lid; i < 256u; i += 128u) {
            let t = i / 8u;
            var v = vec4<f32>(0.0);
            if (t < nt) { v = vec4<f32>(x[(t0 + t) * KV4 + g * 8u + (i % 8u)]); }
            xs[i] = v;
        }
        // stage W: one thread per staged row dequantizes its group of 32, stored transposed
        if (lid < WROWS) {
            var n = n0 + lid;
            if (PAIR && lid >= 32u) { n = n0 + lid - 32u + N_ROWS; }
            var w: array<vec4<f32>, 8>;
            if ((n0 + (lid % 32u)) < N_ROWS) { w = w_load_group(n, g); }
            let col = lid / 4u;   // which vec4 along the rows
            let lane = lid % 4u;  // which component of it
            for (var j = 0u; j < 8u; j++) {
                for (var c = 0u; c < 4u; c++) {
                    ws[(j * 4u + c) * (WROWS / 4u) + col][lane] = w[j][c];
                }
            }
        }
        workgroupBarrier();
        for (var kq = 0u; kq < 8u; kq++) {
            let xa = xs[(2u * tp) * 8u + kq];
            let xb = xs[(2u * tp + 1u) * 8u + kq];
            let base = (4u * kq) * (WROWS / 4u) + rq;
            let w0 = ws[base];
            let w1 = ws[base + WROWS / 4u];
            let w2 = ws[base + 2u * (WROWS / 4u)];
            let w3 = ws[base + 3u * (WROWS / 4u)];
            a0 += xa.x * w0 + xa.y * w1 + xa.z * w2 + xa.w * w3;
            a1 += xb.x * w0 + xb.y * w1 + xb.z * w2 + xb.w * w3;
            if (PAIR) {
                let v0 = ws[base + 8u];
                let v1 = ws[base + 8u + WROWS / 4u];
                let v2 = ws[base + 8u + 2u * (WROWS / 4u)];
                let v3 = ws[base + 8u + 3u * (WROWS / 4u)];
                u0 += xa.x * v0 + xa.y * v1 + xa.z * v2 + xa.w * v3;
                u1 += xb.x * v0 + xb.y * v1 + xb.z * v2 + xb.w * v3;
            }
        }
        workgroupBarrier();
    }

    if (ROPE) {  // rows 4rq.. are two rope pairs, both in this thread
        for (var c = 0u; c < 4u; c += 2u) {
            let row = n0 + rq * 4u + c;
            if (row >= N_ROWS) { continue; }
            for (var e = 0u; e < 2u; e++) {
                let t = 2u * tp + e;
                if (t >= nt) { continue; }
                var a = select(a0[c], a1[c], e == 1u);
                var b = select(a0[c + 1u], a1[c + 1u], e == 1u);
                if (HAS_BIAS) {
                    a += bias_at(row);
                    b += bias_at(row + 1u);
                }
                rope_store(t0 + t, step.past + t0 + t, ROW0 + row, a, b);
            }
        }
        return;
    }
    for (var c = 0u; c < 4u; c++) {
        let row = n0 + rq * 4u + c;
        if (row >= N_ROWS) { continue; }
        for (var e = 0u; e < 2u; e++) {
            let t = 2u * tp + e;
            if (t >= nt) { continue; }
            var a = select(a0[c], a1[c], e == 1u);
            var b = select(u0[c], u1[c], e == 1u);
            if (HAS_BIAS) {
                a += bias_at(row);
                if (PAIR) { b += bias_at(row + N_ROWS); }
            }
            if (PAIR) { a = a / (1.0 + exp(-a)) * b; }
            let o = (t0 + t) * N_OUT + ROW0 + row;
            if (ADD) {
                y[o] = f32(f32(y[o]) + a);
            } else {
                y[o] = f32(a);
            }
        }
    }
}
