// Decode matmul (one token):  y[ROW0 + n] (op) sum_k W[n, k] * x[k]
//   (op) = store | ADD into y (the residual stream) | PAIR: y = silu(W[n]·x + b) * (W[n + N_ROWS]·x + b')
// LANES threads share a row, each walking groups of 32 inputs g = lane, lane + LANES, ...; the
// format's w_dot does dequantization and the 32 products in straight-line code (no arrays, so
// nothing spills). A workgroup of 256 threads holds 256 / LANES rows; partial sums meet in
// workgroup memory.
// Bindings: 0 step; 1 x [K] (vec4 of {{XT}}); 2 y [N_OUT] ({{YT}}); 3.. weight arrays of format
// {{FORMAT}}; then bias [rows] f32 (HAS_BIAS); with ROPE, y is q_out, then k_cache, v_cache, rope_table.
// Grid: x = ceil(N_ROWS / (256 / LANES)), y = 1.
{{HEADER}}
const K: u32 = {{K}}u;
const w_KG: u32 = K / 32u;
const N_ROWS: u32 = {{N_ROWS}}u;
const ROW0: u32 = {{ROW0}}u;
const LANES: u32 = {{LANES}}u;
const PAIR: bool = {{PAIR}};
const ADD: bool = {{ADD}};
const HAS_BIAS: bool = {{HAS_BIAS}};
const ROPE: bool = {{ROPE}};  // y is q_out and rows come in rope pairs: see rope_store

@group(0) @binding(1) var<storage, read> x: array<vec4<{{XT}}>>;
@group(0) @binding(2) var<storage, read_write> y: array<{{YT}}>;
{{WEIGHTS}}
{{EXTRA_BINDINGS}}
{{ROPE_STORE}}

var<workgroup> red: array<vec2<f32>, 256>;

fn bias_at(i: u32) -> f32 { {{BIAS_LOAD}} }

fn load_x(g: u32) -> X8 {
    let b = g * 8u;
    var r: X8;
    r.v0 = vec4<f32>(x[b]);
    r.v1 = vec4<f32>(x[b + 1u]);
    r.v2 = vec4<f32>(x[b + 2u]);
    r.v3 = vec4<f32>(x[b + 3u]);
    r.v4 = vec4<f32>(x[b + 4u]);
    r.v5 = vec4<f32>(x[b + 5u]);
    r.v6 = vec4<f32>(x[b + 6u]);
    r.v7 = vec4<f32>(x[b + 7u]);
    r.sum = dot((r.v0 + r.v1) + (r.v2 + r.v3) + (r.v4 + r.v5) + (r.v6 + r.v7), vec4<f32>(1.0));
    return r;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid % LANES;
    let row = wid.x * (256u / LANES) + lid / LANES;
    var a = 0.0;
    var b = 0.0;
    if (row < N_ROWS) {
        for (var g = lane; g < w_KG; g += LANES) {
            let xg = load_x(g);
            a += w_dot(row, g, xg);
            if (PAIR) { b += w_dot(row + N_ROWS, g, xg); }
        }
    }
    red[lid] = vec2<f32>(a, b);
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        if (lane < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    if (ROPE) {
        if (lane == 0u && row < N_ROWS && (row & 1u) == 0u) {
            var a = red[lid].x;
            var b = red[lid + LANES].x;  // the pair's second row, next in this workgroup
            if (HAS_BIAS) {
                a += bias_at(row);
                b += bias_at(row + 1u);
            }
            rope_store(0u, step.past, ROW0 + row, a, b);
        }
        return;
    }
    if (lane == 0u && row < N_ROWS) {
        var v = red[lid];
        if (HAS_BIAS) {
            v.x += bias_at(row);
            if (PAIR) { v.y += bias_at(row + N_ROWS); }
        }
        if (PAIR) { v.x = v.x / (1.0 + exp(-v.x)) * v.y; }
        let o = ROW0 + row;
        if (ADD) {
            y[o] = {{YT}}(f32(y[o]) + v.x);
        } else {
            y[o] = {{YT}}(v.x);
        }
    }
}
