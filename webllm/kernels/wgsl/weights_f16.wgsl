// Weight format f16: w [N, K] as f16 pairs in u32 (low half first); 4 vec4<u32> per group of 32.
// unpack2x16float is core WGSL, so this format also runs on adapters without shader-f16.
@group(0) @binding({{B}}) var<storage, read> {{P}}w: array<vec4<u32>>;

// Prefill (matmul_tiled): a group's words fetched ahead, converted a half (16) at a time when staged.
struct {{P}}Raw { a: vec4<u32>, b: vec4<u32>, c: vec4<u32>, d: vec4<u32> }

fn {{P}}fetch(row: u32, g: u32) -> {{P}}Raw {
    let base = (row * {{P}}KG + g) * 4u;
    return {{P}}Raw({{P}}w[base], {{P}}w[base + 1u], {{P}}w[base + 2u], {{P}}w[base + 3u]);
}

fn {{P}}half(r: {{P}}Raw, h: u32) -> mat4x4<f32> {
    let u = select(r.a, r.c, h == 1u);
    let v = select(r.b, r.d, h == 1u);
    return mat4x4<f32>(vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y)),
                       vec4<f32>(unpack2x16float(u.z), unpack2x16float(u.w)),
                       vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)),
                       vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w)));
}

fn {{P}}load_group(row: u32, g: u32) -> array<vec4<f32>, 8> {
    let base = (row * {{P}}KG + g) * 4u;
    var o: array<vec4<f32>, 8>;
    for (var j = 0u; j < 4u; j++) {
        let v = {{P}}w[base + j];
        o[2u * j] = vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
        o[2u * j + 1u] = vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w));
    }
    return o;
}

fn {{P}}h8(v: vec4<u32>, lo: vec4<f32>, hi: vec4<f32>) -> f32 {
    return dot(vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)), lo)
         + dot(vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w)), hi);
}

fn {{P}}dot(row: u32, g: u32, x: X8) -> f32 {
    let base = (row * {{P}}KG + g) * 4u;
    return {{P}}h8({{P}}w[base], x.v0, x.v1) + {{P}}h8({{P}}w[base + 1u], x.v2, x.v3)
         + {{P}}h8({{P}}w[base + 2u], x.v4, x.v5) + {{P}}h8({{P}}w[base + 3u], x.v6, x.v7);
}
