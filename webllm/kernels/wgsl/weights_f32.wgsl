// Weight format f32: w [N, K] as f32, read as vec4 (8 vec4 per group of 32).
@group(0) @binding({{B}}) var<storage, read> {{P}}w: array<vec4<f32>>;

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
