// Decode attention (one token), flash-decoding: one workgroup per (KV head kh, block of GW query
// heads, split z) covers the positions [a, b) of split z (attention_splits.wgsl: at most SPLITS
// splits, each a multiple of 64 positions long) for GW of the G = NQ/NKV query heads that share kh
// (WPK = G / GW workgroups per KV head read the same K and V rows, mostly from L2):
//   s[g, j] = q[kh*G + g, :] . k[j, kh, :] * SCALE
//   m[g] = max_j s,  l[g] = sum_j exp(s - m),  o[g, :] = sum_j exp(s[g, j] - m[g]) v[j, kh, :] / l[g]
// with an online softmax over chunks of CH = 64 positions, and writes the split's partial: o in the
// activation type and lse = m + log(l) in f32. The o matmul combines the splits while it loads its
// input (gemv.wgsl COMBINE_IN): out = sum_z o_z exp(lse_z - LSE), LSE = log sum_z exp(lse_z).
// K and V rows are read in slots of 8 dims, one 16-byte load of 4 f16 pairs (rope_store.wgsl: word i
// of a row holds dims i and i + HD/2), NS = HD / 8 a row; slot s unpacks to dims 4s, 4s + HD/2,
// 4s + 1, 4s + 1 + HD/2 (S8.a) and 4s + 2, ... (S8.b), and q is staged in that order:
//   scores: TPR = 4 threads per K row (the 64 rows of a chunk at once), each with KPT <= 4 slots of
//     its row, write their partial dots for the GW heads into the row's vec4 in workgroup memory;
//   V: thread (slot, head block of HB heads, row group of RG) takes RPT = 64 / RG rows of each chunk
//     (rows vrg, vrg + RG, ...): it adds up each row's 4 partial dots itself and keeps its own online
//     softmax (running max, sum, 8 dims of sum p v) per head over its rows. The RG row groups' sums,
//     each against its own max, meet in workgroup memory once, at the end of the split, one pass (two
//     barriers) per head of a block. RG = 16, or 32 where the (slot, block) threads number 8.
// So a chunk needs one barrier, between the dots and the V sums; the dots alternate between two halves
// of `sc` (the next chunk's writes come after its barrier, which every thread reaches only after this
// chunk's V sums). Before (a kernel that took each chunk's max over all its rows and shared the
// softmax weights: three barriers and a pass of 8 threads a head per chunk), H100, Llama-3.1-8B shape,
// f16, tok/s at 1 / 4,096 positions: 392-393 / 313-314; now 392-393 / 328-332, and 393 / 338-339 with
// each chunk's V rows loaded during the chunk before (w0..w3; K is loaded a chunk ahead already).
// GW (attention_decode_heads): one head where its V slots fill the 16 row groups (head_dim >= 128),
// else 2 where G is even, else 1. More heads a workgroup read each K and V row fewer times, but each V
// thread keeps a softmax and sums per head, and the split ends in a pass per head. H100, whole-model
// decode, tok/s at 1 / 4,096 positions (`webllm bench`, f16; f32 in parentheses):
//   Llama-3.1-8B (head_dim 128, G 4): GW 1 402.7-402.9 / 341.3-341.6 (394.6-394.7 / 316.3-316.5),
//     GW 2 393.4-393.8 / 339.3-339.4 (386.3-387.0 / 316.0-316.8), GW 4 372 / 314 (368 / 295)
//   Llama-3.2-1B (head_dim 64, G 4): GW 2 1,380-1,384 / 1,184-1,187 (1,362-1,365 / 1,117-1,120),
//     GW 1 1,357-1,358 / 1,157-1,160 (1,269-1,325 / 1,093-1,095)
// Per-thread registers are named variables (k0..k3, v0..v3, w0..w3, a0..a7) behind constant guards,
// not indexed arrays, which GPU compilers may spill (NVIDIA's Vulkan compiler did in the GEMV) and
// lavapipe keeps in memory (1.5x slower here).
// Bindings: 0 step; 1 q [NQ*HD] act; 2 k_cache [capacity, NKV, HD / 2] f16 pairs (position-major); 3 v_cache;
//   4 part_o [SPLITS, NQ, HD] act; 5 part_lse [SPLITS, NQ] f32.
// Grid: x = NKV * WPK, y = 1, z <= SPLITS. Needs HD % 8 == 0, 32 <= HD <= 128, G <= 8 (attention_decode_fits).
{{HEADER}}
{{SPLITS_FN}}
const NQ: u32 = {{NQ}}u;
const NKV: u32 = {{NKV}}u;
const HD: u32 = {{HD}}u;
const SCALE: f32 = {{SCALE}};
const G: u32 = NQ / NKV;                 // query heads per KV head
const GW: u32 = {{GW}}u;                  // of them, heads per workgroup: G, or fewer (WPK workgroups per KV head)
const WPK: u32 = G / GW;
const T: u32 = 256u;
const CH: u32 = 64u;                      // positions per chunk
const NS: u32 = HD / 8u;                  // 8-dim slots per row
const TPR: u32 = 4u;                      // threads per K row: CH * TPR = T
const KPT: u32 = (NS + TPR - 1u) / TPR;   // K slots per thread (<= 4)
const QH: u32 = HD / 4u;                  // vec4s of one head's q
const NHB: u32 = {{NHB}}u;                // head blocks of the V phase (NS * NHB <= 16)
const HB: u32 = GW / NHB;                  // heads per V thread (<= 8)
const RG: u32 = {{RG}}u;                   // row groups of the V phase: rows vrg, vrg + RG, ... of a chunk
const RPT: u32 = CH / RG;                 // rows of a chunk per V thread (2 or 4)
const VT: u32 = NS * NHB * RG;            // threads with V work
const HALVES: u32 = {{HALVES}}u;           // chunks of partial dots in `sc`: 2, or 1 where 2 do not fit
const SC: u32 = max(HALVES * GW * CH, 2u * VT);  // vec4s of `sc`: partial dots, or at the end the V sums
const NEG: f32 = -1e30;

