// Decode attention (one token), flash-decoding: one workgroup per (KV head kh, split z) covers the
// SPLIT cache positions [z*SPLIT, (z+1)*SPLIT) for all G = NQ/NKV query heads that share kh, so each
// K and V row is read once per step (not once per query head):
//   s[g, j] = q[kh*G + g, :] . k[j, kh, :] * SCALE            one thread per (g, j)
//   m[g] = max_j s, l[g] = sum_j exp(s - m)                    trees in workgroup memory
//   acc[g, :] = sum_j exp(s[g, j] - m[g]) v[j, kh, :]          thread (d, part): dims d, a share of j
// and writes the unnormalized partial (acc, m, l) for attention_combine.wgsl. Positions outside
// [max(0, p + 1 - WINDOW), p] (p = step.past; WINDOW 0: no window) do not count.
// Bindings: 0 step; 1 q [NQ*HD] act; 2 k_cache [capacity, NKV, HD] act (position-major); 3 v_cache;
//   4 part_acc [splits, NQ, HD] f32; 5 part_ml [splits, NQ] vec2<f32>.
// Grid: x = NKV, y = 1, z = ceil((past + 1) / SPLIT). Needs HD dividing 256.
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
const WINDOW: u32 = 0u;
const SCALE: f32 = 0.25;
const SPLIT: u32 = 64u;  // a power of two
const G: u32 = NQ / NKV;
const T: u32 = 256u;
const PARTS: u32 = T / HD;      // threads sharing one output dim, each over SPLIT / PARTS positions
const NEG: f32 = -1e30;

@group(0) @binding(1) var<storage, read> q: array<act>;
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<act>>;
@group(0) @binding(3) var<storage, read> v_cache: array<act>;
@group(0) @binding(4) var<storage, read_write> part_acc: array<f32>;
@group(0) @binding(5) var<storage, read_write> part_ml: array<vec2<f32>>;

var<workgroup> qs: array<vec4<f32>, G * HD / 4u>;
var<workgroup> ps: array<f32, G * SPLIT>;    // scores, then exp(s - m)
var<workgroup> red: array<f32, G * SPLIT>;   // max / sum trees
var<workgroup> accs: array<f32, G * T>;      // V partial sums of the PARTS threads of each dim

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let kh = wid.x;
    let z = wid.z;
    let p = step.past;
    var start = 0u;
    if (WINDOW > 0u && p + 1u > WINDOW) { start = p + 1u - WINDOW; }
    let j0 = z * SPLIT;
    let end = min(p + 1u, j0 + SPLIT);
    for (var i = lid; i < G * HD / 4u; i += T) {
        let b = kh * G * HD + 4u * i;  // heads kh*G .. kh*G + G - 1 are consecutive in q
        qs[i] = vec4<f32>(f32(q[b]), f32(q[b + 1u]), f32(q[b + 2u]), f32(q[b + 3u])) * SCALE;
    }
    workgroupBarrier();
    for (var i = lid; i < G * SPLIT; i += T) {
        let g = i / SPLIT;
        let j = j0 + i % SPLIT;
        var s = NEG;
        if (j >= start && j < end) {
            s = 0.0;
            let kb = (j * NKV + kh) * (HD / 4u);
            let qb = g * (HD / 4u);
            for (var d = 0u; d < HD / 4u; d++) {
                s += dot(qs[qb + d], vec4<f32>(k_cache[kb + d]));
            }
        }
        ps[i] = s;
        red[i] = s;
    }
    workgroupBarrier();
    for (var w = SPLIT / 2u; w > 0u; w >>= 1u) {
        for (var i = lid; i < G * SPLIT; i += T) {
            if (i % SPLIT < w) { red[i] = max(red[i], red[i + w]); }
        }
        workgroupBarrier();
    }
    for (var i = lid; i < G * SPLIT; i += T) {
        let m = red[(i / SPLIT) * SPLIT];
        var e = 0.0;
        if (ps[i] > NEG) { e = exp(ps[i] - m); }
        ps[i] = e;
    }
    workgroupBarrier();
    // the max is needed below: keep it in a register before the sum tree reuses `red`
    var m_own = NEG;
    if (lid < G) { m_own = red[lid * SPLIT]; }
    workgroupBarrier();
    for (var i = lid; i < G * SPLIT; i += T) { red[i] = ps[i]; }
    workgroupBarrier();
    for (var w = SPLIT / 2u; w > 0u; w >>= 1u) {
        for (var i = lid; i < G * SPLIT; i += T) {
            if (i % SPLIT < w) { red[i] += red[i + w]; }
        }
        workgroupBarrier();
    }
    // V: thread (d, part) sums positions part, part + PARTS, ... for every head of the group
    let d = lid % HD;
    let part = lid / HD;
    var acc: array<f32, G>;
    for (var jj = part; jj < SPLIT; jj += PARTS) {
        let j = j0 + jj;
        if (j >= end) { break; }
        let v = f32(v_cache[(j * NKV + kh) * HD + d]);
        for (var g = 0u; g < G; g++) { acc[g] += ps[g * SPLIT + jj] * v; }
    }
    for (var g = 0u; g < G; g++) { accs[g * T + lid] = acc[g]; }
    workgroupBarrier();
    if (part == 0u) {
        for (var g = 0u; g < G; g++) {
            var a = 0.0;
            for (var r = 0u; r < PARTS; r++) { a += accs[g * T + r * HD + d]; }
            part_acc[(z * NQ + kh * G + g) * HD + d] = a;
        }
    }
    if (lid < G) { part_ml[z * NQ + kh * G + lid] = vec2<f32>(m_own, red[lid * SPLIT]); }
}
