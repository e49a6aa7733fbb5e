// Fused dequantizing matmul:  y[t, ROW0 + n] (op) sum_k W[n, k] * x'[t, k]
//   x'     = x, or RMSNorm(x) * norm_w when NORM (the norm is computed here, per token)
//   (op)   = store | add into y (residual stream) | PAIR: y = silu(W[n]·x' + b) * (W[n + N_ROWS]·x' + b')
// Bindings: 0 step (uniform); 1 x [T, K] (vec4 of {{XT}}); 2 y [T, N_OUT] ({{YT}});
//           3.. the weight arrays of format {{FORMAT}}; then bias [rows] f32 (HAS_BIAS); norm_w [K] f32 (NORM).
// Grid: x = ceil(N_ROWS / 4) workgroups of 4 rows x 32 lanes; y = ceil(T / TT) token tiles
// (LAST: one workgroup row, the step's last token only, written to y row 0).
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
const NORM: bool = {{NORM}};
const PAIR: bool = {{PAIR}};
const ADD: bool = {{ADD}};
const LAST: bool = {{LAST}};
const HAS_BIAS: bool = {{HAS_BIAS}};
const EPS: f32 = {{EPS}};

@group(0) @binding(1) var<storage, read> x: array<vec4<{{XT}}>>;
@group(0) @binding(2) var<storage, read_write> y: array<{{YT}}>;
{{WEIGHTS}}
{{EXTRA_BINDINGS}}

var<workgroup> red: array<f32, {{RED}}>;
var<workgroup> inv_rms: array<f32, TT>;

fn norm_w4(i: u32) -> vec4<f32> { {{NORM_LOAD}} }
fn bias_at(i: u32) -> f32 { {{BIAS_LOAD}} }

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    var t0 = wid.y * TT;
    if (LAST) { t0 = step.n_tokens - 1u; }
    let nt = select(min(TT, step.n_tokens - t0), 1u, LAST);
    let r = lid / LANES;
    let lane = lid % LANES;
    let row = wid.x * 4u + r;

    if (NORM) {
        // inverse RMS of each token of the tile, all 128 threads cooperating
        for (var t = 0u; t < TT; t++) {
            var ss = 0.0;
            if (t < nt) {
                for (var i = lid; i < KV4; i += WG) {
                    let v = vec4<f32>(x[(t0 + t) * KV4 + i]);
                    ss += dot(v, v);
                }
            }
            red[t * WG + lid] = ss;
        }
        workgroupBarrier();
        if (lid < TT) {
            var s = 0.0;
            for (var i = 0u; i < WG; i++) { s += red[lid * WG + i]; }
            inv_rms[lid] = inverseSqrt(s / f32(K) + EPS);
        }
        workgroupBarrier();
    }

    var acc: array<f32, TT>;
    var acc2: array<f32, TT>;
    if (row < N_ROWS) {
        for (var g = lane; g < w_KG; g += LANES) {
            let w = w_load_group(row, g);
            var w2: array<vec4<f32>, 8>;
            if (PAIR) { w2 = w_load_group(row + N_ROWS, g); }
            for (var i = 0u; i < 8u; i++) {
                var nw = vec4<f32>(1.0);
                if (NORM) { nw = norm_w4(g * 8u + i); }
                for (var t = 0u; t < TT; t++) {
                    if (t < nt) {
                        var xv = vec4<f32>(x[(t0 + t) * KV4 + g * 8u + i]);
                        if (NORM) { xv = xv * nw * inv_rms[t]; }
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
        var out_t = t0 + t;
        if (LAST) { out_t = 0u; }
        let o = out_t * N_OUT + ROW0 + row;
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