@group(0) @binding(1) var<storage, read> q: array<act>;
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> v_cache: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> part_o: array<act>;
@group(0) @binding(5) var<storage, read_write> part_lse: array<f32>;

// 8 dims of a row as loaded (RAW: 4 f16 pairs), and as f32
struct S8 { a: vec4<f32>, b: vec4<f32> }
// a V thread's online softmax for one head over its rows: sum_j p_j v[j, 8 dims], sum_j p_j, and
// the running max m that p_j = exp(s_j - m) is taken against
struct Acc { a: vec4<f32>, b: vec4<f32>, l: f32, m: f32 }
alias RAW = vec4<u32>;
fn k_raw(i: u32) -> RAW { return k_cache[i]; }  // i: slot index, (position * NKV + kh) * NS + slot
fn v_raw(i: u32) -> RAW { return v_cache[i]; }
fn unpack8(r: RAW) -> S8 {
    return S8(vec4<f32>(unpack2x16float(r.x), unpack2x16float(r.y)), vec4<f32>(unpack2x16float(r.z), unpack2x16float(r.w)));
}

var<workgroup> qs: array<vec4<f32>, GW * QH>;  // q * SCALE of the GW heads
// chunk c's partial dots in half c % 2: [GW][CH] rows, the TPR threads' partials of a row in one vec4;
// at the end, the V threads' sums (two vec4 a thread)
var<workgroup> sc: array<vec4<f32>, SC>;
var<workgroup> lred: array<f32, NHB * RG>;     // softmax sums of the row groups
var<workgroup> mred: array<f32, NHB * RG>;     // and their maxima

