// gemv.wgsl Q8_OUT: the epilogue writes its output (PAIR: silu(gate) * up; NORM_OUT: h * norm weight)
// as the int8 blocks that a Q8_IN matmul reads (layout: gemv_q8_in.wgsl), instead of in the
// activation type. A block is 8 consecutive outputs, so one workgroup (RW, a multiple of 8 rows)
// holds whole blocks: its threads leave their values in workgroup memory and thread t quantizes
// block t, d = max |v| / 127, q = round(v / d).
// Output (y with PAIR, xo with NORM_OUT) as u32 [Q8_K / 4 + Q8_K / 4]: words 8g + j (even inputs of word j of group g)
// and 8g + 4 + j (odd ones), then from Q8_K / 4 on (d, c) per block.
var<workgroup> q8v: array<f32, RW>;

fn q8_store_block(t: u32, first_row: u32) {
    let i = t * 8u;
    let lo = vec4<f32>(q8v[i], q8v[i + 1u], q8v[i + 2u], q8v[i + 3u]);
    let hi = vec4<f32>(q8v[i + 4u], q8v[i + 5u], q8v[i + 6u], q8v[i + 7u]);
    let m = max(abs(lo), abs(hi));
    let amax = max(max(m.x, m.y), max(m.z, m.w));
    let inv = select(0.0, 127.0 / amax, amax > 0.0);
    let ql = vec4<i32>(round(lo * inv));
    let qh = vec4<i32>(round(hi * inv));
    let blk = (ROW0 + first_row) / 8u + t;
    let g = blk / 4u;
    let j = blk % 4u;
    {{Q8_OUT_BUF}}[8u * g + j] = pack4xI8(vec4<i32>(ql.x, ql.z, qh.x, qh.z));
    {{Q8_OUT_BUF}}[8u * g + 4u + j] = pack4xI8(vec4<i32>(ql.y, ql.w, qh.y, qh.w));
    let s = ql + qh;
    let d = amax / 127.0;
    {{Q8_OUT_BUF}}[Q8_K / 4u + 2u * blk] = bitcast<u32>(d);
    {{Q8_OUT_BUF}}[Q8_K / 4u + 2u * blk + 1u] = bitcast<u32>(8.0 * d * f32((s.x + s.y) + (s.z + s.w)));
}
