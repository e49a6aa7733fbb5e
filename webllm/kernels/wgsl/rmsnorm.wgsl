// RMSNorm: y[t_out, :] = act(x[t, :] / sqrt(mean_k x[t, k]^2 + EPS) * w)
// for every token of the step (t_out = t), or with LAST only the step's last token, written to row 0
// (the output head needs no other row).
// Bindings: 0 step; 1 x [T, H] f32 (the residual stream); 2 y [T, H] act; 3 w [H] f32.
// Grid: x = 1, y = T (LAST: y = 1). One workgroup of 256 threads per token.
{{HEADER}}
const H4: u32 = {{H}}u / 4u;
const EPS: f32 = {{EPS}};
const LAST: bool = {{LAST}};

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<act>>;
@group(0) @binding(3) var<storage, read> w: array<vec4<f32>>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    var t = wid.y;
    var t_out = wid.y;
    if (LAST) { t = step.n_tokens - 1u; t_out = 0u; }
    var ss = 0.0;
    for (var i = lid; i < H4; i += 256u) {
        let v = x[t * H4 + i];
        ss += dot(v, v);
    }
    red[lid] = ss;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    let inv = inverseSqrt(red[0] / f32(H4 * 4u) + EPS);
    for (var i = lid; i < H4; i += 256u) {
        y[t_out * H4 + i] = vec4<act>(x[t * H4 + i] * inv * w[i]);
    }
}
