// Decode matmul (one token):  y[ROW0 + n] (op) sum_k W[n, k] * x[k]
//   (op) = store | ADD into y (the residual stream) | PAIR: y = silu(W[n]·x + b) * (W[n + N_ROWS]·x + b')
// LANES threads share a row, each walking groups of 32 inputs g = lane, lane + LANES, ... with UNROLL
// groups in flight per step (their loads issued before their math, to keep memory busy); a
// workgroup holds ROWS = 256 / LANES rows. Partial sums meet in workgroup memory.
// Bindings: 0 step; 1 x [K] (vec4 of {{XT}}); 2 y [N_OUT] ({{YT}}); 3.. weight arrays of format
// {{FORMAT}}; then bias [rows] f32 (HAS_BIAS).
// Grid: x = ceil(N_ROWS / ROWS), y = 1.
{{HEADER}}
const K: u32 = {{K}}u;
const w_KG: u32 = K / 32u;
const N_ROWS: u32 = {{N_ROWS}}u;
const ROW0: u32 = {{ROW0}}u;
const LANES: u32 = {{LANES}}u;
const ROWS: u32 = 256u / LANES;
const UNROLL: u32 = {{UNROLL}}u;
const PAIR: bool = {{PAIR}};
const ADD: bool = {{ADD}};
const HAS_BIAS: bool = {{HAS_BIAS}};

@group(0) @binding(1) var<storage, read> x: array<vec4<{{XT}}>>;
@group(0) @binding(2) var<storage, read_write> y: array<{{YT}}>;
{{WEIGHTS}}
{{EXTRA_BINDINGS}}

var<workgroup> red: array<vec2<f32>, 256>;

fn bias_at(i: u32) -> f32 { {{BIAS_LOAD}} }

fn dot_group(w: array<vec4<f32>, 8>, g: u32) -> f32 {
    var s = 0.0;
    for (var i = 0u; i < 8u; i++) { s += dot(w[i], vec4<f32>(x[g * 8u + i])); }
    return s;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = lid / LANES;
    let lane = lid % LANES;
    let row = wid.x * ROWS + r;
    var a = 0.0;
    var b = 0.0;
    if (row < N_ROWS) {
        var g = lane;
        // full steps: UNROLL groups, all in range
        for (; g + (UNROLL - 1u) * LANES < w_KG; g += UNROLL * LANES) {
            var ws: array<array<vec4<f32>, 8>, UNROLL>;
            for (var u = 0u; u < UNROLL; u++) { ws[u] = w_load_group(row, g + u * LANES); }
            for (var u = 0u; u < UNROLL; u++) { a += dot_group(ws[u], g + u * LANES); }
            if (PAIR) {
                for (var u = 0u; u < UNROLL; u++) { ws[u] = w_load_group(row + N_ROWS, g + u * LANES); }
                for (var u = 0u; u < UNROLL; u++) { b += dot_group(ws[u], g + u * LANES); }
            }
        }
        for (; g < w_KG; g += LANES) {
            a += dot_group(w_load_group(row, g), g);
            if (PAIR) { b += dot_group(w_load_group(row + N_ROWS, g), g); }
        }
    }
    red[lid] = vec2<f32>(a, b);
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        if (lane < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
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
