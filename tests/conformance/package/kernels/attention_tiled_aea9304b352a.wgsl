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
// Shared prelude of every kernel. `act` is the activation storage type of the device profile
// (f32, or f16 with shader-f16); arithmetic is always done in f32.

alias act = f32;

// The per-step uniform, written once per step by the runtime; its fields are generated from
// STEP_FIELDS (webllm/kernels/__init__.py), the same table the plan's `uniform` entry gives runtimes.
struct Step {
    n_tokens: u32,  // tokens in this step (1 for decode, <= prefill chunk for prefill)
    past: u32,  // tokens already in the KV cache: position of this step's first token
    counter: u32,  // steps since the sampling parameters were set: with seed, picks the draw
    seed: u32,  // sampling seed
    temperature: f32,  // <= 0: greedy
    top_p: f32,  // nucleus mass, (0, 1]
    top_k: u32,  // sample among the top_k largest logits (ties kept); 0: no limit
    min_p: f32,  // drop tokens whose probability is below min_p times the largest
    repetition_penalty: f32,  // seen tokens: positive logits divided, negative multiplied
    frequency_penalty: f32,  // subtracted once per time a token was generated
    presence_penalty: f32,  // subtracted once if a token was generated
    sample_flags: u32,  // 1 penalties, 2 logit_bias, 4 token_mask, 8 logprobs
    n_logprobs: u32,  // top logprobs to write to sample_out (<= MAX_TOP_LOGPROBS)
    emit: u32,  // 0: a prefill chunk before the prompt's last; the sampler does nothing
    kv_splits: u32,  // most KV splits of decode attention (0: the compiled most, SPLITS)
    _pad0: u32,
}
@group(0) @binding(0) var<uniform> step: Step;

// 32 consecutive inputs as eight vec4 (and their sum, which folds a quantization offset out of the
// inner loop): plain struct fields, so they live in registers (indexed arrays may not).
struct X8 { v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>,
            v4: vec4<f32>, v5: vec4<f32>, v6: vec4<f32>, v7: vec4<f32>, sum: f32 }

// The eight 4-bit values of a u32 (nibble i = element i), low four and high four.
fn nib_lo(w: u32) -> vec4<f32> { return vec4<f32>(vec4<u32>(w, w >> 4u, w >> 8u, w >> 12u) & vec4<u32>(15u)); }
fn nib_hi(w: u32) -> vec4<f32> { return vec4<f32>(vec4<u32>(w >> 16u, w >> 20u, w >> 24u, w >> 28u) & vec4<u32>(15u)); }

// The same nibbles as the f32 1 + n/16, without an int-to-float conversion (a slow instruction on some
// GPUs): n moved into mantissa bits 19..22 of 1.0.
fn mant_lo(w: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>((vec4<u32>(w << 19u, w << 15u, w << 11u, w << 7u) & vec4<u32>(0x00780000u)) | vec4<u32>(0x3f800000u));
}
fn mant_hi(w: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>((vec4<u32>(w << 3u, w >> 1u, w >> 5u, w >> 9u) & vec4<u32>(0x00780000u)) | vec4<u32>(0x3f800000u));
}

// sum of nibble * x over one group of 32 (four words)
fn nib_dot(q: vec4<u32>, x: X8) -> f32 {
    return dot(nib_lo(q.x), x.v0) + dot(nib_hi(q.x), x.v1) + dot(nib_lo(q.y), x.v2) + dot(nib_hi(q.y), x.v3)
         + dot(nib_lo(q.z), x.v4) + dot(nib_hi(q.z), x.v5) + dot(nib_lo(q.w), x.v6) + dot(nib_hi(q.w), x.v7);
}

