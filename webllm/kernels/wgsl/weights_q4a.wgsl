// Weight format q4a: asymmetric 4-bit, group 32 (GGUF Q4_1 kept as is). q as in q4s; scales and
// mins [N*K/32] f16. W[n, k] = nibble * scale + min.
@group(0) @binding({{B}}) var<storage, read> {{P}}q: array<vec4<u32>>;
@group(0) @binding({{B1}}) var<storage, read> {{P}}s: array<u32>;
@group(0) @binding({{B2}}) var<storage, read> {{P}}m: array<u32>;

fn {{P}}half_at(i: u32, v: u32) -> f32 {
    let p = unpack2x16float(v);
    return select(p.x, p.y, (i & 1u) == 1u);
}

fn {{P}}load_group(row: u32, g: u32) -> array<vec4<f32>, 8> {
    let i = row * {{P}}KG + g;
    let q = {{P}}q[i];
    let s = {{P}}half_at(i, {{P}}s[i >> 1u]);
    let m = {{P}}half_at(i, {{P}}m[i >> 1u]);
    var o: array<vec4<f32>, 8>;
    for (var j = 0u; j < 4u; j++) {
        let w = q[j];
        o[2u * j] = vec4<f32>((vec4<u32>(w, w >> 4u, w >> 8u, w >> 12u)) & vec4<u32>(15u)) * s + m;
        o[2u * j + 1u] = vec4<f32>((vec4<u32>(w >> 16u, w >> 20u, w >> 24u, w >> 28u)) & vec4<u32>(15u)) * s + m;
    }
    return o;
}

fn {{P}}nib_lo(w: u32) -> vec4<f32> { return vec4<f32>(vec4<u32>(w, w >> 4u, w >> 8u, w >> 12u) & vec4<u32>(15u)); }
fn {{P}}nib_hi(w: u32) -> vec4<f32> { return vec4<f32>(vec4<u32>(w >> 16u, w >> 20u, w >> 24u, w >> 28u) & vec4<u32>(15u)); }
fn {{P}}nib_dot(q: vec4<u32>, x: X8) -> f32 {
    return dot({{P}}nib_lo(q.x), x.v0) + dot({{P}}nib_hi(q.x), x.v1) + dot({{P}}nib_lo(q.y), x.v2) + dot({{P}}nib_hi(q.y), x.v3)
         + dot({{P}}nib_lo(q.z), x.v4) + dot({{P}}nib_hi(q.z), x.v5) + dot({{P}}nib_lo(q.w), x.v6) + dot({{P}}nib_hi(q.w), x.v7);
}

// sum_k W[row, k] x[k] over group g: scale * sum q x + min * sum x
fn {{P}}dot(row: u32, g: u32, x: X8) -> f32 {
    let i = row * {{P}}KG + g;
    return {{P}}nib_dot({{P}}q[i], x) * {{P}}half_at(i, {{P}}s[i >> 1u]) + {{P}}half_at(i, {{P}}m[i >> 1u]) * x.sum;
}
