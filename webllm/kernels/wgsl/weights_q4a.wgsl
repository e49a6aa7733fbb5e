// Weight format q4a: asymmetric 4-bit, group 32 (GGUF Q4_1 kept as is). q as in q4s; scales and
// mins [N*K/32] f16. W[n, k] = nibble * scale + min.
@group(0) @binding({{B}}) var<storage, read> {{P}}q: array<vec4<u32>>;
@group(0) @binding({{B1}}) var<storage, read> {{P}}s: array<u32>;
@group(0) @binding({{B2}}) var<storage, read> {{P}}m: array<u32>;

fn {{P}}half_at(i: u32, v: u32) -> f32 {
    let p = unpack2x16float(v);
    return select(p.x, p.y, (i & 1u) == 1u);
}

// Prefill (matmul_tiled): a group's words fetched ahead, dequantized a half (16) at a time when staged.
// Nibble n as the f32 1 + n/16 (mant_lo/hi): n s + m = (1 + n/16) 16 s + m - 16 s, no int-to-float.
struct {{P}}Raw { q: vec4<u32>, s: f32, m: f32 }

fn {{P}}fetch(row: u32, g: u32) -> {{P}}Raw {
    let i = row * {{P}}KG + g;
    return {{P}}Raw({{P}}q[i], {{P}}half_at(i, {{P}}s[i >> 1u]), {{P}}half_at(i, {{P}}m[i >> 1u]));
}

fn {{P}}half(r: {{P}}Raw, h: u32) -> mat4x4<f32> {
    let a = select(r.q.x, r.q.z, h == 1u);
    let b = select(r.q.y, r.q.w, h == 1u);
    let s = vec4<f32>(16.0 * r.s);
    let o = vec4<f32>(r.m - 16.0 * r.s);
    return mat4x4<f32>(fma(mant_lo(a), s, o), fma(mant_hi(a), s, o), fma(mant_lo(b), s, o), fma(mant_hi(b), s, o));
}

fn {{P}}load_group(row: u32, g: u32) -> array<vec4<f32>, 8> {
    let i = row * {{P}}KG + g;
    let q = {{P}}q[i];
    let s = {{P}}half_at(i, {{P}}s[i >> 1u]);
    let m = {{P}}half_at(i, {{P}}m[i >> 1u]);
    var o: array<vec4<f32>, 8>;
    for (var j = 0u; j < 4u; j++) {
        let w = q[j];
        o[2u * j] = nib_lo(w) * s + m;
        o[2u * j + 1u] = nib_hi(w) * s + m;
    }
    return o;
}

// sum_k W[row, k] x[k] over group g: scale * sum q x + min * sum x
fn {{P}}dot(row: u32, g: u32, x: X8) -> f32 {
    let i = row * {{P}}KG + g;
    return nib_dot({{P}}q[i], x) * {{P}}half_at(i, {{P}}s[i >> 1u]) + {{P}}half_at(i, {{P}}m[i >> 1u]) * x.sum;
}
