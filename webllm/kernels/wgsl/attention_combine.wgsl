// Flash-decoding combine: out[h, :] = sum_s acc_s * exp(m_s - M) / sum_s l_s * exp(m_s - M), over the
// splits s that attention.wgsl (SPLIT > 0) filled for this step, M = max_s m_s.
// Bindings: 0 step; 1 part_acc [splits, NQ, HD] f32; 2 part_ml [splits, NQ] vec2<f32>; 3 out [NQ*HD] act.
// Grid: x = NQ (one token: decode).
{{HEADER}}
const NQ: u32 = {{NQ}}u;
const HD: u32 = {{HD}}u;
const SPLIT: u32 = {{SPLIT}}u;

@group(0) @binding(1) var<storage, read> part_acc: array<f32>;
@group(0) @binding(2) var<storage, read> part_ml: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<act>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let used = (step.past + 1u + SPLIT - 1u) / SPLIT;
    var mx = -1e30;
    for (var s = 0u; s < used; s++) { mx = max(mx, part_ml[s * NQ + h].x); }
    var total = 0.0;
    for (var s = 0u; s < used; s++) {
        let ml = part_ml[s * NQ + h];
        total += ml.y * exp(ml.x - mx);
    }
    for (var d = lid; d < HD; d += 64u) {
        var a = 0.0;
        for (var s = 0u; s < used; s++) {
            let ml = part_ml[s * NQ + h];
            a += part_acc[(s * NQ + h) * HD + d] * exp(ml.x - mx);
        }
        out[h * HD + d] = act(a / total);
    }
}
