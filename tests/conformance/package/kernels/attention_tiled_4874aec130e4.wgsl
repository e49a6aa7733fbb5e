// Causal attention for prefill: one workgroup per (head, tile of 16 query tokens), so each K/V block
// is read once for 16 queries.
//   out[t, h, :] = sum_j softmax_j(q[t, h, :] . k[j, kh, :] * SCALE) v[j, kh, :],  kh = h / (NQ/NKV)
//   over cache positions j in [max(0, p + 1 - WINDOW), p], p = step.past + t (WINDOW 0: no window).
// Per block of BK positions: stage K in workgroup memory, score (4 threads per query, BK/4 positions
// each), stage V in the same memory, then online-softmax update (each thread owns HD/4 output dims).
// Bindings: 0 step; 1 q [T, NQ*HD] act; 2 k_cache [capacity, NKV, HD] act (position-major); 3 v_cache; 4 out [T, NQ*HD] act.
// Grid: x = NQ, y = ceil(T / 16).
// Shared prelude of every kernel. `act` is the activation storage type of the device profile
// (f32, or f16 with shader-f16); arithmetic is always done in f32.

alias act = f32;

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

const NQ: u32 = 4u;
const NKV: u32 = 2u;
const HD: u32 = 16u;
const HD4: u32 = HD / 4u;
const WINDOW: u32 = 0u;
const SCALE: f32 = 0.25;
const BQ: u32 = 16u;
const BK: u32 = 16u;        // positions per block (16, or 8 for head_dim > 64: workgroup memory)
const KPT: u32 = BK / 4u;       // positions scored per thread
const DQ4: u32 = HD4 / 4u;      // vec4 of output dims per thread

@group(0) @binding(1) var<storage, read> q: array<vec4<act>>;
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<act>>;
@group(0) @binding(3) var<storage, read> v_cache: array<vec4<act>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<act>>;

var<workgroup> qs: array<vec4<f32>, BQ * HD4>;
var<workgroup> kv: array<vec4<f32>, BK * HD4>;
var<workgroup> s: array<f32, BQ * BK>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t0 = wid.y * BQ;
    let kh = h / (NQ / NKV);
    let nt = min(BQ, step.n_tokens - t0);
    let qi = lid / 4u;
    let quarter = lid % 4u;
    let valid = qi < nt;
    let p = step.past + t0 + qi;  // this thread's query position
    for (var i = lid; i < BQ * HD4; i += 64u) {
        var v = vec4<f32>(0.0);
        if (i / HD4 < nt) { v = vec4<f32>(q[((t0 + i / HD4) * NQ + h) * HD4 + i % HD4]) * SCALE; }
        qs[i] = v;
    }
    let kv_end = step.past + t0 + nt;  // one past the last query's position
    var kv_start = 0u;
    if (WINDOW > 0u && step.past + t0 + 1u > WINDOW) { kv_start = step.past + t0 + 1u - WINDOW; }
    let cache = kh * HD4;  // K/V of position j, head kh: (j * NKV + kh) * HD4
    var m = -1e30;
    var l = 0.0;
    var acc: array<vec4<f32>, DQ4>;
    workgroupBarrier();
    for (var j0 = kv_start; j0 < kv_end; j0 += BK) {
        for (var i = lid; i < BK * HD4; i += 64u) {
            var v = vec4<f32>(0.0);
            if (j0 + i / HD4 < kv_end) { v = vec4<f32>(k_cache[cache + (j0 + i / HD4) * NKV * HD4 + i % HD4]); }
            kv[i] = v;
        }
        workgroupBarrier();
        for (var c = 0u; c < KPT; c++) {
            let jj = quarter * KPT + c;
            let j = j0 + jj;
            var sc = -1e30;
            if (valid && j <= p && (WINDOW == 0u || j + WINDOW > p)) {
                sc = 0.0;
                for (var d = 0u; d < HD4; d++) { sc += dot(qs[qi * HD4 + d], kv[jj * HD4 + d]); }
            }
            s[qi * BK + jj] = sc;
        }
        workgroupBarrier();
        for (var i = lid; i < BK * HD4; i += 64u) {
            var v = vec4<f32>(0.0);
            if (j0 + i / HD4 < kv_end) { v = vec4<f32>(v_cache[cache + (j0 + i / HD4) * NKV * HD4 + i % HD4]); }
            kv[i] = v;
        }
        var bm = -1e30;
        for (var jj = 0u; jj < BK; jj++) { bm = max(bm, s[qi * BK + jj]); }
        let nm = max(m, bm);
        let alpha = exp(m - nm);
        workgroupBarrier();
        for (var e = 0u; e < DQ4; e++) { acc[e] *= alpha; }
        var bl = 0.0;
        for (var jj = 0u; jj < BK; jj++) {
            let sc = s[qi * BK + jj];
            let pj = select(0.0, exp(sc - nm), sc > -1e29);  // masked positions weigh nothing
            bl += pj;
            for (var e = 0u; e < DQ4; e++) { acc[e] += pj * kv[jj * HD4 + quarter * DQ4 + e]; }
        }
        l = l * alpha + bl;
        m = nm;
        workgroupBarrier();
    }
    if (valid) {
        let o = ((t0 + qi) * NQ + h) * HD4 + quarter * DQ4;
        for (var e = 0u; e < DQ4; e++) { out[o + e] = vec4<act>(acc[e] / l); }
    }
}
