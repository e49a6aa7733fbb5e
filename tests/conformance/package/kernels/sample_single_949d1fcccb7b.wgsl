// The sampling rule stated directly, by ONE workgroup (slow: ~56 full scans for top-k / top-p). The
// plans use the split sampler (sample_chunks, sample_mass, sample_draw), which picks the same token and
// writes the same sample_out bit for bit; tests and benchmarks/sample_bench.py compare the two.
// Sampling on the GPU: token_ids[0] = the next token, which stays on the GPU as the next decode
// step's input; sample_out = [token, logprob, top ids..., top logprobs...] for the CPU to read.
// The rule, exactly (docs/FORMAT.md, "Sampling", is the reference both runtimes follow):
//   step.emit == 0 (a prefill chunk that is not the last): nothing is sampled or written.
//   1. adjusted logit l_v = logits[v], then, each only if its flag is set:
//        penalties: c = token_counts[v] & 0x7fffffff (times generated), seen = token_counts[v] != 0
//          if seen and repetition_penalty != 1: l = l > 0 ? l / repetition_penalty : l * repetition_penalty
//          l -= frequency_penalty * c + presence_penalty * (c > 0 ? 1 : 0)
//        bias: l += logit_bias[v]
//        mask: token v is excluded unless bit (v % 32) of token_mask[v / 32] is set
//   2. temperature <= 0: the allowed v with the largest l (lowest index among equals).
//   3. else p_v = exp((l_v - l_max) / temperature) over the allowed tokens (l_max: their largest l);
//      keep v if: top_k == 0 or l_v >= the top_k-th largest allowed l (ties kept), found exactly by
//      a bisection on the order-preserving u32 key of l (32 steps);
//      and p_v >= min_p; and p_v >= theta, theta the largest threshold (24 halvings of [0, 1]) whose
//      kept mass (over the tokens kept so far) reaches top_p times their whole mass (theta = 0 when
//      top_p >= 1).
//      Draw u = f32(pcg(seed ^ pcg(counter)) >> 8) / 2^24 times the kept mass; walk the kept p_v in
//      vocabulary order (256 contiguous chunks: chunk sums first, then the chunk) until the running
//      sum exceeds it.
//   4. penalties flag: token_counts[chosen] += 1 (the chosen token now counts as generated).
//   5. logprobs flag: sample_out[1] = logits[chosen] - M - log(sum_v exp(logits[v] - M)), M the max
//      raw logit (log-softmax of the raw logits: before penalties, bias, mask and temperature); the
//      n_logprobs largest raw logits (lowest index first among equals) give sample_out[2 + i] (id)
//      and sample_out[2 + MAX_TOP + i] (its log-softmax, f32 bits).
// Bindings: 0 step; 1 logits [V] f32; 2 token_ids [CHUNK] u32; 3 logit_bias [V] f32;
//   4 token_counts [V] u32; 5 token_mask [ceil(V / 32)] u32; 6 sample_out [2 + 2 * MAX_TOP] u32.
// Grid: one workgroup of 256; thread i owns the vocabulary chunk [i * CH, (i + 1) * CH).
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

const V: u32 = 256u;
const CH: u32 = (V + 255u) / 256u;  // vocabulary entries per thread chunk
const MAX_TOP: u32 = 20u;

@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> token_ids: array<u32>;
@group(0) @binding(3) var<storage, read> logit_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> token_counts: array<u32>;
@group(0) @binding(5) var<storage, read> token_mask: array<u32>;
@group(0) @binding(6) var<storage, read_write> sample_out: array<u32>;

// The sampling rule's shared pieces (docs/FORMAT.md, "Sampling"), in both samplers (sample_single.wgsl
// and the split one's prelude, sample.wgsl): the sample flags, the seeded hash, the adjusted logit of
// a token (step 1 of the rule) and an order-preserving u32 key of an f32. Needs the bindings logits,
// token_counts, logit_bias and token_mask.
const F_PENALTIES: u32 = 1u;
const F_BIAS: u32 = 2u;
const F_MASK: u32 = 4u;
const F_LOGPROBS: u32 = 8u;
const EXCLUDED: f32 = -3.0e38;  // an adjusted logit at or below this: the token is not allowed

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

// the adjusted logit of token v (step 1), -3.4e38 when the mask forbids it
fn adjusted(v: u32) -> f32 {
    var l = logits[v];
    let flags = step.sample_flags;
    if ((flags & F_PENALTIES) != 0u) {
        let raw = token_counts[v];
        let c = raw & 0x7fffffffu;
        if (raw != 0u && step.repetition_penalty != 1.0) {
            if (l > 0.0) { l = l / step.repetition_penalty; } else { l = l * step.repetition_penalty; }
        }
        l -= step.frequency_penalty * f32(c) + select(0.0, step.presence_penalty, c > 0u);
    }
    if ((flags & F_BIAS) != 0u) { l += logit_bias[v]; }
    if ((flags & F_MASK) != 0u && ((token_mask[v >> 5u] >> (v & 31u)) & 1u) == 0u) { l = -3.4e38; }
    return l;
}

