// gemv.wgsl COMBINE_IN: the o matmul's x combined from decode attention's split partials (x is bound to
// part_o [SPLITS, K] act; part_lse [SPLITS, NQ] f32 below). See attention_decode.wgsl for the partials.
{{SPLITS_FN}}
const CNQ: u32 = {{NQ}}u;
const CHD: u32 = {{HD}}u;

@group(0) @binding({{B}}) var<storage, read> part_lse: array<f32>;

fn combined_x(g: u32) -> X8 {
    let used = kv_splits(step.past).z;
    let h0 = (g * 32u) / CHD;
    var h1 = h0;
    if (CHD % 32u != 0u) { h1 = (g * 32u + 31u) / CHD; }
    let cut = h1 * CHD;  // inputs from here on belong to h1
    var m0 = -1e30;
    var m1 = -1e30;
    for (var s = 0u; s < used; s++) {
        m0 = max(m0, part_lse[s * CNQ + h0]);
        m1 = max(m1, part_lse[s * CNQ + h1]);
    }
    var r: X8;
    var l0 = 0.0;
    var l1 = 0.0;
    let k0 = g * 32u;
    for (var s = 0u; s < used; s++) {
        let w0 = exp(part_lse[s * CNQ + h0] - m0);
        let w1 = exp(part_lse[s * CNQ + h1] - m1);
        l0 += w0;
        l1 += w1;
        let b = s * (K / 4u) + g * 8u;
        r.v0 += vec4<f32>(x[b]) * select(w0, w1, k0 >= cut);
        r.v1 += vec4<f32>(x[b + 1u]) * select(w0, w1, k0 + 4u >= cut);
        r.v2 += vec4<f32>(x[b + 2u]) * select(w0, w1, k0 + 8u >= cut);
        r.v3 += vec4<f32>(x[b + 3u]) * select(w0, w1, k0 + 12u >= cut);
        r.v4 += vec4<f32>(x[b + 4u]) * select(w0, w1, k0 + 16u >= cut);
        r.v5 += vec4<f32>(x[b + 5u]) * select(w0, w1, k0 + 20u >= cut);
        r.v6 += vec4<f32>(x[b + 6u]) * select(w0, w1, k0 + 24u >= cut);
        r.v7 += vec4<f32>(x[b + 7u]) * select(w0, w1, k0 + 28u >= cut);
    }
    let i0 = 1.0 / l0;
    let i1 = 1.0 / l1;
    r.v0 *= select(i0, i1, k0 >= cut);
    r.v1 *= select(i0, i1, k0 + 4u >= cut);
    r.v2 *= select(i0, i1, k0 + 8u >= cut);
    r.v3 *= select(i0, i1, k0 + 12u >= cut);
    r.v4 *= select(i0, i1, k0 + 16u >= cut);
    r.v5 *= select(i0, i1, k0 + 20u >= cut);
    r.v6 *= select(i0, i1, k0 + 24u >= cut);
    r.v7 *= select(i0, i1, k0 + 28u >= cut);
    r.sum = dot((r.v0 + r.v1) + (r.v2 + r.v3) + (r.v4 + r.v5) + (r.v6 + r.v7), vec4<f32>(1.0));
    return r;
}