const NQ: u32 = 4u;
const NKV: u32 = 2u;
const HD: u32 = 16u;
const HD4: u32 = HD / 4u;
const HD8: u32 = HD / 8u;  // vec4<u32> of a cache row
const WINDOW: u32 = 0u;
const SCALE: f32 = 0.25;
const G: u32 = NQ / NKV;
const QT: u32 = 16u;        // query tokens per workgroup
const ROWS: u32 = QT * G;       // query rows, <= SLOTS
const SLOTS: u32 = 32u;  // row slots: NG row groups x RT rows
const RT: u32 = 2u;        // query rows per thread
const DS: u32 = 4u;        // threads per row group, each a share of head_dim
const PV4: u32 = DS / 4u;       // vec4 of partial dots per (position, slot)
const NG: u32 = SLOTS / RT;     // row groups
const NT: u32 = NG * DS;        // threads
const BK: u32 = 8u;        // positions per block (workgroup memory <= 16 KiB)
const NEG: f32 = -1e30;

@group(0) @binding(1) var<storage, read> q: array<vec4<act>>;
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> v_cache: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<act>>;

var<workgroup> ks: array<vec4<f32>, BK * HD4>;  // [position][dim / 4]
var<workgroup> vs: array<vec4<f32>, BK * HD4>;
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
    let row0 = rg + 0u * NG;
    let tq0 = row0 / G;
    let valid0 = row0 < ROWS && tq0 < nt;
    let p0 = step.past + t0 + tq0;  // the row's query position
    let qb0 = ((t0 + tq0) * NQ + kh * G + row0 % G) * HD4 + c;  // its vec4 0 of share c
    var m0 = NEG;
    var l0 = 0.0;
    var q0_0 = vec4<f32>(0.0);
    var a0_0 = vec4<f32>(0.0);
    if (valid0) {
        q0_0 = vec4<f32>(q[qb0 + 0u]) * SCALE;
    }
    let row1 = rg + 1u * NG;
    let tq1 = row1 / G;
    let valid1 = row1 < ROWS && tq1 < nt;
    let p1 = step.past + t0 + tq1;  // the row's query position
    let qb1 = ((t0 + tq1) * NQ + kh * G + row1 % G) * HD4 + c;  // its vec4 0 of share c
    var m1 = NEG;
    var l1 = 0.0;
    var q1_0 = vec4<f32>(0.0);
    var a1_0 = vec4<f32>(0.0);
    if (valid1) {
        q1_0 = vec4<f32>(q[qb1 + 0u]) * SCALE;
    }
    let kv_end = step.past + t0 + nt;  // one past the last query's position
    var kv_start = 0u;
    if (WINDOW > 0u && step.past + t0 + 1u > WINDOW) { kv_start = step.past + t0 + 1u - WINDOW; }
    let cache = kh * HD8;  // K/V of position j, head kh: (j * NKV + kh) * HD8
    // the block's K and V as this thread loads them: vec4<u32> lid + i * NT of the block (kn{i}, vn{i});
    // positions past kv_end load the last real row (masked later)
    var kn0 = k_cache[cache + min(kv_start + min(lid + 0u, BK * HD8 - 1u) / HD8, kv_end - 1u) * NKV * HD8 + (lid + 0u) % HD8];
    var vn0 = v_cache[cache + min(kv_start + min(lid + 0u, BK * HD8 - 1u) / HD8, kv_end - 1u) * NKV * HD8 + (lid + 0u) % HD8];
    for (var j0 = kv_start; j0 < kv_end; j0 += BK) {
        if (lid + 0u < BK * HD8) {
            ks[(lid + 0u) / HD8 * HD4 + (lid + 0u) % HD8] = vec4<f32>(lo4(kn0));
            ks[(lid + 0u) / HD8 * HD4 + (lid + 0u) % HD8 + HD8] = vec4<f32>(hi4(kn0));
            vs[(lid + 0u) / HD8 * HD4 + (lid + 0u) % HD8] = vec4<f32>(lo4(vn0));
            vs[(lid + 0u) / HD8 * HD4 + (lid + 0u) % HD8 + HD8] = vec4<f32>(hi4(vn0));
        }
        workgroupBarrier();
        let j1 = j0 + BK;  // the next block, loaded while this one is computed
        if (j1 < kv_end) {
            kn0 = k_cache[cache + min(j1 + min(lid + 0u, BK * HD8 - 1u) / HD8, kv_end - 1u) * NKV * HD8 + (lid + 0u) % HD8];
            vn0 = v_cache[cache + min(j1 + min(lid + 0u, BK * HD8 - 1u) / HD8, kv_end - 1u) * NKV * HD8 + (lid + 0u) % HD8];
        }
        for (var jj = 0u; jj < BK; jj++) {
            let kb = jj * HD4 + c;
            var d0 = vec4<f32>(0.0);
            var d1 = vec4<f32>(0.0);
            let k0 = vec4<f32>(ks[kb + 0u]);
            d0 = fma(q0_0, k0, d0);
            d1 = fma(q1_0, k0, d1);
            part[(jj * SLOTS + row0) * PV4 + c / 4u][c % 4u] = (d0.x + d0.y) + (d0.z + d0.w);
            part[(jj * SLOTS + row1) * PV4 + c / 4u][c % 4u] = (d1.x + d1.y) + (d1.z + d1.w);
        }
        workgroupBarrier();
        // the block's scores (s{i}_{jj}: named registers, straight-line code over the block), the
        // running max, sum and output sums rescaled, then the weighted V rows added
        let s0_0 = score(row0, 0u, j0 + 0u, p0, valid0);
        let s1_0 = score(row1, 0u, j0 + 0u, p1, valid1);
        let s0_1 = score(row0, 1u, j0 + 1u, p0, valid0);
        let s1_1 = score(row1, 1u, j0 + 1u, p1, valid1);
        let s0_2 = score(row0, 2u, j0 + 2u, p0, valid0);
        let s1_2 = score(row1, 2u, j0 + 2u, p1, valid1);
        let s0_3 = score(row0, 3u, j0 + 3u, p0, valid0);
        let s1_3 = score(row1, 3u, j0 + 3u, p1, valid1);
        let s0_4 = score(row0, 4u, j0 + 4u, p0, valid0);
        let s1_4 = score(row1, 4u, j0 + 4u, p1, valid1);
        let s0_5 = score(row0, 5u, j0 + 5u, p0, valid0);
        let s1_5 = score(row1, 5u, j0 + 5u, p1, valid1);
        let s0_6 = score(row0, 6u, j0 + 6u, p0, valid0);
        let s1_6 = score(row1, 6u, j0 + 6u, p1, valid1);
        let s0_7 = score(row0, 7u, j0 + 7u, p0, valid0);
        let s1_7 = score(row1, 7u, j0 + 7u, p1, valid1);
        let nm0 = max(m0, max(s0_0, max(s0_1, max(s0_2, max(s0_3, max(s0_4, max(s0_5, max(s0_6, s0_7))))))));
        let al0 = exp(m0 - nm0);
        a0_0 *= al0;
        l0 *= al0;
        m0 = nm0;
        let nm1 = max(m1, max(s1_0, max(s1_1, max(s1_2, max(s1_3, max(s1_4, max(s1_5, max(s1_6, s1_7))))))));
        let al1 = exp(m1 - nm1);
        a1_0 *= al1;
        l1 *= al1;
        m1 = nm1;
        let w0_0 = vec4<f32>(select(0.0, exp(s0_0 - m0), s0_0 > -1e29));
        l0 += w0_0.x;
        let w1_0 = vec4<f32>(select(0.0, exp(s1_0 - m1), s1_0 > -1e29));
        l1 += w1_0.x;
        let v0_0 = vec4<f32>(vs[0u + c + 0u]);
        a0_0 = fma(w0_0, v0_0, a0_0);
        a1_0 = fma(w1_0, v0_0, a1_0);
        let w0_1 = vec4<f32>(select(0.0, exp(s0_1 - m0), s0_1 > -1e29));
        l0 += w0_1.x;
        let w1_1 = vec4<f32>(select(0.0, exp(s1_1 - m1), s1_1 > -1e29));
        l1 += w1_1.x;
        let v1_0 = vec4<f32>(vs[4u + c + 0u]);
        a0_0 = fma(w0_1, v1_0, a0_0);
        a1_0 = fma(w1_1, v1_0, a1_0);
        let w0_2 = vec4<f32>(select(0.0, exp(s0_2 - m0), s0_2 > -1e29));
        l0 += w0_2.x;
        let w1_2 = vec4<f32>(select(0.0, exp(s1_2 - m1), s1_2 > -1e29));
        l1 += w1_2.x;
        let v2_0 = vec4<f32>(vs[8u + c + 0u]);
        a0_0 = fma(w0_2, v2_0, a0_0);
        a1_0 = fma(w1_2, v2_0, a1_0);
        let w0_3 = vec4<f32>(select(0.0, exp(s0_3 - m0), s0_3 > -1e29));
        l0 += w0_3.x;
        let w1_3 = vec4<f32>(select(0.0, exp(s1_3 - m1), s1_3 > -1e29));
        l1 += w1_3.x;
        let v3_0 = vec4<f32>(vs[12u + c + 0u]);
        a0_0 = fma(w0_3, v3_0, a0_0);
        a1_0 = fma(w1_3, v3_0, a1_0);
        let w0_4 = vec4<f32>(select(0.0, exp(s0_4 - m0), s0_4 > -1e29));
        l0 += w0_4.x;
        let w1_4 = vec4<f32>(select(0.0, exp(s1_4 - m1), s1_4 > -1e29));
        l1 += w1_4.x;
        let v4_0 = vec4<f32>(vs[16u + c + 0u]);
        a0_0 = fma(w0_4, v4_0, a0_0);
        a1_0 = fma(w1_4, v4_0, a1_0);
        let w0_5 = vec4<f32>(select(0.0, exp(s0_5 - m0), s0_5 > -1e29));
        l0 += w0_5.x;
        let w1_5 = vec4<f32>(select(0.0, exp(s1_5 - m1), s1_5 > -1e29));
        l1 += w1_5.x;
        let v5_0 = vec4<f32>(vs[20u + c + 0u]);
        a0_0 = fma(w0_5, v5_0, a0_0);
        a1_0 = fma(w1_5, v5_0, a1_0);
        let w0_6 = vec4<f32>(select(0.0, exp(s0_6 - m0), s0_6 > -1e29));
        l0 += w0_6.x;
        let w1_6 = vec4<f32>(select(0.0, exp(s1_6 - m1), s1_6 > -1e29));
        l1 += w1_6.x;
        let v6_0 = vec4<f32>(vs[24u + c + 0u]);
        a0_0 = fma(w0_6, v6_0, a0_0);
        a1_0 = fma(w1_6, v6_0, a1_0);
        let w0_7 = vec4<f32>(select(0.0, exp(s0_7 - m0), s0_7 > -1e29));
        l0 += w0_7.x;
        let w1_7 = vec4<f32>(select(0.0, exp(s1_7 - m1), s1_7 > -1e29));
        l1 += w1_7.x;
        let v7_0 = vec4<f32>(vs[28u + c + 0u]);
        a0_0 = fma(w0_7, v7_0, a0_0);
        a1_0 = fma(w1_7, v7_0, a1_0);
        workgroupBarrier();
    }
    if (valid0) {
        let inv = 1.0 / l0;
        out[qb0 + 0u] = vec4<act>(a0_0 * inv);
    }
    if (valid1) {
        let inv = 1.0 / l1;
        out[qb1 + 0u] = vec4<act>(a1_0 * inv);
    }
}
