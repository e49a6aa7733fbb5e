// Weight format q8s: symmetric 8-bit, group 32 (GGUF Q8_0 kept as is). q [N*K/4] u32, 2 vec4<u32>
// per group, int8 lane i of a word = element 4w+i; scales [N*K/32] f16. W[n, k] = int8 * scale.
@group(0) @binding({{B}}) var<storage, read> {{P}}q: array<vec4<u32>>;
@group(0) @binding({{B1}}) var<storage, read> {{P}}s: array<u32>;

fn {{P}}i8x4(w: u32) -> vec4<f32> {
    // sign-extend each byte with an arithmetic right shift
    return vec4<f32>(vec4<i32>(bitcast<i32>(w << 24u), bitcast<i32>(w << 16u), bitcast<i32>(w << 8u), bitcast<i32>(w)) >> vec4<u32>(24u));
}

// Prefill (matmul_tiled): a group's words fetched ahead, dequantized a half (16) at a time when staged.
struct {{P}}Raw { a: vec4<u32>, b: vec4<u32>, s: f32 }

fn {{P}}fetch(row: u32, g: u32) -> {{P}}Raw {
    let i = row * {{P}}KG + g;
    let p = unpack2x16float({{P}}s[i >> 1u]);
    return {{P}}Raw({{P}}q[i * 2u], {{P}}q[i * 2u + 1u], select(p.x, p.y, (i & 1u) == 1u));
}

fn {{P}}half(r: {{P}}Raw, h: u32) -> mat4x4<f32> {
    let v = select(r.a, r.b, h == 1u);
    return mat4x4<f32>({{P}}i8x4(v.x) * r.s, {{P}}i8x4(v.y) * r.s, {{P}}i8x4(v.z) * r.s, {{P}}i8x4(v.w) * r.s);
}

fn {{P}}load_group(row: u32, g: u32) -> array<vec4<f32>, 8> {
    let i = row * {{P}}KG + g;
    let p = unpack2x16float({{P}}s[i >> 1u]);
    let s = select(p.x, p.y, (i & 1u) == 1u);
    var o: array<vec4<f32>, 8>;
    for (var j = 0u; j < 2u; j++) {
        let v = {{P}}q[i * 2u + j];
        o[4u * j] = {{P}}i8x4(v.x) * s;
        o[4u * j + 1u] = {{P}}i8x4(v.y) * s;
        o[4u * j + 2u] = {{P}}i8x4(v.z) * s;
        o[4u * j + 3u] = {{P}}i8x4(v.w) * s;
    }
    return o;
}

fn {{P}}dot(row: u32, g: u32, x: X8) -> f32 {
    let i = row * {{P}}KG + g;
    let p = unpack2x16float({{P}}s[i >> 1u]);
    let a = {{P}}q[i * 2u];
    let b = {{P}}q[i * 2u + 1u];
    let acc = dot({{P}}i8x4(a.x), x.v0) + dot({{P}}i8x4(a.y), x.v1) + dot({{P}}i8x4(a.z), x.v2) + dot({{P}}i8x4(a.w), x.v3)
            + dot({{P}}i8x4(b.x), x.v4) + dot({{P}}i8x4(b.y), x.v5) + dot({{P}}i8x4(b.z), x.v6) + dot({{P}}i8x4(b.w), x.v7);
    return acc * select(p.x, p.y, (i & 1u) == 1u);
}
