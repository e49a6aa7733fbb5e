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
// Shared prelude of every kernel. `act` is the activation storage type of the device profile
// (f32, or f16 with shader-f16); arithmetic is always done in f32.
enable f16;
alias act = f16;

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
const WINDOW: u32 = 0u;
const SCALE: f32 = 0.25;
const G: u32 = NQ / NKV;
const QT: u32 = 32u;        // query tokens per workgroup: 64 / G rows of G heads (at least 1)
const ROWS: u32 = QT * G;       // query rows, <= 64
const BK: u32 = 8u;         // positions per block: 8 (4 with HD > 128), 16 KiB of workgroup memory at most
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
    var q0 = vec4<f32>(0.0);
    var a0 = vec4<f32>(0.0);
    if (valid) {
        let qb = ((t0 + tq) * NQ + h) * HD4 + c * DQ4;
        q0 = vec4<f32>(q[qb + 0u]) * SCALE;
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
            d = fma(q0, ks[kb + 0u], d);
            part[4u * (row * BK + jj) + c] = (d.x + d.y) + (d.z + d.w);
        }
        workgroupBarrier();
        // the block's scores: the 4 partials of each position (masked ones NEG), read twice rather than
        // kept in an indexed array
        var bm = NEG;
        for (var jj = 0u; jj < BK; jj++) { bm = max(bm, score(row, jj, j0 + jj, p, valid)); }
        let nm = max(m, bm);
        let alpha = exp(m - nm);
        a0 *= alpha;
        var bl = 0.0;
        for (var jj = 0u; jj < BK; jj++) {
            let sc = score(row, jj, j0 + jj, p, valid);
            let pj = select(0.0, exp(sc - nm), sc > -1e29);  // masked positions weigh nothing
            bl += pj;
            let vb = jj * HD4 + c * DQ4;
            let pv = vec4<f32>(pj);
            a0 = fma(pv, vs[vb + 0u], a0);
        }
        l = l * alpha + bl;
        m = nm;
        workgroupBarrier();
    }
    if (valid) {
        let o = ((t0 + tq) * NQ + h) * HD4 + c * DQ4;
        let inv = 1.0 / l;
        out[o + 0u] = vec4<act>(a0 * inv);
    }
}
