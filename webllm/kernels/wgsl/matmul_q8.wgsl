// Prefill matmul with integer dot products:  y[t, ROW0 + n] (op) sum_k W[n, k] x[t, k], with x as int8
// blocks of 32 (quant_q8.wgsl: x = d_x q, one d_x per token and block) and W per block of 32 as d_w w:
// w the signed bytes n - 8 of q4s (weights_q4s.wgsl) or the int8 values of q8s; q4a's W = d_w n + m
// (n unsigned) adds m d_x sum q (MIN). Per block sum_k W x = d_w d_x sum_k w_k q_k, an exact integer
// sum of 8 dot4I8Packed (4 byte products each), so a thread does 4 products an instruction instead of
// one FMA, and workgroup memory holds a byte a weight and an input instead of 4 (the f32 matmul's
// bound was the FMAs and its workgroup-memory reads: matmul_tiled.wgsl, docs/PERFORMANCE.md). The float
// arithmetic is one conversion and one FMA per output and block (`fixup`; q4a one FMA more), against
// 8 dot products.
// (op) = store | ADD | PAIR | ROPE with the bias: the epilogue of matmul_tiled (matmul_shared.wgsl).
// A workgroup of 256 threads computes BM = 64 tokens x 128 rows (PAIR: 64 rows, gate and up staged),
// a block of 32 k at a time, double-buffered in workgroup memory (14 KiB): while the threads multiply
// one block, threads 0..127 stage the next block's weights (one staged row each: its block as 8 words
// of bytes, q8_w, with its scale) and threads 128..255 its inputs (two threads a token, 4 words each,
// and the scale), fetched from memory during the multiply before; one barrier a block. 4-bit words
// are nibbles masked in place, whose order the inputs follow (quant_q8 NIBBLES). Thread (tx, ty) of
// 16 x 16 accumulates 4 tokens (4ty..) x 8 rows (4tx.. and 64 + 4tx..; PAIR: the gate and the up row
// of 4tx..): per word of k, 3 vec4 reads of workgroup memory feed 32 dot products (128 products).
// H100, Llama-3.1-8B's matrices (q4s), 512 tokens: 30.7-33.6 T multiply-adds/s, against 13.6-18.4 for
// matmul_tiled's rule (docs/PERFORMANCE.md).
// Bindings: 0 step; 1 q8x [T, K/32] blocks (two vec4<u32>); 2 y [T, N_OUT] ({{YT}}); 3.. weights;
// then bias [rows] f32 (HAS_BIAS); with ROPE, y is q_out, then k_cache, v_cache, rope_table; last, q8d
// [T, K/32] vec2<f32> (d_x, d_x sum q).
// Grid: x = ceil(N_ROWS / TILE_ROWS), y = ceil(T / 64).
{{HEADER}}
const K: u32 = {{K}}u;
const w_KG: u32 = K / 32u;
const N_ROWS: u32 = {{N_ROWS}}u;
const N_OUT: u32 = {{N_OUT}}u;
const ROW0: u32 = {{ROW0}}u;
const PAIR: bool = {{PAIR}};
const ADD: bool = {{ADD}};
const HAS_BIAS: bool = {{HAS_BIAS}};
const ROPE: bool = {{ROPE}};
const BM: u32 = {{BM}}u;  // 2 staging threads a token: 128 of the 256
const BM4: u32 = BM / 4u;
const TILE_ROWS: u32 = {{TILE_ROWS}}u;  // output rows per workgroup: 128, or 64 with PAIR
const MIN: bool = {{MIN}};  // q4a: W = d_w n + m
const M4: u32 = 0x0F0F0F0Fu;

@group(0) @binding(1) var<storage, read> q8x: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> y: array<{{YT}}>;
{{WEIGHTS}}
{{EXTRA_BINDINGS}}
{{ROPE_STORE}}
@group(0) @binding({{BD}}) var<storage, read> q8d: array<vec2<f32>>;

var<workgroup> xs: array<vec4<u32>, 2u * 8u * BM4>;  // [buffer][word of k][token quad]: 4 tokens' words
var<workgroup> ws: array<vec4<u32>, 2u * 8u * 32u>;  // [buffer][word of k][row quad]: 4 staged rows' words
var<workgroup> xds: array<vec4<f32>, 2u * BM4>;      // [buffer][token quad]: d_x
var<workgroup> wds: array<vec4<f32>, 2u * 32u>;      // [buffer][row quad]: d_w
var<workgroup> wms: array<vec4<f32>, 2u * 32u>;      // MIN: [buffer][row quad]: m
var<workgroup> xcs: array<vec4<f32>, 2u * BM4>;      // MIN: [buffer][token quad]: d_x sum q

