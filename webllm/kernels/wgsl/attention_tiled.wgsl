// Causal attention for prefill (flash-attention style, online softmax): one workgroup per (KV head kh,
// tile of QT query tokens) computes the QT x G query rows of the G = NQ/NKV query heads that share kh,
// so each K/V block staged in workgroup memory serves all of them (GQA).
//   out[t, h, :] = sum_j softmax_j(q[t, h, :] . k[j, kh, :] * SCALE) v[j, kh, :],  kh = h / G
//   over cache positions j in [max(0, p + 1 - WINDOW), p], p = step.past + t (WINDOW 0: no window).
// Threads: DS (4 or 8) per row group, each owning a share c = lid % DS of head_dim, and RT query rows
// per thread (slots rg, rg + NG, ..., rg = lid / DS); a thread keeps its rows' q and output sums over
// its share in registers. The shares interleave by vec4 (share c owns vec4 e*DS + c of a row), so the
// DS threads of a row group read DS adjacent vec4 of a staged K or V row: no bank conflicts
// (contiguous shares, HD/DS dims apart, put them all in the same banks), and each K/V vec4 read
// feeds RT rows.
// Per block of BK positions (three barriers): the block's K and V, loaded into registers during the
// previous block, are stored to workgroup memory (barrier); the next block's loads are issued; each
// thread dots its share of q with the BK staged K rows and leaves the partials in part[position][slot]
// (DS / 4 vec4: the DS shares; a barrier); each thread sums its rows' DS partials (the scores, kept in
// registers), updates the running max and sum and accumulates p * V over its share (a barrier before
// the next store).
// Tiles are dispatched last first: under the causal mask the last tile of tokens scans the most
// positions, so it starts first and the short ones fill in behind it.
// The cache holds f16 pairs (rope_store.wgsl): word i of a row is (dim i, dim i + HD/2); a thread loads
// 4 of them (a vec4<u32>: dims 4e..4e+3 and HD/2 + 4e..) and stages them in dim order.
// Bindings: 0 step; 1 q [T, NQ*HD] act; 2 k_cache [capacity, NKV, HD / 2] f16 pairs (position-major); 3 v_cache;
//   4 out [T, NQ*HD] act.
// Grid: x = NKV, y = ceil(T / QT). Needs HD % (4 * DS) == 0.
{{HEADER}}
const NQ: u32 = {{NQ}}u;
const NKV: u32 = {{NKV}}u;
const HD: u32 = {{HD}}u;
const HD4: u32 = HD / 4u;
const HD8: u32 = HD / 8u;  // vec4<u32> of a cache row
const WINDOW: u32 = {{WINDOW}}u;
const SCALE: f32 = {{SCALE}};
const G: u32 = NQ / NKV;
const QT: u32 = {{QT}}u;        // query tokens per workgroup
const ROWS: u32 = QT * G;       // query rows, <= SLOTS
const SLOTS: u32 = {{SLOTS}}u;  // row slots: NG row groups x RT rows
const RT: u32 = {{RT}}u;        // query rows per thread
const DS: u32 = {{DS}}u;        // threads per row group, each a share of head_dim
const PV4: u32 = DS / 4u;       // vec4 of partial dots per (position, slot)
const NG: u32 = SLOTS / RT;     // row groups
const NT: u32 = NG * DS;        // threads
const BK: u32 = {{BK}}u;        // positions per block (workgroup memory <= 16 KiB)
const NEG: f32 = -1e30;

@group(0) @binding(1) var<storage, read> q: array<vec4<act>>;
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> v_cache: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<act>>;

var<workgroup> ks: array<vec4<{{KVT}}>, BK * HD4>;  // [position][dim / 4]
var<workgroup> vs: array<vec4<{{KVT}}>, BK * HD4>;
var<workgroup> part: array<vec4<f32>, BK * SLOTS * PV4>;  // [position][row slot][share / 4]: partial dots

// the low (dims 4e..) and high (dims HD/2 + 4e..) halves of 4 cache words
fn lo4(w: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(w.x).x, unpack2x16float(w.y).x, unpack2x16float(w.z).x, unpack2x16float(w.w).x);
}
fn hi4(w: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(w.x).y, unpack2x16float(w.y).y, unpack2x16float(w.z).y, unpack2x16float(w.w).y);
}

// the score of block position jj for row slot `row` at position p (NEG where masked)
fn score(row: u32, jj: u32, j: u32, p: u32, valid: bool) -> f32 {
    let i = (jj * SLOTS + row) * PV4;
    var d = part[i];
    for (var u = 1u; u < PV4; u++) { d += part[i + u]; }
    if (valid && j <= p && (WINDOW == 0u || j + WINDOW > p)) { return (d.x + d.y) + (d.z + d.w); }
    return NEG;
}

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let kh = wid.x;
    let tiles = (step.n_tokens + QT - 1u) / QT;
    let t0 = (tiles - 1u - wid.y) * QT;  // the last tile first
    let nt = min(QT, step.n_tokens - t0);
    let c = lid % DS;
    let rg = lid / DS;
    // this thread's rows (slot rg + i * NG): token, head, whether it is a query, its position, and
    // its q and output sums as named vec4 (q{i}_{e}, a{i}_{e}; generated): no indexed private array, so
    // they stay in registers
{{ROWDECLS}}
    let kv_end = step.past + t0 + nt;  // one past the last query's position
    var kv_start = 0u;
    if (WINDOW > 0u && step.past + t0 + 1u > WINDOW) { kv_start = step.past + t0 + 1u - WINDOW; }
    let cache = kh * HD8;  // K/V of position j, head kh: (j * NKV + kh) * HD8
    // the block's K and V as this thread loads them: vec4<u32> lid + i * NT of the block (kn{i}, vn{i});
    // positions past kv_end load the last real row (masked later)
{{LOADDECLS}}
    for (var j0 = kv_start; j0 < kv_end; j0 += BK) {
{{STAGE}}
        workgroupBarrier();
        let j1 = j0 + BK;  // the next block, loaded while this one is computed
        if (j1 < kv_end) {
{{LOADNEXT}}
        }
        for (var jj = 0u; jj < BK; jj++) {
{{QK}}
        }
        workgroupBarrier();
        // the block's scores (s{i}_{jj}: named registers, straight-line code over the block), the
        // running max, sum and output sums rescaled, then the weighted V rows added
{{SOFTMAX_PV}}
        workgroupBarrier();
    }
{{STORE}}
}
