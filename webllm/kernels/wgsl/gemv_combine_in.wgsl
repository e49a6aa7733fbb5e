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

// COMBINE_STAGED: CV consecutive vec4 of x (one head's) combined by one thread, splits four at a time
// (straight-line loads of four splits; those past the step's count read the last in use and weigh 0),
// so that every thread stages at most once a range. The walk over the splits is a chain of load
// latencies (GPU compilers keep such loops rolled), and the staging takes as long as the longest chain
// a thread walks (H100, 8B shape, f32, 16 splits: the o matmul 36 us staging a group of 32 inputs a
// thread, 25 a vec4 a thread, 22 up to four).
// CV: 1, 2 or 4, the fewest that let each of the T threads stage a range's CV_N vec4 in one go,
// where it divides a head's vec4 (T < CV_N: 2; 2T < CV_N: 4).
const CV_N: u32 = XW_GROUPS * 8u;
const CV2: u32 = 1u + min(1u, CV_N / (T + 1u)) * (1u - (CHD / 4u) % 2u);
const CV: u32 = CV2 * (1u + (CV2 - 1u) * min(1u, CV_N / (2u * T + 1u)) * (1u - min(1u, (CHD / 4u) % 4u)));

fn lse_of(s: u32, used: u32, h: u32) -> f32 { return part_lse[min(s, used - 1u) * CNQ + h]; }

// split s's share of the head (0 past the splits in use)
fn share_of(s: u32, used: u32, h: u32, m: f32) -> f32 {
    return select(0.0, exp(lse_of(s, used, h) - m), s < used);
}

fn part_at(s: u32, used: u32, v: u32) -> vec4<f32> { return vec4<f32>(x[min(s, used - 1u) * (K / 4u) + v]); }

// x's vec4 v .. v + CV - 1 combined, into xw from slot o on
fn stage_vec4s(v: u32, o: u32) {
    let used = kv_splits(step.past).z;
    if (used == 1u) {  // up to 64 positions: the one split's partial is x
        xw[o] = vec4<{{XT}}>(x[v]);
        if (CV > 1u) { xw[o + 1u] = vec4<{{XT}}>(x[v + 1u]); }
        if (CV > 2u) {
            xw[o + 2u] = vec4<{{XT}}>(x[v + 2u]);
            xw[o + 3u] = vec4<{{XT}}>(x[v + 3u]);
        }
        return;
    }
    let h = v * 4u / CHD;
    var m = -1e30;
    for (var s = 0u; s < used; s += 4u) {
        m = max(max(m, lse_of(s, used, h)), max(lse_of(s + 1u, used, h), max(lse_of(s + 2u, used, h), lse_of(s + 3u, used, h))));
    }
    var l = 0.0;
    var o0 = vec4<f32>(0.0);
    var o1 = vec4<f32>(0.0);
    var o2 = vec4<f32>(0.0);
    var o3 = vec4<f32>(0.0);
    for (var s = 0u; s < used; s += 4u) {
        let w0 = share_of(s, used, h, m);
        let w1 = share_of(s + 1u, used, h, m);
        let w2 = share_of(s + 2u, used, h, m);
        let w3 = share_of(s + 3u, used, h, m);
        l += (w0 + w1) + (w2 + w3);
        o0 += (part_at(s, used, v) * w0 + part_at(s + 1u, used, v) * w1) + (part_at(s + 2u, used, v) * w2 + part_at(s + 3u, used, v) * w3);
        if (CV > 1u) {
            let u = v + 1u;
            o1 += (part_at(s, used, u) * w0 + part_at(s + 1u, used, u) * w1) + (part_at(s + 2u, used, u) * w2 + part_at(s + 3u, used, u) * w3);
        }
        if (CV > 2u) {
            let u = v + 2u;
            o2 += (part_at(s, used, u) * w0 + part_at(s + 1u, used, u) * w1) + (part_at(s + 2u, used, u) * w2 + part_at(s + 3u, used, u) * w3);
            let t = v + 3u;
            o3 += (part_at(s, used, t) * w0 + part_at(s + 1u, used, t) * w1) + (part_at(s + 2u, used, t) * w2 + part_at(s + 3u, used, t) * w3);
        }
    }
    let i = 1.0 / l;
    xw[o] = vec4<{{XT}}>(o0 * i);
    if (CV > 1u) { xw[o + 1u] = vec4<{{XT}}>(o1 * i); }
    if (CV > 2u) {
        xw[o + 2u] = vec4<{{XT}}>(o2 * i);
        xw[o + 3u] = vec4<{{XT}}>(o3 * i);
    }
}
