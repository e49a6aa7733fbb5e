{{PRELUDE}}
// Stage 3 of 3 (see sample.wgsl): one workgroup; thread c speaks for chunk c.
var<workgroup> walk_chunk: u32;  // the chunk the draw lands in (NONE: none)
var<workgroup> red: array<f32, 256>;

// sum over the workgroup of each thread's `v`, by the rule's tree (all threads must call it)
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

// whether chunk c's list holds every token that passes key >= kmin and p >= pf: when the filter drops
// the largest key left out of the list (each filter is monotone in l). The p test keeps a margin of
// a few ulps, so an exp that is not exactly monotone on some GPU cannot make it wrong (only slower).
fn listed(c: u32, m: f32, inv_t: f32, kmin: u32, pf: f32) -> bool {
    let out = chunks[ST_OUT + c];
    return out == 0u || out < kmin || exp((unkey(out) - m) * inv_t) * 1.000001 < pf;
}

// the sum over chunk c, in index order, of p over the allowed tokens with key >= kmin and p >= pf;
// over the chunk's list alone when it holds them all (same terms, same order: the same f32 sum)
fn chunk_mass(c: u32, m: f32, inv_t: f32, kmin: u32, pf: f32) -> f32 {
    var s = 0.0;
    if (listed(c, m, inv_t, kmin, pf)) {
        let n = chunks[ST_LEN + c];
        for (var j = 0u; j < n; j++) {
            let x = bitcast<f32>(chunks[LIST_L + j * 256u + c]);
            let p = exp((x - m) * inv_t);
            if (key(x) >= kmin && p >= pf) { s += p; }
        }
    } else {
        let lo = min(V, c * CH);
        let hi = min(V, lo + CH);
        for (var v = lo; v < hi; v++) {
            let x = sample_adjusted[(v - lo) * 256u + c];  // coalesced across the 256 threads
            let p = exp((x - m) * inv_t);
            if (x > EXCLUDED && key(x) >= kmin && p >= pf) { s += p; }
        }
    }
    return s;
}