// a staged row's block: its 8 words of bytes in the inputs' order, d_w, and (MIN) m
struct W8 { a: vec4<u32>, b: vec4<u32>, s: f32, m: f32 }
{{Q8_W}}

{{SHARED}}

// integer sums of the block in progress (token 4ty + i; rows a: 4tx.., b: 64 + 4tx..) and f32 totals
var<private> ia0: vec4<i32>;
var<private> ia1: vec4<i32>;
var<private> ia2: vec4<i32>;
var<private> ia3: vec4<i32>;
var<private> ib0: vec4<i32>;
var<private> ib1: vec4<i32>;
var<private> ib2: vec4<i32>;
var<private> ib3: vec4<i32>;
var<private> fa0: vec4<f32>;
var<private> fa1: vec4<f32>;
var<private> fa2: vec4<f32>;
var<private> fa3: vec4<f32>;
var<private> fb0: vec4<f32>;
var<private> fb1: vec4<f32>;
var<private> fb2: vec4<f32>;
var<private> fb3: vec4<f32>;

// one block's fetched weights (staged row lid < 128) or inputs (lid >= 128) into buffer `buf`
fn stage(buf: u32, lid: u32, wr: w_Raw, xq: vec4<u32>, xd: vec2<f32>) {
    if (lid < 128u) {
        let w = q8_w(wr);
        let o = buf * 256u + lid / 4u;
        let l = lid % 4u;
        ws[o][l] = w.a.x;
        ws[o + 32u][l] = w.a.y;
        ws[o + 64u][l] = w.a.z;
        ws[o + 96u][l] = w.a.w;
        ws[o + 128u][l] = w.b.x;
        ws[o + 160u][l] = w.b.y;
        ws[o + 192u][l] = w.b.z;
        ws[o + 224u][l] = w.b.w;
        wds[buf * 32u + lid / 4u][l] = w.s;
        if (MIN) { wms[buf * 32u + lid / 4u][l] = w.m; }
    } else {
        let j = lid - 128u;
        let tq = j / 2u;  // token of the tile
        let o = buf * 8u * BM4 + 4u * (j % 2u) * BM4 + tq / 4u;
        let l = tq % 4u;
        xs[o][l] = xq.x;
        xs[o + BM4][l] = xq.y;
        xs[o + 2u * BM4][l] = xq.z;
        xs[o + 3u * BM4][l] = xq.w;
        if (j % 2u == 0u) {
            xds[buf * BM4 + tq / 4u][l] = xd.x;
            if (MIN) { xcs[buf * BM4 + tq / 4u][l] = xd.y; }
        }
    }
}

fn dp4(x: u32, w: vec4<u32>) -> vec4<i32> {
    return vec4<i32>(dot4I8Packed(x, w.x), dot4I8Packed(x, w.y), dot4I8Packed(x, w.z), dot4I8Packed(x, w.w));
}

// word kw of k of the staged block into the integer sums
fn multiply_word(buf: u32, tx: u32, ty: u32, kw: u32) {
    let xv = xs[buf * 8u * BM4 + kw * BM4 + ty];
    let wa = ws[buf * 256u + kw * 32u + tx];
    let wb = ws[buf * 256u + kw * 32u + 16u + tx];
    ia0 += dp4(xv.x, wa);
    ib0 += dp4(xv.x, wb);
    ia1 += dp4(xv.y, wa);
    ib1 += dp4(xv.y, wb);
    ia2 += dp4(xv.z, wa);
    ib2 += dp4(xv.z, wb);
    ia3 += dp4(xv.w, wa);
    ib3 += dp4(xv.w, wb);
}

