// Weight format f32: w [N, K] as f32, read as vec4 (8 vec4 per group of 32).
@group(0) @binding({{B}}) var<storage, read> {{P}}w: array<vec4<f32>>;

// Prefill (matmul_tiled): a group fetched ahead, staged a half (16) at a time.
struct {{P}}Raw { lo: mat4x4<f32>, hi: mat4x4<f32> }

fn {{P}}fetch(row: u32, g: u32) -> {{P}}Raw {
    let b = (row * {{P}}KG + g) * 8u;
    return {{P}}Raw(mat4x4<f32>({{P}}w[b], {{P}}w[b + 1u], {{P}}w[b + 2u], {{P}}w[b + 3u]),
                    mat4x4<f32>({{P}}w[b + 4u], {{P}}w[b + 5u], {{P}}w[b + 6u], {{P}}w[b + 7u]));
}

fn {{P}}half(r: {{P}}Raw, h: u32) -> mat4x4<f32> {
    if (h == 1u) { return r.hi; }
    return r.lo;
}

fn {{P}}load_group(row: u32, g: u32) -> array<vec4<f32>, 8> {
    let base = (row * {{P}}KG + g) * 8u;
    var o: array<vec4<f32>, 8>;
    for (var j = 0u; j < 8u; j++) { o[j] = {{P}}w[base + j]; }
    return o;
}

fn {{P}}dot(row: u32, g: u32, x: X8) -> f32 {
    let b = (row * {{P}}KG + g) * 8u;
    return dot({{P}}w[b], x.v0) + dot({{P}}w[b + 1u], x.v1) + dot({{P}}w[b + 2u], x.v2) + dot({{P}}w[b + 3u], x.v3)
         + dot({{P}}w[b + 4u], x.v4) + dot({{P}}w[b + 5u], x.v5) + dot({{P}}w[b + 6u], x.v6) + dot({{P}}w[b + 7u], x.v7);
}
