// Causal attention of the step's tokens over the KV cache (GQA), one workgroup per (head, token):
//   out[t, h, :] = sum_j softmax_j(q[t, h, :] . k[j, kh, :] * SCALE) v[j, kh, :],  kh = h / (NQ/NKV)
//   over cache positions j in [max(0, p + 1 - WINDOW), p] where p = step.past + t (WINDOW 0: no window).
// Online softmax over blocks of 64 positions: thread j scores position j0 + j, then every thread
// accumulates its own output dims d = lid, lid + 64, ... over the block.
// DECODE (one token, flash-decoding; the fallback of attention_decode.wgsl): workgroup z covers only
// split z of the KV range (attention_splits.wgsl) and writes its partial, o = acc / l in the
// activation type and lse = m + log(l), which the o matmul combines (gemv.wgsl COMBINE_IN).
// The cache holds f16 pairs (rope_store.wgsl): word i of a row is (dim i, dim i + HD/2).
// Bindings: 0 step; 1 q [T, NQ*HD] act; 2 k_cache [capacity, NKV, HD / 2] f16 pairs (position-major); 3 v_cache; then
//   prefill: 4 out [T, NQ*HD] act;  DECODE: 4 part_o [SPLITS, NQ, HD] act, 5 part_lse [SPLITS, NQ] f32.
// Grid: x = NQ, y = T, z = 1 (DECODE: T = 1, z = SPLITS).
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

const NQ: u32 = 4u;
const NKV: u32 = 2u;
const HD: u32 = 16u;
const WINDOW: u32 = 0u;
const SCALE: f32 = 0.25;
const DPT: u32 = (HD + 63u) / 64u;  // output dims per thread
const HALF: u32 = HD / 2u;  // words of a K or V row
const DECODE: bool = true;
// How decode attention cuts the KV range of a step over its workgroups (flash-decoding), shared by the
// attention kernel that writes one partial per split and the o matmul that combines them (gemv.wgsl
// COMBINE_IN), so both derive the same split count from the step's uniform alone (past, kv_splits).
// The step's token at position p attends to [first, p], first = max(0, p + 1 - WINDOW) (WINDOW 0: no
// window): n positions, cut into at most S = min(SPLITS, kv_splits or SPLITS) splits of `span`
// positions, span a multiple of 64 (one split per 64 positions while n <= 64 * S; then the span grows
// with the context). The dispatch gives min(SPLITS, kv_splits, ceil((p + 1) / 64)) workgroups along z
// (`kv_per_z` 64, `max_z` SPLITS): at least `used`; those of splits >= used (a sliding window's, or all
// beyond S for a runtime that ignores kv_splits in the grid) return at once.
const SPL_MAX: u32 = 1u;
const SPL_UNIT: u32 = 64u;
const SPL_WINDOW: u32 = 0u;

// (first position, span, used splits) for the decode step of position p. The most splits is SPL_MAX,
// or fewer when the step's uniform asks (step.kv_splits: the runtime's pick, timed at first load).
fn kv_splits(p: u32) -> vec3<u32> {
    let kv = p + 1u;
    var first = 0u;
    if (SPL_WINDOW > 0u && kv > SPL_WINDOW) { first = kv - SPL_WINDOW; }
    let n = kv - first;
    var most = SPL_MAX;
    if (step.kv_splits > 0u) { most = min(SPL_MAX, step.kv_splits); }
    let units = (n + SPL_UNIT - 1u) / SPL_UNIT;
    let span = (units + most - 1u) / most * SPL_UNIT;
    return vec3<u32>(first, span, (n + span - 1u) / span);
}


@group(0) @binding(1) var<storage, read> q: array<act>;
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;
@group(0) @binding(4) var<storage, read_write> part_o: array<act>;
@group(0) @binding(5) var<storage, read_write> part_lse: array<f32>;

var<workgroup> qs: array<f32, HD>;
var<workgroup> ps: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let kh = h / (NQ / NKV);
    let p = step.past + t;
    let kv_len = p + 1u;
    var start = 0u;
    if (WINDOW > 0u && kv_len > WINDOW) { start = kv_len - WINDOW; }
    var end = kv_len;
    if (DECODE) {
        let sp = kv_splits(p);
        if (wid.z >= sp.z) { return; }
        start = sp.x + wid.z * sp.y;
        end = min(end, start + sp.y);
    }
    let qbase = t * NQ * HD + h * HD;
    for (var d = lid; d < HD; d += 64u) {
        qs[d] = f32(q[qbase + d]) * SCALE;
    }
    workgroupBarrier();

    let cache = kh * HALF;  // K/V of position j, head kh: (j * NKV + kh) * HALF
    var m = -1e30;
    var l = 0.0;
    var acc: array<f32, DPT>;
    for (var j0 = start; j0 < end; j0 += 64u) {
        let j = j0 + lid;
        var s = -1e30;
        if (j < end) {
            s = 0.0;
            let kb = cache + j * NKV * HALF;
            for (var i = 0u; i < HALF; i++) {
                let k = unpack2x16float(k_cache[kb + i]);
                s += qs[i] * k.x + qs[i + HALF] * k.y;
            }
        }
        ps[lid] = s;
        workgroupBarrier();
        var bm = -1e30;
        for (var i = 0u; i < 64u; i++) { bm = max(bm, ps[i]); }
        let nm = max(m, bm);
        workgroupBarrier();
        ps[lid] = exp(s - nm);
        workgroupBarrier();
        let alpha = exp(m - nm);
        var bl = 0.0;
        for (var i = 0u; i < 64u; i++) { bl += ps[i]; }
        l = l * alpha + bl;
        let n = min(64u, end - j0);
        for (var e = 0u; e < DPT; e++) {
            let d = lid + 64u * e;
            if (d < HD) {
                var a = acc[e] * alpha;
                let vb = cache + d % HALF;
                for (var i = 0u; i < n; i++) {
                    let v = unpack2x16float(v_cache[vb + (j0 + i) * NKV * HALF]);
                    a += ps[i] * select(v.x, v.y, d >= HALF);
                }
                acc[e] = a;
            }
        }
        m = nm;
        workgroupBarrier();
    }
    let slot = wid.z * NQ + h;
    for (var e = 0u; e < DPT; e++) {
        let d = lid + 64u * e;
        if (d < HD) { part_o[slot * HD + d] = act(acc[e] / l); }
    }
    if (lid == 0u) { part_lse[slot] = m + log(l); }
}
