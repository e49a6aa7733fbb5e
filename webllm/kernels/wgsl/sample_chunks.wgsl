{{PRELUDE}}
// Stage 1 of 3 (see sample.wgsl): workgroup c takes chunk c. Threads stride the chunk (token
// lo + lid + WG r), so loads coalesce; the order-dependent work (sums) is left to later stages.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if (step.emit == 0u) { return; }
    init_workgroup(lid);
    let c = wg.x;
    let lo = min(V, c * CH);
    let hi = min(V, lo + CH);
    let logprobs = (step.sample_flags & F_LOGPROBS) != 0u;

    // adjusted logits; the chunk's greedy choice (largest, lowest index among equals)
    var bv = -3.4e38;
    var bi = NONE;
    var rv = -3.4e38;
    var ri = NONE;
    var n_allowed = 0u;
    for (var v = lo + lid; v < hi; v += WG) {
        let x = adjusted(v);
        sample_adjusted[(v - lo) * 256u + c] = x;
        if (x > bv) { bv = x; bi = v; }
        if (x > EXCLUDED) { n_allowed += 1u; }
        let r = logits[v];
        if (r > rv) { rv = r; ri = v; }
    }
    let argmax = workgroup_best(lid, bv, bi);
    if (lid == 0u) {
        chunks[ST_BEST_V + c] = bitcast<u32>(best_value);
        chunks[ST_BEST_I + c] = argmax;
    }

    // the lists serve top-k and the top-p bisection only (S and the draw's chunk sums come from
    // sample_mass without them)
    let lists = step.temperature > 0.0 && ((step.top_k > 0u && step.top_k < V) || step.top_p < 1.0);
    if (lists) {
        // the list: the chunk's CAP largest allowed keys (ties: lowest index first), in index order
        _ = exclusive_scan(lid, n_allowed);
        let allowed = scan_total;
        // the CAP-th largest key, by a radix select over 8-bit digits (run whatever `allowed` is:
        // barriers may not depend on values read from workgroup memory; unused when all fit)
        var prefix = 0u;
        var need = CAP;
        var above = 0u;  // allowed keys > the CAP-th largest
        for (var round = 0u; round < 4u; round++) {
            let shift = 24u - 8u * round;
            let mask = high_mask(shift);
            for (var v = lo + lid; v < hi; v += WG) {
                let x = sample_adjusted[(v - lo) * 256u + c];
                let k = key(x);
                if (x > EXCLUDED && (k & mask) == prefix) { atomicAdd(&hist[(k >> shift) & 255u], 1u); }
            }
            workgroupBarrier();
            radix_pick(lid, need);
            prefix |= picked[0] << shift;
            need -= picked[1];
            above += picked[1];
        }
        let t_key = select(0u, prefix, allowed > CAP);  // 0: every allowed token fits the list
        above = select(0u, above, allowed > CAP);
        let quota = CAP - above;  // tokens with key == t_key that fit, lowest index first
        var base_gt = 0u;
        var base_eq = 0u;
        for (var base = lo; base < hi; base += WG) {
            let v = base + lid;
            var x = 0.0;
            var gt = 0u;
            var eq = 0u;
            if (v < hi) {
                x = sample_adjusted[(v - lo) * 256u + c];
                let k = key(x);
                if (x > EXCLUDED && (t_key == 0u || k > t_key)) { gt = 1u; }
                if (x > EXCLUDED && t_key != 0u && k == t_key) { eq = 1u; }
            }
            let before = exclusive_scan(lid, gt | (eq << 16u));
            let gt_before = base_gt + (before & 0xffffu);
            let eq_before = base_eq + (before >> 16u);
            if (gt == 1u || (eq == 1u && eq_before < quota)) {
                let pos = gt_before + min(eq_before, quota);
                chunks[LIST_I + pos * 256u + c] = v;
                chunks[LIST_L + pos * 256u + c] = bitcast<u32>(x);
            }
            base_gt += scan_total & 0xffffu;
            base_eq += scan_total >> 16u;
        }
        if (lid == 0u) {
            chunks[ST_LEN + c] = min(allowed, CAP);
            chunks[ST_OUT + c] = t_key;
        }
    }

    if (logprobs) {
        let i = workgroup_best(lid, rv, ri);
        if (lid == 0u) {
            chunks[ST_RAW_V + c] = bitcast<u32>(best_value);
            chunks[ST_RAW_I + c] = i;
        }
        // the chunk's largest raw logits in the rule's order (larger first, lower index among
        // equals): each round takes the best strictly below the last; NONE once the chunk runs out
        var pv = 3.4e38;
        var pi = 0u;
        for (var k = 0u; k < min(step.n_logprobs, MAX_TOP); k++) {
            var cv = -3.4e38;
            var ci = NONE;
            for (var v = lo + lid; v < hi; v += WG) {
                let x = logits[v];
                let below = x < pv || (x == pv && v > pi);
                if (below && (x > cv || ci == NONE)) { cv = x; ci = v; }
            }
            if (ci == NONE) { cv = -3.4e38; }
            let j = workgroup_best(lid, cv, ci);
            if (lid == 0u) {
                chunks[TOP_I + k * 256u + c] = j;
                chunks[TOP_V + k * 256u + c] = bitcast<u32>(best_value);
            }
            if (j != NONE) {
                pv = logits[j];
                pi = j;
            }
        }
    }
}
