// Flash-decoding combine: out[h, :] = sum_s acc_s * exp(m_s - M) / sum_s l_s * exp(m_s - M), over the
// splits s that the decode attention filled for this step (s < ceil((past + 1) / SPLIT)), M = max_s m_s.
// The split weights exp(m_s - M) / sum are computed once per split (trees in workgroup memory, 128
// splits at a time), then each thread sums its output dims over the splits.
// Bindings: 0 step; 1 part_acc [splits, NQ, HD] f32; 2 part_ml [splits, NQ] vec2<f32>; 3 out [NQ*HD] act.
// Grid: x = NQ (one token: decode).
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
const HD: u32 = 16u;
const SPLIT: u32 = 64u;
const T: u32 = 128u;
const DPT: u32 = (HD + T - 1u) / T;  // output dims per thread (1 or 2)

@group(0) @binding(1) var<storage, read> part_acc: array<f32>;
@group(0) @binding(2) var<storage, read> part_ml: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<act>;

var<workgroup> red: array<f32, T>;
var<workgroup> wts: array<f32, T>;

fn tree_max(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var w = T / 2u; w > 0u; w >>= 1u) {
        if (lid < w) { red[lid] = max(red[lid], red[lid + w]); }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn tree_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var w = T / 2u; w > 0u; w >>= 1u) {
        if (lid < w) { red[lid] += red[lid + w]; }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let used = (step.past + SPLIT) / SPLIT;
    var mx = -1e30;
    for (var s = lid; s < used; s += T) { mx = max(mx, part_ml[s * NQ + h].x); }
    let m = tree_max(lid, mx);
    var l = 0.0;
    for (var s = lid; s < used; s += T) {
        let ml = part_ml[s * NQ + h];
        l += ml.y * exp(ml.x - m);
    }
    let inv = 1.0 / tree_sum(lid, l);
    var a0 = 0.0;
    var a1 = 0.0;
    for (var s0 = 0u; s0 < used; s0 += T) {
        if (s0 + lid < used) { wts[lid] = exp(part_ml[(s0 + lid) * NQ + h].x - m) * inv; }
        workgroupBarrier();
        let n = min(T, used - s0);
        for (var i = 0u; i < n; i++) {
            let base = ((s0 + i) * NQ + h) * HD;
            let w = wts[i];
            if (lid < HD) { a0 += part_acc[base + lid] * w; }
            if (DPT > 1u && lid + T < HD) { a1 += part_acc[base + lid + T] * w; }
        }
        workgroupBarrier();
    }
    if (lid < HD) { out[h * HD + lid] = act(a0); }
    if (DPT > 1u && lid + T < HD) { out[h * HD + lid + T] = act(a1); }
}
