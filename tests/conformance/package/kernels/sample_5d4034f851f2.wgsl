// Sampling on the GPU: token_ids[0] = the next token, which stays on the GPU as the next decode
// step's input.
//   temperature <= 0: argmax_v logits[v] (the first index among equal maxima, as torch.argmax);
//   else: a draw from softmax(logits / temperature) restricted to the top-p nucleus, with the
//   uniform number hash(seed, counter), so a (seed, step) pair gives the same token everywhere.
// The nucleus is {v : p_v >= theta}, theta the largest threshold whose kept mass reaches top_p
// (found by bisection on p / p_max, 24 halvings); ties at theta are kept. The draw walks the kept
// probabilities in vocabulary order: 256 contiguous chunks, a prefix sum over them, then one scan.
// Bindings: 0 step; 1 logits [V] f32; 2 token_ids [CHUNK] u32.  Grid: one workgroup of 256.
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

const V: u32 = 256u;
const CH: u32 = (V + 255u) / 256u;  // vocabulary entries per thread chunk

@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> token_ids: array<u32>;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;
var<workgroup> red: array<f32, 256>;

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

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

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    var bv = -3.4e38;
    var bi = 0xffffffffu;
    for (var v = lid; v < V; v += 256u) {
        let x = logits[v];
        if (x > bv) { bv = x; bi = v; }
    }
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
    let m = best_v[0];
    let argmax = min(best_i[0], V - 1u);
    if (step.temperature <= 0.0) {
        if (lid == 0u) { token_ids[0] = argmax; }
        return;
    }
    let inv_t = 1.0 / step.temperature;
    let lo_v = lid * CH;
    let hi_v = min(V, lo_v + CH);

    // p_v / p_max = exp((logit - max) / T), in (0, 1]
    var z = 0.0;
    for (var v = lo_v; v < hi_v; v++) { z += exp((logits[v] - m) * inv_t); }
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
                let p = exp((logits[v] - m) * inv_t);
                if (p >= mid) { part += p; }
            }
            if (workgroup_sum(lid, part) >= need) { lo = mid; } else { hi = mid; }
        }
        theta = lo;
    }
    var mine = 0.0;
    for (var v = lo_v; v < hi_v; v++) {
        let p = exp((logits[v] - m) * inv_t);
        if (p >= theta) { mine += p; }
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
        var chosen = argmax;
        var found = false;
        for (var i = 0u; i < 256u && !found; i++) {
            if (acc + red[i] > u && red[i] > 0.0) {
                let a = i * CH;
                let b = min(V, a + CH);
                for (var v = a; v < b; v++) {
                    let p = exp((logits[v] - m) * inv_t);
                    if (p >= theta) {
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
        token_ids[0] = chosen;
    }
}
