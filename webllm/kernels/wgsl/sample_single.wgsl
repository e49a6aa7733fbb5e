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
{{HEADER}}
const V: u32 = {{V}}u;
const CH: u32 = (V + 255u) / 256u;  // vocabulary entries per thread chunk
const MAX_TOP: u32 = {{MAX_TOP}}u;

@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> token_ids: array<u32>;
@group(0) @binding(3) var<storage, read> logit_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> token_counts: array<u32>;
@group(0) @binding(5) var<storage, read> token_mask: array<u32>;
@group(0) @binding(6) var<storage, read_write> sample_out: array<u32>;

{{RULE}}
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