// an order-preserving u32 key of an f32 (a < b  <=>  key(a) < key(b))
fn key(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;
var<workgroup> red: array<f32, 256>;

// sum over the workgroup of each thread's `v` (all threads must call it)
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// the workgroup's best (largest value, lowest index among equals) of each thread's candidate
fn workgroup_best(lid: u32, bv: f32, bi: u32) -> u32 {
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let ov = best_v[lid + s];
            let oi = best_i[lid + s];
            if (ov > best_v[lid] || (ov == best_v[lid] && oi < best_i[lid])) {
                best_v[lid] = ov;
                best_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    let i = best_i[0];
    workgroupBarrier();
    return i;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    if (step.emit == 0u) { return; }
    let lo_v = lid * CH;
    let hi_v = min(V, lo_v + CH);

    // greedy choice, and the largest allowed adjusted logit
    var bv = -3.4e38;
    var bi = 0xffffffffu;
    for (var v = lo_v; v < hi_v; v++) {
        let x = adjusted(v);
        if (x > bv) { bv = x; bi = v; }
    }
    let argmax = min(workgroup_best(lid, bv, bi), V - 1u);
    let m = adjusted(argmax);
    var chosen = argmax;

    if (step.temperature > 0.0) {
        let inv_t = 1.0 / step.temperature;
        // top-k: the k-th largest key among the allowed tokens, bit by bit from the top
        var kmin = 0u;
        if (step.top_k > 0u && step.top_k < V) {
            for (var bit = 31i; bit >= 0i; bit--) {
                let cand = kmin | (1u << u32(bit));
                var n = 0.0;
                for (var v = lo_v; v < hi_v; v++) {
                    let x = adjusted(v);
                    if (x > EXCLUDED && key(x) >= cand) { n += 1.0; }
                }
                if (workgroup_sum(lid, n) >= f32(step.top_k)) { kmin = cand; }
            }
        }
        let pmin = step.min_p;
        // mass of the tokens kept by top-k and min-p
        var z = 0.0;
        for (var v = lo_v; v < hi_v; v++) {
            let x = adjusted(v);
            let p = exp((x - m) * inv_t);
            if (x > EXCLUDED && key(x) >= kmin && p >= pmin) { z += p; }
        }
        let total = workgroup_sum(lid, z);
        var theta = 0.0;
        if (step.top_p < 1.0) {
            let need = step.top_p * total;
            var lo = 0.0;  // kept mass at lo >= need
            var hi = 1.0;
            for (var it = 0u; it < 24u; it++) {
                let mid = 0.5 * (lo + hi);
                var part = 0.0;
                for (var v = lo_v; v < hi_v; v++) {
                    let x = adjusted(v);
                    let p = exp((x - m) * inv_t);
                    if (x > EXCLUDED && key(x) >= kmin && p >= pmin && p >= mid) { part += p; }
                }
                if (workgroup_sum(lid, part) >= need) { lo = mid; } else { hi = mid; }
            }
            theta = lo;
        }
        let floor_p = max(pmin, theta);
        var mine = 0.0;
        for (var v = lo_v; v < hi_v; v++) {
            let x = adjusted(v);
            let p = exp((x - m) * inv_t);
            if (x > EXCLUDED && key(x) >= kmin && p >= floor_p) { mine += p; }
        }
        red[lid] = mine;
        workgroupBarrier();
        if (lid == 0u) {
            // exclusive prefix over the 256 chunks, then walk the chunk where the draw lands
            var kept = 0.0;
            for (var i = 0u; i < 256u; i++) { kept += red[i]; }
            let r = f32(pcg(step.seed ^ pcg(step.counter)) >> 8u) / 16777216.0;
            let u = r * kept;
            var acc = 0.0;
            var found = false;
            for (var i = 0u; i < 256u && !found; i++) {
                if (acc + red[i] > u && red[i] > 0.0) {
                    let a = i * CH;
                    let b = min(V, a + CH);
                    for (var v = a; v < b; v++) {
                        let x = adjusted(v);
                        let p = exp((x - m) * inv_t);
                        if (x > EXCLUDED && key(x) >= kmin && p >= floor_p) {
                            acc += p;
                            chosen = v;
                            if (acc > u) { break; }
                        }
                    }
                    found = true;
                } else {
                    acc += red[i];
                }
            }
            best_i[0] = chosen;
        }
        workgroupBarrier();
        chosen = best_i[0];
        workgroupBarrier();
    }

    if ((step.sample_flags & F_LOGPROBS) != 0u) {
        // log-softmax of the raw logits: M, then log of the sum
        var rv = -3.4e38;
        var ri = 0xffffffffu;
        for (var v = lo_v; v < hi_v; v++) {
            let x = logits[v];
            if (x > rv) { rv = x; ri = v; }
        }
        let mx = logits[min(workgroup_best(lid, rv, ri), V - 1u)];
        var s = 0.0;
        for (var v = lo_v; v < hi_v; v++) { s += exp(logits[v] - mx); }
        let lse = mx + log(workgroup_sum(lid, s));
        if (lid == 0u) { sample_out[1] = bitcast<u32>(logits[chosen] - lse); }
        // the n largest raw logits, in order: each round takes the best strictly below the last
        var pv = 3.4e38;
        var pi = 0u;
        for (var k = 0u; k < min(step.n_logprobs, MAX_TOP); k++) {
            var cv = -3.4e38;
            var ci = 0xffffffffu;
            for (var v = lo_v; v < hi_v; v++) {
                let x = logits[v];
                let below = x < pv || (x == pv && v > pi);
                if (below && (x > cv || ci == 0xffffffffu)) { cv = x; ci = v; }
            }
            if (ci == 0xffffffffu) { cv = -3.4e38; }
            let i = min(workgroup_best(lid, cv, ci), V - 1u);
            pv = logits[i];
            pi = i;
            if (lid == 0u) {
                sample_out[2u + k] = i;
                sample_out[2u + MAX_TOP + k] = bitcast<u32>(pv - lse);
            }
        }
    }
    if (lid == 0u) {
        token_ids[0] = chosen;
        sample_out[0] = chosen;
        if ((step.sample_flags & F_PENALTIES) != 0u) {
            token_counts[chosen] = token_counts[chosen] + 1u;
        }
    }
}
