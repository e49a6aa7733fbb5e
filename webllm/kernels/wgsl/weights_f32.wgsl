// Weight format f32: w [N, K] as f32, read as vec4 (8 vec4 per group of 32).
@group(0) @binding({{B}}) var<storage, read> {{P}}w: array<vec4<f32>>;

fn {{P}}load_group(row: u32, g: u32) -> array<vec4<f32>, 8> {
    let base = (row * {{P}}KG + g) * 8u;
    var o: array<vec4<f32>, 8>;
    for (var j = 0u; j < 8u; j++) { o[j] = {{P}}w[base + j]; }
    return o;
}
