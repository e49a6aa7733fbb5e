// Fused dequantizing matmul:  y[t, ROW0 + n] (op) sum_k W[n, k] * x[t, k]
//   (op) = store | ADD into y (the residual stream) | PAIR: y = silu(W[n]·x + b) * (W[n + N_ROWS]·x + b')
// Bindings: 0 step (uniform); 1 x [T, K] (vec4 of {{XT}}); 2 y [T, N_OUT] ({{YT}});
//           3.. the weight arrays of format {{FORMAT}}; then bias [rows] f32 (HAS_BIAS).
// Grid: x = ceil(N_ROWS / 4) workgroups of 4 rows x 32 lanes; y = ceil(T / TT) token tiles
// (the output head runs with y = 1 and TT = 1 on row 0, where the last token's norm was written).
// Each lane walks groups of 32 inputs (g = lane, lane + 32, ...): coalesced 16-byte weight reads.
{{HEADER}}
const K: u32 = {{K}}u;
const KV4: u32 = K / 4u;
const w_KG: u32 = K / 32u;
const N_ROWS: u32 = {{N_ROWS}}u;
const N_OUT: u32 = {{N_OUT}}u;
const ROW0: u32 = {{ROW0}}u;
const TT: u32 = {{TT}}u;
const LANES: u32 = 32u;
const WG: u32 = 128u;
const PAIR: bool = {{PAIR}};
const ADD: bool = {{ADD}};
const HAS_BIAS: bool = {{HAS_BIAS}};

@group(0) @binding(1) var<storage, read> x: array<vec4<{{XT}}>>;
@group(0) @binding(2) var<storage, read_write> y: array<{{YT}}>;
{{WEIGHTS}}
{{EXTRA_BINDINGS}}

var<workgroup> red: array<f32, {{RED}}>;

fn bias_at(i: u32) -> f32 { {{BIAS_LOAD}} }

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t0 = wid.y * TT;
    let nt = min(TT, step.n_tokens - t0);
    let r = lid / LANES;
    let lane = lid % LANES;
    let row = wid.x * 4u + r;

    var acc: array<f32, TT>;
    var acc2: array<f32, TT>;
    if (row < N_ROWS) {
        for (var g = lane; g < w_KG; g += LANES) {
            let w = w_load_group(row, g);
            var w2: array<vec4<f32>, 8>;
            if (PAIR) { w2 = w_load_group(row + N_ROWS, g); }
            for (var i = 0u; i < 8u; i++) {
                for (var t = 0u; t < TT; t++) {
                    if (t < nt) {
                        let xv = vec4<f32>(x[(t0 + t) * KV4 + g * 8u + i]);
                        acc[t] += dot(w[i], xv);
                        if (PAIR) { acc2[t] += dot(w2[i], xv); }
                    }
                }
            }
        }
    }
    workgroupBarrier();
    let PW = select(1u, 2u, PAIR);
    for (var t = 0u; t < TT; t++) {
        red[(lid * TT + t) * PW] = acc[t];
        if (PAIR) { red[(lid * TT + t) * PW + 1u] = acc2[t]; }
    }
    workgroupBarrier();
    if (lane < nt && row < N_ROWS) {
        let t = lane;
        var a = 0.0;
        var b = 0.0;
        for (var l = 0u; l < LANES; l++) {
            let src = ((r * LANES + l) * TT + t) * PW;
            a += red[src];
            if (PAIR) { b += red[src + 1u]; }
        }
        let o = (t0 + t) * N_OUT + ROW0 + row;
        if (HAS_BIAS) {
            a += bias_at(row);
            if (PAIR) { b += bias_at(row + N_ROWS); }
        }
        if (PAIR) {
            a = a / (1.0 + exp(-a)) * b;
        }
        if (ADD) {
            y[o] = {{YT}}(f32(y[o]) + a);
        } else {
            y[o] = {{YT}}(a);
        }
    }
}
