// Sampling on the GPU: token_ids[0] = the next token, which stays on the GPU as the next decode
// step's input.
//   temperature <= 0: argmax_v logits[v] (the first index among equal maxima, as torch.argmax);
//   else: a draw from softmax(logits / temperature) restricted to the top-p nucleus, with the
//   uniform number hash(seed, counter), so a (seed, step) pair gives the same token everywhere.
// The nucleus is {v : p_v >= theta}, theta the largest threshold whose kept mass reaches top_p
// (found by bisection on p / p_max, 24 halvings); ties at theta are kept. The draw walks the kept
// probabilities in vocabulary order: 256 contiguous chunks, a prefix sum over them, then one scan.
// Bindings: 0 step; 1 logits [V] f32; 2 token_ids [CHUNK] u32.  Grid: one workgroup of 256.
{{HEADER}}
const V: u32 = {{V}}u;
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
