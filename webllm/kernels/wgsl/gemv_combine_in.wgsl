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
// (straight-line loads of four splits' lse and partials together; those past the step's count read the
// last in use and weigh 0), in one walk with a running max, so that every thread stages at most once a
// range. The walk over the splits is a chain of load latencies (GPU compilers keep such loops rolled),
// and the staging takes as long as the longest chain a thread walks (H100, 8B shape, f32, 16 splits:
// the o matmul 36 us staging a group of 32 inputs a thread, 25 a vec4 a thread, 22 up to four; one
// walk instead of one for the max and one for the sums: +0.2-0.8% decode at 4,096 positions).
// CV: 1, 2 or 4, the fewest that let each of the T threads stage a range's CV_N vec4 in one go,
// where it divides a head's vec4 (T < CV_N: 2; 2T < CV_N: 4).
const CV_N: u32 = XW_GROUPS * 8u;
const CV2: u32 = 1u + min(1u, CV_N / (T + 1u)) * (1u - (CHD / 4u) % 2u);
const CV_F: u32 = CV2 * (1u + (CV2 - 1u) * min(1u, CV_N / (2u * T + 1u)) * (1u - min(1u, (CHD / 4u) % 4u)));
// Q8_STAGED: at least 2, a block of 8 inputs (which lies in one head: HD % 8 == 0) a thread
const CV: u32 = select(CV_F, max(2u, CV_F), Q8_STAGED);

fn lse_of(s: u32, used: u32, h: u32) -> f32 { return part_lse[min(s, used - 1u) * CNQ + h]; }

fn part_at(s: u32, used: u32, v: u32) -> vec4<f32> { return vec4<f32>(x[min(s, used - 1u) * (K / 4u) + v]); }

// x's vec4 v .. v + CV - 1 combined, into xw from slot o on
fn stage_vec4s(v: u32, o: u32) {
    let used = kv_splits(step.past).z;
    if (used == 1u) {  // up to 64 positions: the one split's partial is x
        var x1 = vec4<f32>(0.0);
        var x2 = vec4<f32>(0.0);
        var x3 = vec4<f32>(0.0);
        if (CV > 1u) { x1 = vec4<f32>(x[v + 1u]); }
        if (CV > 2u) {
            x2 = vec4<f32>(x[v + 2u]);
            x3 = vec4<f32>(x[v + 3u]);
        }
        store_vec4s(o, vec4<f32>(x[v]), x1, x2, x3);
        return;
    }
    let h = v * 4u / CHD;
    // one pass over the splits, four at a time, with a running max (online softmax): each four's lse
    // and partials are loaded together, so a thread waits out one load latency a four, not two
    var m = -1e30;
    var l = 0.0;
    var o0 = vec4<f32>(0.0);
    var o1 = vec4<f32>(0.0);
    var o2 = vec4<f32>(0.0);
    var o3 = vec4<f32>(0.0);
    for (var s = 0u; s < used; s += 4u) {
        let e0 = lse_of(s, used, h);
        let e1 = lse_of(s + 1u, used, h);
        let e2 = lse_of(s + 2u, used, h);
        let e3 = lse_of(s + 3u, used, h);
        let a0 = part_at(s, used, v);
        let a1 = part_at(s + 1u, used, v);
        let a2 = part_at(s + 2u, used, v);
        let a3 = part_at(s + 3u, used, v);
        var b0 = vec4<f32>(0.0);
        var b1 = vec4<f32>(0.0);
        var b2 = vec4<f32>(0.0);
        var b3 = vec4<f32>(0.0);
        var c0 = vec4<f32>(0.0);
        var c1 = vec4<f32>(0.0);
        var c2 = vec4<f32>(0.0);
        var c3 = vec4<f32>(0.0);
        var d0 = vec4<f32>(0.0);
        var d1 = vec4<f32>(0.0);
        var d2 = vec4<f32>(0.0);
        var d3 = vec4<f32>(0.0);
        if (CV > 1u) {
            b0 = part_at(s, used, v + 1u);
            b1 = part_at(s + 1u, used, v + 1u);
            b2 = part_at(s + 2u, used, v + 1u);
            b3 = part_at(s + 3u, used, v + 1u);
        }
        if (CV > 2u) {
            c0 = part_at(s, used, v + 2u);
            c1 = part_at(s + 1u, used, v + 2u);
            c2 = part_at(s + 2u, used, v + 2u);
            c3 = part_at(s + 3u, used, v + 2u);
            d0 = part_at(s, used, v + 3u);
            d1 = part_at(s + 1u, used, v + 3u);
            d2 = part_at(s + 2u, used, v + 3u);
            d3 = part_at(s + 3u, used, v + 3u);
        }
        let mn = max(max(m, max(e0, e1)), max(e2, e3));  // the clamped lse are in use: no new max
        let r = exp(m - mn);
        let w0 = exp(e0 - mn);
        let w1 = select(0.0, exp(e1 - mn), s + 1u < used);
        let w2 = select(0.0, exp(e2 - mn), s + 2u < used);
        let w3 = select(0.0, exp(e3 - mn), s + 3u < used);
        m = mn;
        l = l * r + ((w0 + w1) + (w2 + w3));
        o0 = o0 * r + ((a0 * w0 + a1 * w1) + (a2 * w2 + a3 * w3));
        if (CV > 1u) { o1 = o1 * r + ((b0 * w0 + b1 * w1) + (b2 * w2 + b3 * w3)); }
        if (CV > 2u) {
            o2 = o2 * r + ((c0 * w0 + c1 * w1) + (c2 * w2 + c3 * w3));
            o3 = o3 * r + ((d0 * w0 + d1 * w1) + (d2 * w2 + d3 * w3));
        }
    }
    let i = 1.0 / l;
    store_vec4s(o, o0 * i, o1 * i, o2 * i, o3 * i);
}

// the staged range's vec4 o .. o + CV - 1: into xw, or (Q8_STAGED) as the int8 blocks o / 2, ..
fn store_vec4s(o: u32, a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>) {
    if (Q8_STAGED) {
        q8_stage_block(o / 2u, a, b);
        if (CV > 2u) { q8_stage_block(o / 2u + 1u, c, d); }
        return;
    }
    xw[o] = vec4<{{XT}}>(a);
    if (CV > 1u) { xw[o + 1u] = vec4<{{XT}}>(b); }
    if (CV > 2u) {
        xw[o + 2u] = vec4<{{XT}}>(c);
        xw[o + 3u] = vec4<{{XT}}>(d);
    }
}

// block `blk` of the staged range (inputs 8 blk .. 8 blk + 7, as lo and hi) into x8w, d8w
fn q8_stage_block(blk: u32, lo: vec4<f32>, hi: vec4<f32>) {
    let m = max(abs(lo), abs(hi));
    let amax = max(max(m.x, m.y), max(m.z, m.w));
    let inv = select(0.0, 127.0 / amax, amax > 0.0);
    let ql = vec4<i32>(round(lo * inv));
    let qh = vec4<i32>(round(hi * inv));
    let g = blk / 4u;
    let j = blk % 4u;
    x8w[2u * g][j] = pack4xI8(vec4<i32>(ql.x, ql.z, qh.x, qh.z));
    x8w[2u * g + 1u][j] = pack4xI8(vec4<i32>(ql.y, ql.w, qh.y, qh.w));
    let s = ql + qh;
    let d = amax / 127.0;
    d8w[blk] = vec2<f32>(d, 8.0 * d * f32((s.x + s.y) + (s.z + s.w)));
}