// This thread's registers.
var<private> klane: u32;
var<private> k0: RAW;  // K slots klane, klane + 4, ... of this thread's row of the next chunk
var<private> k1: RAW;
var<private> k2: RAW;
var<private> k3: RAW;
var<private> v0: RAW;  // V rows vrg, vrg + RG, ... (RPT of them) of the chunk, at slot vslot
var<private> v1: RAW;
var<private> v2: RAW;
var<private> v3: RAW;
var<private> w0: RAW;  // the same rows of the next chunk, in flight during this one
var<private> w1: RAW;
var<private> w2: RAW;
var<private> w3: RAW;
var<private> pd0: vec4<f32>;  // partial dots of heads 0..3, 4..7
var<private> pd1: vec4<f32>;
var<private> a0: Acc;  // V sums of the HB heads of this thread's block
var<private> a1: Acc;
var<private> a2: Acc;
var<private> a3: Acc;
var<private> a4: Acc;
var<private> a5: Acc;
var<private> a6: Acc;
var<private> a7: Acc;

// K slots of the chunk's row at `pos` (slot index base: the row's first slot + klane)
fn load_k(base: u32) {
    k0 = k_raw(base);
    if (KPT > 1u && klane + 4u < NS) { k1 = k_raw(base + 4u); }
    if (KPT > 2u && klane + 8u < NS) { k2 = k_raw(base + 8u); }
    if (KPT > 3u && klane + 12u < NS) { k3 = k_raw(base + 12u); }
}

// V rows c + vrg, c + vrg + RG, ... (those before b) at this thread's slot, into w0..w3
fn load_v(c: u32, b: u32, vrg: u32, vb: u32) {
    if (c + vrg < b) { w0 = v_raw((c + vrg) * NKV * NS + vb); }
    if (c + vrg + RG < b) { w1 = v_raw((c + vrg + RG) * NKV * NS + vb); }
    if (RPT > 2u && c + vrg + 2u * RG < b) { w2 = v_raw((c + vrg + 2u * RG) * NKV * NS + vb); }
    if (RPT > 2u && c + vrg + 3u * RG < b) { w3 = v_raw((c + vrg + 3u * RG) * NKV * NS + vb); }
}

// q . (8 dims at slot s) for every head, into pd0 / pd1
fn dots(r: RAW, s: u32) {
    let k = unpack8(r);
    let i = 2u * s;
    pd0.x += dot(qs[i], k.a) + dot(qs[i + 1u], k.b);
    if (GW > 1u) { pd0.y += dot(qs[QH + i], k.a) + dot(qs[QH + i + 1u], k.b); }
    if (GW > 2u) { pd0.z += dot(qs[2u * QH + i], k.a) + dot(qs[2u * QH + i + 1u], k.b); }
    if (GW > 3u) { pd0.w += dot(qs[3u * QH + i], k.a) + dot(qs[3u * QH + i + 1u], k.b); }
    if (GW > 4u) { pd1.x += dot(qs[4u * QH + i], k.a) + dot(qs[4u * QH + i + 1u], k.b); }
    if (GW > 5u) { pd1.y += dot(qs[5u * QH + i], k.a) + dot(qs[5u * QH + i + 1u], k.b); }
    if (GW > 6u) { pd1.z += dot(qs[6u * QH + i], k.a) + dot(qs[6u * QH + i + 1u], k.b); }
    if (GW > 7u) { pd1.w += dot(qs[7u * QH + i], k.a) + dot(qs[7u * QH + i + 1u], k.b); }
}

