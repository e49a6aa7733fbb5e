{{PRELUDE}}
// Stage 2 of 3 (see sample.wgsl): workgroup c sums over chunk c, in index order, what needs the
// global maxima: the kept p (temperature > 0 without top-k: the filter is then allowed and
// p >= min_p) and exp(logit - M) (logprobs). The workgroup stages each WG-token tile in `tile_p` and
// `tile_raw`; one thread adds each up in order, as the rule's per-chunk sums are sequential.
var<workgroup> tile_p: array<f32, WG>;
var<workgroup> tile_raw: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if (step.emit == 0u) { return; }
    let want_p = step.temperature > 0.0 && !(step.top_k > 0u && step.top_k < V);
    let want_raw = (step.sample_flags & F_LOGPROBS) != 0u;
    if (!want_p && !want_raw) { return; }
    init_workgroup(lid);
    let c = wg.x;
    let lo = min(V, c * CH);
    let hi = min(V, lo + CH);

    // m: the adjusted logit of the greedy choice; M: the largest raw logit (as sample_draw finds them)
    let argmax = min(chunks_best(lid, ST_BEST_V, ST_BEST_I), V - 1u);
    let m = sample_adjusted[adj_at(argmax)];
    let inv_t = 1.0 / step.temperature;
    var mx = 0.0;
    if (want_raw) {
        mx = logits[min(chunks_best(lid, ST_RAW_V, ST_RAW_I), V - 1u)];
    }

    var z = 0.0;
    var zr = 0.0;
    for (var base = lo; base < hi; base += WG) {
        let v = base + lid;
        var p = 0.0;  // adding 0 for a token the filter drops leaves the sum as skipping it would
        var e = 0.0;
        if (v < hi) {
            if (want_p) {
                let x = sample_adjusted[(v - lo) * 256u + c];
                let q = exp((x - m) * inv_t);
                if (x > EXCLUDED && q >= step.min_p) { p = q; }
            }
            if (want_raw) { e = exp(logits[v] - mx); }
        }
        tile_p[lid] = p;
        tile_raw[lid] = e;
        workgroupBarrier();
        let n = min(WG, hi - base);
        if (lid == 0u) {
            for (var j = 0u; j < n; j++) { z += tile_p[j]; }
        }
        if (lid == WG / 2u) {
            for (var j = 0u; j < n; j++) { zr += tile_raw[j]; }
        }
        workgroupBarrier();
    }
    if (lid == 0u) { chunks[ST_Z + c] = bitcast<u32>(z); }
    if (lid == WG / 2u) { chunks[ST_ZRAW + c] = bitcast<u32>(zr); }
}
