// Flash-decoding combine: out[h, :] = sum_s acc_s * exp(m_s - M) / sum_s l_s * exp(m_s - M), over the
// splits s that the decode attention filled for this step (s < ceil((past + 1) / SPLIT)), M = max_s m_s.
// The split weights exp(m_s - M) / sum are computed once per split (trees in workgroup memory, 128
// splits at a time), then each thread sums its output dims over the splits.
// Bindings: 0 step; 1 part_acc [splits, NQ, HD] f32; 2 part_ml [splits, NQ] vec2<f32>; 3 out [NQ*HD] act.
// Grid: x = NQ (one token: decode).
{{HEADER}}
const NQ: u32 = {{NQ}}u;
const HD: u32 = {{HD}}u;
const SPLIT: u32 = {{SPLIT}}u;
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
