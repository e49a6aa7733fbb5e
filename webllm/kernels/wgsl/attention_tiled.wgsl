// Causal attention for prefill (flash-attention style, online softmax): one workgroup per (KV head kh,
// tile of QT query tokens) computes the QT x G query rows of the G = NQ/NKV query heads that share kh,
// so each K/V block is read from memory once for all of them (GQA), and each block staged in
// workgroup memory serves 64 query rows.
//   out[t, h, :] = sum_j softmax_j(q[t, h, :] . k[j, kh, :] * SCALE) v[j, kh, :],  kh = h / G
//   over cache positions j in [max(0, p + 1 - WINDOW), p], p = step.past + t (WINDOW 0: no window).
// 256 threads: query row r = (token r / G, head kh*G + r % G) of the tile has 4 threads; the thread of
// quarter c keeps its row's q and output dims [c*HD/4, (c+1)*HD/4) in registers.
// Per block of BK positions: K and V rows staged (one barrier); each thread dots its quarter of q with
// the BK staged K rows and leaves the partial sums in workgroup memory (a barrier); each thread adds its
// row's 4 partials (the scores), updates the row's running max and sum, and accumulates p * V over its
// quarter of the dims; a barrier before the next block is staged.
// Bindings: 0 step; 1 q [T, NQ*HD] act; 2 k_cache [capacity, NKV, HD] act (position-major); 3 v_cache; 4 out [T, NQ*HD] act.
// Grid: x = NKV, y = ceil(T / QT). Needs HD % 16 == 0.
{{HEADER}}
const NQ: u32 = {{NQ}}u;
const NKV: u32 = {{NKV}}u;
const HD: u32 = {{HD}}u;
const HD4: u32 = HD / 4u;
const WINDOW: u32 = {{WINDOW}}u;
const SCALE: f32 = {{SCALE}};
const G: u32 = NQ / NKV;
const QT: u32 = {{QT}}u;        // query tokens per workgroup: 64 / G rows of G heads (at least 1)
const ROWS: u32 = QT * G;       // query rows, <= 64
const BK: u32 = {{BK}}u;         // positions per block: 8 (4 with HD > 128), 16 KiB of workgroup memory at most
const DQ4: u32 = HD4 / 4u;      // vec4 of q and output dims per thread
const NEG: f32 = -1e30;

@group(0) @binding(1) var<storage, read> q: array<vec4<act>>;
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<act>>;
@group(0) @binding(3) var<storage, read> v_cache: array<vec4<act>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<act>>;

var<workgroup> ks: array<vec4<f32>, BK * HD4>;
var<workgroup> vs: array<vec4<f32>, BK * HD4>;
var<workgroup> part: array<f32, 256u * BK>;  // [row][position][quarter]: the partial dots

// the score of block position jj for query row `row` at position p (NEG where masked)
fn score(row: u32, jj: u32, j: u32, p: u32, valid: bool) -> f32 {
    let i = 4u * (row * BK + jj);
    if (valid && j <= p && (WINDOW == 0u || j + WINDOW > p)) { return (part[i] + part[i + 1u]) + (part[i + 2u] + part[i + 3u]); }
    return NEG;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let kh = wid.x;
    let t0 = wid.y * QT;
    let nt = min(QT, step.n_tokens - t0);
    let row = lid / 4u;
    let c = lid % 4u;
    let tq = row / G;
    let h = kh * G + row % G;
    let valid = row < ROWS && tq < nt;
    let p = step.past + t0 + tq;  // this row's query position
    // q and the output sums as named vec4 (q0.., a0..; DQ4 of each, generated): no indexed array, so
    // they stay in registers (a dynamically indexed private array may live in memory)
{{DECLS}}
    if (valid) {
        let qb = ((t0 + tq) * NQ + h) * HD4 + c * DQ4;
{{QLOAD}}
    }
    let kv_end = step.past + t0 + nt;  // one past the last query's position
    var kv_start = 0u;
    if (WINDOW > 0u && step.past + t0 + 1u > WINDOW) { kv_start = step.past + t0 + 1u - WINDOW; }
    let cache = kh * HD4;  // K/V of position j, head kh: (j * NKV + kh) * HD4
    var m = NEG;
    var l = 0.0;
    for (var j0 = kv_start; j0 < kv_end; j0 += BK) {
        for (var i = lid; i < BK * HD4; i += 256u) {
            let j = min(j0 + i / HD4, kv_end - 1u);  // past the end: a real row, masked below
            let o = cache + j * NKV * HD4 + i % HD4;
            ks[i] = vec4<f32>(k_cache[o]);
            vs[i] = vec4<f32>(v_cache[o]);
        }
        workgroupBarrier();
        for (var jj = 0u; jj < BK; jj++) {
            let kb = jj * HD4 + c * DQ4;
            var d = vec4<f32>(0.0);
{{QK}}
            part[4u * (row * BK + jj) + c] = (d.x + d.y) + (d.z + d.w);
        }
        workgroupBarrier();
        // the block's scores: the 4 partials of each position (masked ones NEG), read twice rather than
        // kept in an indexed array
        var bm = NEG;
        for (var jj = 0u; jj < BK; jj++) { bm = max(bm, score(row, jj, j0 + jj, p, valid)); }
        let nm = max(m, bm);
        let alpha = exp(m - nm);
{{RESCALE}}
        var bl = 0.0;
        for (var jj = 0u; jj < BK; jj++) {
            let sc = score(row, jj, j0 + jj, p, valid);
            let pj = select(0.0, exp(sc - nm), sc > -1e29);  // masked positions weigh nothing
            bl += pj;
            let vb = jj * HD4 + c * DQ4;
            let pv = vec4<f32>(pj);
{{PV}}
        }
        l = l * alpha + bl;
        m = nm;
        workgroupBarrier();
    }
    if (valid) {
        let o = ((t0 + tq) * NQ + h) * HD4 + c * DQ4;
        let inv = 1.0 / l;
{{STORE}}
    }
}