// the chunk's RPT rows of this thread (their V in v0..v3; n: how many are in range, >= 1) into the
// sums of the head whose dots start at sc[base]
fn add_rows(a: ptr<private, Acc>, base: u32, n: u32) {
    let one = vec4<f32>(1.0);
    let s0 = dot(sc[base], one);
    let s1 = select(NEG, dot(sc[base + RG], one), n > 1u);
    var s2 = NEG;
    var s3 = NEG;
    if (RPT > 2u) {
        s2 = select(NEG, dot(sc[base + 2u * RG], one), n > 2u);
        s3 = select(NEG, dot(sc[base + 3u * RG], one), n > 3u);
    }
    let mn = max((*a).m, max(max(s0, s1), max(s2, s3)));
    let al = exp((*a).m - mn);
    let p0 = exp(s0 - mn);
    let p1 = select(0.0, exp(s1 - mn), n > 1u);  // rows out of range: 0 (not exp(0) while m is NEG)
    let x0 = unpack8(v0);
    let x1 = unpack8(v1);
    var sa = (*a).a * al + p0 * x0.a + p1 * x1.a;
    var sb = (*a).b * al + p0 * x0.b + p1 * x1.b;
    var sl = (*a).l * al + (p0 + p1);
    if (RPT > 2u) {
        let p2 = select(0.0, exp(s2 - mn), n > 2u);
        let p3 = select(0.0, exp(s3 - mn), n > 3u);
        let x2 = unpack8(v2);
        let x3 = unpack8(v3);
        sa += p2 * x2.a + p3 * x3.a;
        sb += p2 * x2.b + p3 * x3.b;
        sl += p2 + p3;
    }
    (*a).a = sa;
    (*a).b = sb;
    (*a).l = sl;
    (*a).m = mn;
}