// top-k's key K: the top_k-th largest key among the allowed tokens (0 when fewer are allowed), the
// value the rule's bisection finds. A radix select over the chunks' lists when top_k <= CAP (the
// top_k largest keys of the vocabulary are among the lists, which hold each chunk's CAP largest);
// else over the whole vocabulary.
fn top_k_key(lid: u32) -> u32 {
    let from_lists = step.top_k <= CAP;
    var prefix = 0u;
    var need = step.top_k;
    var found = true;
    for (var round = 0u; round < 4u; round++) {
        let shift = 24u - 8u * round;
        let mask = high_mask(shift);
        if (from_lists) {
            let n = chunks[ST_LEN + lid];
            for (var j = 0u; j < n; j++) {
                let k = key(bitcast<f32>(chunks[LIST_L + j * 256u + lid]));
                if ((k & mask) == prefix) { atomicAdd(&hist[(k >> shift) & 255u], 1u); }
            }
        } else {
            for (var s = lid; s < CH * 256u; s += 256u) {  // storage order: s = j * 256 + chunk
                if ((s & 255u) * CH + (s >> 8u) >= V) { continue; }  // past the vocabulary's end
                let x = sample_adjusted[s];
                let k = key(x);
                if (x > EXCLUDED && (k & mask) == prefix) { atomicAdd(&hist[(k >> shift) & 255u], 1u); }
            }
        }
        workgroupBarrier();
        radix_pick(lid, need);
        if (picked[0] == NONE) { found = false; }
        prefix |= picked[0] << shift;
        need -= picked[1];
    }
    return select(0u, prefix, found);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    if (step.emit == 0u) { return; }
    init_workgroup(lid);
    // greedy: the chunks' choices decide (largest adjusted logit, lowest index among equals)
    let argmax = min(chunks_best(lid, ST_BEST_V, ST_BEST_I), V - 1u);
    let m = sample_adjusted[adj_at(argmax)];
    var chosen = argmax;

    if (step.temperature > 0.0) {
        let inv_t = 1.0 / step.temperature;
        let top_k = step.top_k > 0u && step.top_k < V;
        var kmin = 0u;
        if (top_k) { kmin = top_k_key(lid); }
        let pmin = step.min_p;
        // the mass of the tokens kept by top-k and min-p
        var z = 0.0;
        if (top_k) { z = chunk_mass(lid, m, inv_t, kmin, pmin); } else { z = bitcast<f32>(chunks[ST_Z + lid]); }
        let total = workgroup_sum(lid, z);
        var theta = 0.0;
        var mine = z;  // the draw's chunk sum; while θ = 0, its filter is the one z was summed with
        if (step.top_p < 1.0) {
            // the bisection tests mid >= 2^-24 only, so from each list it needs just the p of the
            // entries with key >= kmin and p >= max(min_p, 2^-24): kept here, in index order
            let floor_any = max(pmin, 5.9e-8);  // a hair below 2^-24
            var few: array<f32, CAP>;
            var n_few = 0u;
            let n = chunks[ST_LEN + lid];
            for (var j = 0u; j < n; j++) {
                let x = bitcast<f32>(chunks[LIST_L + j * 256u + lid]);
                let p = exp((x - m) * inv_t);
                if (key(x) >= kmin && p >= floor_any) {
                    few[n_few] = p;
                    n_few += 1u;
                }
            }
            let need = step.top_p * total;
            var lo = 0.0;  // kept mass at lo >= need
            var hi = 1.0;
            for (var it = 0u; it < 24u; it++) {
                let mid = 0.5 * (lo + hi);
                let pf = max(pmin, mid);
                var part = 0.0;
                if (listed(lid, m, inv_t, kmin, pf)) {
                    for (var j = 0u; j < n_few; j++) {
                        if (few[j] >= pf) { part += few[j]; }
                    }
                } else {
                    part = chunk_mass(lid, m, inv_t, kmin, pf);
                }
                if (workgroup_sum(lid, part) >= need) { lo = mid; } else { hi = mid; }
            }
            theta = lo;
            // the draw's chunk sums, with p >= max(min_p, θ); θ, when not 0, is a tested mid
            if (theta != 0.0) {
                let pf = max(pmin, theta);
                if (listed(lid, m, inv_t, kmin, pf)) {
                    mine = 0.0;
                    for (var j = 0u; j < n_few; j++) {
                        if (few[j] >= pf) { mine += few[j]; }
                    }
                } else {
                    mine = chunk_mass(lid, m, inv_t, kmin, pf);
                }
            }
        }
        let floor_p = max(pmin, theta);
        red[lid] = mine;
        workgroupBarrier();
        var goal = 0.0;  // thread 0's: the draw, and the kept mass before the chunk it lands in
        var acc = 0.0;
        if (lid == 0u) {
            // the chunk sums in order: the kept mass, then the chunk where the draw lands
            var kept = 0.0;
            for (var i = 0u; i < 256u; i++) { kept += red[i]; }
            let r = f32(pcg(step.seed ^ pcg(step.counter)) >> 8u) / 16777216.0;
            goal = r * kept;
            var at = NONE;
            for (var i = 0u; i < 256u; i++) {
                if (acc + red[i] > goal && red[i] > 0.0) {
                    at = i;
                    break;
                }
                acc += red[i];
            }
            walk_chunk = at;
        }
        workgroupBarrier();
        // walk that chunk token by token in index order, a 256-token tile at a time: the workgroup
        // computes the tile's kept p (-1: not kept), thread 0 adds them up until acc > goal
        let at = walk_chunk;
        var done = false;
        for (var t = 0u; t < TILES; t++) {
            let j = t * 256u + lid;
            let v = at * CH + j;
            var p = -1.0;
            if (at != NONE && j < CH && v < V) {
                let x = sample_adjusted[j * 256u + at];
                let q = exp((x - m) * inv_t);
                if (x > EXCLUDED && key(x) >= kmin && q >= floor_p) { p = q; }
            }
            workgroupBarrier();
            red[lid] = p;
            workgroupBarrier();
            if (lid == 0u && at != NONE && !done) {
                for (var i = 0u; i < 256u; i++) {
                    if (red[i] >= 0.0) {
                        acc += red[i];
                        chosen = at * CH + t * 256u + i;
                        if (acc > goal) { done = true; break; }
                    }
                }
            }
        }
        workgroupBarrier();
    }

    if ((step.sample_flags & F_LOGPROBS) != 0u) {
        // log-softmax of the raw logits: M, then log of the chunks' sums by the tree
        let mx = logits[min(chunks_best(lid, ST_RAW_V, ST_RAW_I), V - 1u)];
        let lse = mx + log(workgroup_sum(lid, bitcast<f32>(chunks[ST_ZRAW + lid])));
        if (lid == 0u) { sample_out[1] = bitcast<u32>(logits[chosen] - lse); }
        // the n largest raw logits, in order: a merge of the chunks' ordered lists, each round taking
        // the best of their heads and moving that chunk's head on
        let n = min(step.n_logprobs, MAX_TOP);
        var head = 0u;
        for (var k = 0u; k < n; k++) {
            var hv = -3.4e38;
            var hi = NONE;
            if (head < n) {
                hi = chunks[TOP_I + head * 256u + lid];
                hv = bitcast<f32>(chunks[TOP_V + head * 256u + lid]);
            }
            let best = workgroup_best(lid, hv, hi);
            if (best != NONE && best == hi) { head += 1u; }
            let i = min(best, V - 1u);
            if (lid == 0u) {
                sample_out[2u + k] = i;
                sample_out[2u + MAX_TOP + k] = bitcast<u32>(logits[i] - lse);
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
