// Weight format q4s: symmetric 4-bit, group 32. q [N, K/32] vec4<u32> (nibble i of word j = element
// 8j+i of the group); scales [N*K/32] ({{SCALE}}). W[n, k] = (nibble - 8) * scale[n*K/32 + k/32].
@group(0) @binding({{B}}) var<storage, read> {{P}}q: array<vec4<u32>>;
@group(0) @binding({{B1}}) var<storage, read> {{P}}s: array<{{SCALE_ELEM}}>;

fn {{P}}scale(i: u32) -> f32 { {{SCALE_LOAD}} }

// Prefill (matmul_tiled): a group's words fetched ahead, dequantized a half (16) at a time when staged.
// Nibble n as the f32 1 + n/16 (mant_lo/hi): (n - 8) s = (1 + n/16) 16 s - 24 s, no int-to-float.
struct {{P}}Raw { q: vec4<u32>, s: f32 }

fn {{P}}fetch(row: u32, g: u32) -> {{P}}Raw {
    let i = row * {{P}}KG + g;
    return {{P}}Raw({{P}}q[i], {{P}}scale(i));
}

fn {{P}}half(r: {{P}}Raw, h: u32) -> mat4x4<f32> {
    let a = select(r.q.x, r.q.z, h == 1u);
    let b = select(r.q.y, r.q.w, h == 1u);
    let s = vec4<f32>(16.0 * r.s);
    let o = vec4<f32>(-24.0 * r.s);
    return mat4x4<f32>(fma(mant_lo(a), s, o), fma(mant_hi(a), s, o), fma(mant_lo(b), s, o), fma(mant_hi(b), s, o));
}

fn {{P}}load_group(row: u32, g: u32) -> array<vec4<f32>, 8> {
    let i = row * {{P}}KG + g;
    let q = {{P}}q[i];
    let s = {{P}}scale(i);
    var o: array<vec4<f32>, 8>;
    for (var j = 0u; j < 4u; j++) {
        let w = q[j];
        o[2u * j] = (nib_lo(w) - 8.0) * s;
        o[2u * j + 1u] = (nib_hi(w) - 8.0) * s;
    }
    return o;
}

// sum_k W[row, k] x[k] over group g (decode): sum (n - 8) x * scale = (16 sum (1 + n/16) x - 24 sum x) * scale,
// with the nibbles as 1 + n/16 (mant_lo/hi, header.wgsl)
fn {{P}}dot(row: u32, g: u32, x: X8) -> f32 {
    let i = row * {{P}}KG + g;
    let q = {{P}}q[i];
    let m = dot(mant_lo(q.x), x.v0) + dot(mant_hi(q.x), x.v1) + dot(mant_lo(q.y), x.v2) + dot(mant_hi(q.y), x.v3)
          + dot(mant_lo(q.z), x.v4) + dot(mant_hi(q.z), x.v5) + dot(mant_lo(q.w), x.v6) + dot(mant_hi(q.w), x.v7);
    return (16.0 * m - 24.0 * x.sum) * {{P}}scale(i);
}
