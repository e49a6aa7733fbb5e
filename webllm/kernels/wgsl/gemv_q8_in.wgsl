// gemv.wgsl Q8_IN, for q4s and q4a weights: x is int8 in blocks of 8 inputs, each block with its own scale
// (the layout that Q8_OUT writes, gemv_q8_out.wgsl), and a group's 32 products are integer dot
// products of 4 bytes (dot4I8Packed): the word's nibbles masked in place (n, 0..15, as bytes) against
// x's bytes in the same order, so per word of weights 3 integer operations and 2 dot products
// instead of the 8 shifts, 8 masks and 8 multiplies of the float path; and x is 8 registers a group
// instead of 32 (the GEMV's limit was its registers, docs/PERFORMANCE.md). Block j of group g
// (inputs 8j .. 8j+7) is x = d_j q, q in -127..127, so
//   sum_k (n_k - 8) s x_k = s sum_j d_j (sum_i n_i q_i) - s sum_j 8 d_j sum_i q_i
// with c_j = 8 d_j sum_i q_i stored beside d_j; for q4a (n s + m) the same sums give
//   sum_k (n_k s + m) x_k = s sum_j d_j (sum_i n_i q_i) + m sum_j c_j / 8.
// x as vec4<u32> [K / 8 + K / 16]: vec4 2g holds group g's even inputs (word j: inputs 8j, 8j+2,
// 8j+4, 8j+6, one byte each, lowest first), 2g + 1 its odd ones (8j+1, ...), which is how a q4s word
// holds its nibbles after `w & 0x0F0F0F0F` and `(w >> 4) & 0x0F0F0F0F`; then from vec4 K/16 on, two
// vec4 a group: (d_0, c_0, d_1, c_1), (d_2, c_2, d_3, c_3) as f32 bits.
const Q8_M4: u32 = 0x0F0F0F0Fu;

// one row's group: (sum_j d_j sum_i n_i q_i - sum_j c_j) * s (q4s), or with the min (q4a)
fn q8_row(row: u32, g: u32, xe: vec4<u32>, xo: vec4<u32>, dv: vec4<f32>, c: f32) -> f32 {
    let i = row * w_KG + g;
    let w = w_q[i];
    let p = vec4<f32>(vec4<i32>(
        dot4I8Packed(w.x & Q8_M4, xe.x) + dot4I8Packed((w.x >> 4u) & Q8_M4, xo.x),
        dot4I8Packed(w.y & Q8_M4, xe.y) + dot4I8Packed((w.y >> 4u) & Q8_M4, xo.y),
        dot4I8Packed(w.z & Q8_M4, xe.z) + dot4I8Packed((w.z >> 4u) & Q8_M4, xo.z),
        dot4I8Packed(w.w & Q8_M4, xe.w) + dot4I8Packed((w.w >> 4u) & Q8_M4, xo.w)));
    {{Q8_ROW}}
}

// group g's blocks: from x (Q8_IN), or from workgroup memory (Q8_STAGED: the staged range's x8w, d8w)
struct Q8X { xe: vec4<u32>, xo: vec4<u32>, e0: vec4<f32>, e1: vec4<f32> }
{{Q8_X}}

fn accumulate_q8(g: u32, rows: vec4<u32>, a: ptr<function, vec4<f32>>, b: ptr<function, vec4<f32>>) {
    let q = q8_x(g);
    let xe = q.xe;
    let xo = q.xo;
    let dv = vec4<f32>(q.e0.x, q.e0.z, q.e1.x, q.e1.z);
    let c = (q.e0.y + q.e0.w) + (q.e1.y + q.e1.w);
    (*a).x += q8_row(rows.x, g, xe, xo, dv, c);
    if (R > 1u) { (*a).y += q8_row(rows.y, g, xe, xo, dv, c); }
    if (R > 2u) {
        (*a).z += q8_row(rows.z, g, xe, xo, dv, c);
        (*a).w += q8_row(rows.w, g, xe, xo, dv, c);
    }
    if (PAIR) {
        (*b).x += q8_row(rows.x + N_ROWS, g, xe, xo, dv, c);
        if (R > 1u) { (*b).y += q8_row(rows.y + N_ROWS, g, xe, xo, dv, c); }
        if (R > 2u) {
            (*b).z += q8_row(rows.z + N_ROWS, g, xe, xo, dv, c);
            (*b).w += q8_row(rows.w + N_ROWS, g, xe, xo, dv, c);
        }
    }
}
