// gemv.wgsl ROWS_FIRST, for q4s weights and f32 activations: a group's words of all R rows (and
// their PAIR rows) are loaded first, then multiplied a word at a time, each word against the two
// vec4s of x it covers, read (x_vec) just before; the thread so keeps 8 values of x live instead of
// the group's 32 (load_x), which holds fewer registers where x is f32 and lets more threads stay
// resident. Same arithmetic as w_dot: (16 sum (1 + n/16) x - 24 sum x) * scale, summed per row.
// H100, one matmul in a chain of 32 (benchmarks/gemv_bench.py), f32, us: the 8B shape's down 26.7 ->
// 22.7, o 12.7 -> 10.6, qkv 12.3 -> 11.6, gate_up 38.2 -> 37.4; whole packages, f32 decode tok/s:
// 8B 291-292 -> 302, 1B 1,094-1,097 -> 1,126-1,152. In f16 (x half the bytes) the chain figures
// were mixed, so f16 activations keep load_x.
struct QRows { a: vec4<u32>, b: vec4<u32>, c: vec4<u32>, d: vec4<u32> }

fn q_rows(rows: vec4<u32>, g: u32) -> QRows {
    var q: QRows;
    q.a = w_q[rows.x * w_KG + g];
    if (R > 1u) { q.b = w_q[rows.y * w_KG + g]; }
    if (R > 2u) {
        q.c = w_q[rows.z * w_KG + g];
        q.d = w_q[rows.w * w_KG + g];
    }
    return q;
}

fn scale_rows(rows: vec4<u32>, g: u32) -> vec4<f32> {
    var s = vec4<f32>(0.0);
    s.x = w_scale(rows.x * w_KG + g);
    if (R > 1u) { s.y = w_scale(rows.y * w_KG + g); }
    if (R > 2u) {
        s.z = w_scale(rows.z * w_KG + g);
        s.w = w_scale(rows.w * w_KG + g);
    }
    return s;
}

// word j of each row (wa .. wd) against the 8 inputs lo, hi it covers: sum (1 + n/16) x per row
fn mant_rows(wa: u32, wb: u32, wc: u32, wd: u32, lo: vec4<f32>, hi: vec4<f32>) -> vec4<f32> {
    var m = vec4<f32>(0.0);
    m.x = dot(mant_lo(wa), lo) + dot(mant_hi(wa), hi);
    if (R > 1u) { m.y = dot(mant_lo(wb), lo) + dot(mant_hi(wb), hi); }
    if (R > 2u) {
        m.z = dot(mant_lo(wc), lo) + dot(mant_hi(wc), hi);
        m.w = dot(mant_lo(wd), lo) + dot(mant_hi(wd), hi);
    }
    return m;
}

fn accumulate_rows_first(g: u32, rows: vec4<u32>, a: ptr<function, vec4<f32>>, b: ptr<function, vec4<f32>>,
                         ss: ptr<function, f32>) {
    let prow = rows + vec4<u32>(N_ROWS);
    let qa = q_rows(rows, g);
    var qb = qa;
    if (PAIR) { qb = q_rows(prow, g); }
    var ma = vec4<f32>(0.0);
    var mb = vec4<f32>(0.0);
    var sx = vec4<f32>(0.0);
    {
        let lo = x_vec(g, 0u, ss);
        let hi = x_vec(g, 1u, ss);
        ma += mant_rows(qa.a.x, qa.b.x, qa.c.x, qa.d.x, lo, hi);
        if (PAIR) { mb += mant_rows(qb.a.x, qb.b.x, qb.c.x, qb.d.x, lo, hi); }
        sx += lo + hi;
    }
    {
        let lo = x_vec(g, 2u, ss);
        let hi = x_vec(g, 3u, ss);
        ma += mant_rows(qa.a.y, qa.b.y, qa.c.y, qa.d.y, lo, hi);
        if (PAIR) { mb += mant_rows(qb.a.y, qb.b.y, qb.c.y, qb.d.y, lo, hi); }
        sx += lo + hi;
    }
    {
        let lo = x_vec(g, 4u, ss);
        let hi = x_vec(g, 5u, ss);
        ma += mant_rows(qa.a.z, qa.b.z, qa.c.z, qa.d.z, lo, hi);
        if (PAIR) { mb += mant_rows(qb.a.z, qb.b.z, qb.c.z, qb.d.z, lo, hi); }
        sx += lo + hi;
    }
    {
        let lo = x_vec(g, 6u, ss);
        let hi = x_vec(g, 7u, ss);
        ma += mant_rows(qa.a.w, qa.b.w, qa.c.w, qa.d.w, lo, hi);
        if (PAIR) { mb += mant_rows(qb.a.w, qb.b.w, qb.c.w, qb.d.w, lo, hi); }
        sx += lo + hi;
    }
    let s = dot(sx, vec4<f32>(1.0));
    *a += (16.0 * ma - 24.0 * s) * scale_rows(rows, g);
    if (PAIR) { *b += (16.0 * mb - 24.0 * s) * scale_rows(prow, g); }
}