fn acc_of(h: u32) -> Acc {
    switch (h) {
        case 0u: { return a0; }
        case 1u: { return a1; }
        case 2u: { return a2; }
        case 3u: { return a3; }
        case 4u: { return a4; }
        case 5u: { return a5; }
        case 6u: { return a6; }
        default: { return a7; }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let kh = wid.x / WPK;
    let h0 = kh * G + (wid.x % WPK) * GW;  // this workgroup's first query head
    let z = wid.z;
    let sp = kv_splits(step.past);
    if (z >= sp.z) { return; }
    let a = sp.x + z * sp.y;
    let b = min(step.past + 1u, a + sp.y);
    for (var i = lid; i < GW * QH; i += T) {
        // vec4 i of head g = i / QH: half e % 2 of slot e / 2, in the order a slot of K unpacks to
        let e = i % QH;
        let qb = (h0 + i / QH) * HD + 4u * (e / 2u) + 2u * (e % 2u);  // heads h0 .. are consecutive in q
        qs[i] = vec4<f32>(f32(q[qb]), f32(q[qb + HD / 2u]), f32(q[qb + 1u]), f32(q[qb + 1u + HD / 2u])) * SCALE;
    }
    let krow = lid / TPR;
    klane = lid % TPR;
    let vslot = lid % NS;
    let vhb = (lid / NS) % NHB;
    let vrg = lid / (NS * NHB);
    let vlive = lid < VT;
    let vb = kh * NS + vslot;  // slot of V row j: j * NKV * NS + vb
    let empty = Acc(vec4<f32>(0.0), vec4<f32>(0.0), 0.0, NEG);
    a0 = empty; a1 = empty; a2 = empty; a3 = empty; a4 = empty; a5 = empty; a6 = empty; a7 = empty;
    if (a + krow < b) { load_k(((a + krow) * NKV + kh) * NS + klane); }
    if (vlive) { load_v(a, b, vrg, vb); }
    workgroupBarrier();  // qs

    var half = 0u;
    for (var c0 = a; c0 < b; c0 += CH) {
        // this chunk's V rows (loaded during the last one), used after the barrier below; the next
        // chunk's into flight
        v0 = w0;
        v1 = w1;
        v2 = w2;
        v3 = w3;
        if (vlive) { load_v(c0 + CH, b, vrg, vb); }
        // partial dots of this thread's slots of K row krow, into lane klane of the row's vec4
        pd0 = vec4<f32>(0.0);
        pd1 = vec4<f32>(0.0);
        dots(k0, klane);
        if (KPT > 1u && klane + 4u < NS) { dots(k1, klane + 4u); }
        if (KPT > 2u && klane + 8u < NS) { dots(k2, klane + 8u); }
        if (KPT > 3u && klane + 12u < NS) { dots(k3, klane + 12u); }
        let o = half * GW * CH + krow;
        sc[o][klane] = pd0.x;
        if (GW > 1u) { sc[o + CH][klane] = pd0.y; }
        if (GW > 2u) { sc[o + 2u * CH][klane] = pd0.z; }
        if (GW > 3u) { sc[o + 3u * CH][klane] = pd0.w; }
        if (GW > 4u) { sc[o + 4u * CH][klane] = pd1.x; }
        if (GW > 5u) { sc[o + 5u * CH][klane] = pd1.y; }
        if (GW > 6u) { sc[o + 6u * CH][klane] = pd1.z; }
        if (GW > 7u) { sc[o + 7u * CH][klane] = pd1.w; }
        // the next chunk's K rows, in flight during the barrier
        if (c0 + CH + krow < b) { load_k(((c0 + CH + krow) * NKV + kh) * NS + klane); }
        workgroupBarrier();
        // V: each thread's own online softmax over its rows vrg, vrg + RG, ... (the row groups meet at
        // the end). The other half of `sc` is written next only after the next chunk's barrier, which
        // every thread reaches after this phase: one barrier a chunk.
        if (vlive && c0 + vrg < b) {
            let n = (b - c0 - vrg + RG - 1u) / RG;  // rows of this thread in range (>= 1; RPT or more: all)
            let base = half * GW * CH + vhb * HB * CH + vrg;
            add_rows(&a0, base, n);
            if (HB > 1u) { add_rows(&a1, base + CH, n); }
            if (HB > 2u) { add_rows(&a2, base + 2u * CH, n); }
            if (HB > 3u) { add_rows(&a3, base + 3u * CH, n); }
            if (HB > 4u) { add_rows(&a4, base + 4u * CH, n); }
            if (HB > 5u) { add_rows(&a5, base + 5u * CH, n); }
            if (HB > 6u) { add_rows(&a6, base + 6u * CH, n); }
            if (HB > 7u) { add_rows(&a7, base + 7u * CH, n); }
        }
        if (HALVES == 1u) {
            workgroupBarrier();  // the chunk's dots are read before the next chunk writes them
        } else {
            half ^= 1u;
        }
    }
    if (HALVES == 2u) {
        workgroupBarrier();  // the last chunk's dots are read; `sc` takes the V sums
    }

    // the row groups' sums, each against its own max -> o = acc / l and lse, one head of each head
    // block per pass
    for (var h = 0u; h < HB; h++) {
        if (vlive) {
            let ac = acc_of(h);
            sc[2u * lid] = ac.a;
            sc[2u * lid + 1u] = ac.b;
            if (vslot == 0u) {
                lred[vhb * RG + vrg] = ac.l;
                mred[vhb * RG + vrg] = ac.m;
            }
        }
        workgroupBarrier();
        if (lid < NHB * HD) {
            let hb = lid / HD;
            let d = lid % HD;
            let dslot = (d % (HD / 2u)) / 4u;  // dim d's slot, and its place among the slot's 8 (see above)
            let dlane = 2u * (d % 4u) + d / (HD / 2u);
            var mm = NEG;
            for (var r = 0u; r < RG; r++) { mm = max(mm, mred[hb * RG + r]); }
            var sum = 0.0;
            var l = 0.0;
            for (var r = 0u; r < RG; r++) {
                let e = exp(mred[hb * RG + r] - mm);  // a row group with no rows in range: l = 0, sums 0
                sum += sc[2u * ((r * NHB + hb) * NS + dslot) + dlane / 4u][dlane % 4u] * e;
                l += lred[hb * RG + r] * e;
            }
            let g = hb * HB + h;
            let head = h0 + g;
            part_o[(z * NQ + head) * HD + d] = act(sum / l);
            if (d == 0u) { part_lse[z * NQ + head] = mm + log(l); }
        }
        workgroupBarrier();
    }
}