// the block's sums times d_x d_w into the f32 totals
fn fixup(buf: u32, tx: u32, ty: u32) {
    let dx = xds[buf * BM4 + ty];
    let da = wds[buf * 32u + tx];
    let db = wds[buf * 32u + 16u + tx];
    fa0 = fma(vec4<f32>(ia0), dx.x * da, fa0);
    fb0 = fma(vec4<f32>(ib0), dx.x * db, fb0);
    fa1 = fma(vec4<f32>(ia1), dx.y * da, fa1);
    fb1 = fma(vec4<f32>(ib1), dx.y * db, fb1);
    fa2 = fma(vec4<f32>(ia2), dx.z * da, fa2);
    fb2 = fma(vec4<f32>(ib2), dx.z * db, fb2);
    fa3 = fma(vec4<f32>(ia3), dx.w * da, fa3);
    fb3 = fma(vec4<f32>(ib3), dx.w * db, fb3);
    if (MIN) {  // + m d_x sum q
        let cx = xcs[buf * BM4 + ty];
        let ma = wms[buf * 32u + tx];
        let mb = wms[buf * 32u + 16u + tx];
        fa0 = fma(ma, vec4<f32>(cx.x), fa0);
        fb0 = fma(mb, vec4<f32>(cx.x), fb0);
        fa1 = fma(ma, vec4<f32>(cx.y), fa1);
        fb1 = fma(mb, vec4<f32>(cx.y), fb1);
        fa2 = fma(ma, vec4<f32>(cx.z), fa2);
        fb2 = fma(mb, vec4<f32>(cx.z), fb2);
        fa3 = fma(ma, vec4<f32>(cx.w), fa3);
        fb3 = fma(mb, vec4<f32>(cx.w), fb3);
    }
    ia0 = vec4<i32>();
    ib0 = vec4<i32>();
    ia1 = vec4<i32>();
    ib1 = vec4<i32>();
    ia2 = vec4<i32>();
    ib2 = vec4<i32>();
    ia3 = vec4<i32>();
    ib3 = vec4<i32>();
}

// the staged block: 8 words of k, written out (a loop of constant trip count stays rolled on NVIDIA's
// Vulkan compiler: matmul_tiled.wgsl `multiply`)
fn multiply(buf: u32, tx: u32, ty: u32) {
    multiply_word(buf, tx, ty, 0u);
    multiply_word(buf, tx, ty, 1u);
    multiply_word(buf, tx, ty, 2u);
    multiply_word(buf, tx, ty, 3u);
    multiply_word(buf, tx, ty, 4u);
    multiply_word(buf, tx, ty, 5u);
    multiply_word(buf, tx, ty, 6u);
    multiply_word(buf, tx, ty, 7u);
    fixup(buf, tx, ty);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t0 = wid.y * BM;
    let n0 = wid.x * TILE_ROWS;
    let nt = min(BM, step.n_tokens - t0);
    let warp = lid / 32u;
    let lane = lid % 32u;
    let tx = lane % 16u;               // row quads 4tx.. and 64 + 4tx..
    let ty = lane / 16u + 2u * warp;   // tokens 4ty..
    // fetch roles: staged row lid (< 128), or half (j % 2) of token j / 2's block (j = lid - 128);
    // tokens past the end are clamped to the last and their sums never stored
    let wn = staged_row(n0, lid % 128u);
    let j = lid % 128u;
    let xt = t0 + min(j / 2u, nt - 1u);
    var wr: w_Raw;
    var xq = vec4<u32>();
    var xd = vec2<f32>();
    if (lid < 128u) {
        wr = w_fetch(wn, 0u);
    } else {
        xq = q8x[xt * w_KG * 2u + j % 2u];
        xd = q8d[xt * w_KG];
    }
    stage(0u, lid, wr, xq, xd);
    workgroupBarrier();
    for (var g = 0u; g < w_KG; g++) {
        let buf = g % 2u;
        let more = g + 1u < w_KG;
        if (more && lid < 128u) {  // the next block, in flight during this one's multiply
            wr = w_fetch(wn, g + 1u);
        } else if (more) {
            xq = q8x[(xt * w_KG + g + 1u) * 2u + j % 2u];
            xd = q8d[xt * w_KG + g + 1u];
        }
        multiply(buf, tx, ty);
        if (more) { stage(1u - buf, lid, wr, xq, xd); }
        workgroupBarrier();
    }

    let ra = n0 + 4u * tx;
    let rb = select(ra + 64u, ra, PAIR);
    let t = 4u * ty;
    if (PAIR) {
        finish(t0, t, nt, ra, fa0, fb0);
        finish(t0, t + 1u, nt, ra, fa1, fb1);
        finish(t0, t + 2u, nt, ra, fa2, fb2);
        finish(t0, t + 3u, nt, ra, fa3, fb3);
        return;
    }
    finish(t0, t, nt, ra, fa0, fa0);
    finish(t0, t + 1u, nt, ra, fa1, fa1);
    finish(t0, t + 2u, nt, ra, fa2, fa2);
    finish(t0, t + 3u, nt, ra, fa3, fa3);
    finish(t0, t, nt, rb, fb0, fb0);
    finish(t0, t + 1u, nt, rb, fb1, fb1);
    finish(t0, t + 2u, nt, rb, fb2, fb2);
    finish(t0, t + 3u, nt, rb, fb3, fb3);
}
