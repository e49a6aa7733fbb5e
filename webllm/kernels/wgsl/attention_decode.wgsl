// Decode attention (one token), flash-decoding: one workgroup per (KV head kh, block of GW query
// heads, split z) covers the positions [a, b) of split z (attention_splits.wgsl: at most SPLITS
// splits, each a multiple of 64 positions long) for GW of the G = NQ/NKV query heads that share kh
// (WPK = G / GW workgroups per KV head read the same K and V rows, mostly from L2):
//   s[g, j] = q[kh*G + g, :] . k[j, kh, :] * SCALE
//   m[g] = max_j s,  l[g] = sum_j exp(s - m),  o[g, :] = sum_j exp(s[g, j] - m[g]) v[j, kh, :] / l[g]
// with an online softmax over chunks of CH = 64 positions, and writes the split's partial: o in the
// activation type and lse = m + log(l) in f32. The o matmul combines the splits while it loads its
// input (gemv.wgsl COMBINE_IN): out = sum_z o_z exp(lse_z - LSE), LSE = log sum_z exp(lse_z).
// K and V rows are read in slots of 8 dims (one 16-byte load in f16, two in f32), NS = HD / 8 a row:
//   scores: TPR = 4 threads per K row (the 64 rows of a chunk at once), each with KPT <= 4 slots of
//     its row; their partial dots for the GW heads meet in workgroup memory, where thread (g, block of
//     8 rows) adds them up;
//   V: thread (slot, head block of HB heads, row group of 16) accumulates 8 dims of its HB heads over 4
//     rows of each chunk; the 16 row groups' sums meet in workgroup memory once, at the end of the split,
//     one pass (two barriers) per head of a block.
// GW (attention_decode_heads): 2 where G is even, else 1. All G heads in one workgroup (each K and V
// row read once) cost a pass per head at the end of every split, a chain that dominates at short
// context; one head a workgroup has G workgroups read each row. H100, decode step of the whole
// Llama-3.1-8B shape (f16, the tuned split count; attention per layer, then the step's wall time):
//   GW 4 (all): 17.7 us, 3.12 ms at one position; 29.9 us, 3.90 ms at 4,096
//   GW 2:       12.5 us, 3.05 ms;                 25.8 us, 3.72 ms
//   GW 1:       10.3 us, 3.03 ms;                 34.2 us, 3.87 ms (29.3 us with 32 splits, 3.98 ms)
// Llama-3.2-1B shape (16 layers, head_dim 64): GW 4 11.6 / 21.8 us at 1 / 4,096 positions, GW 2 9.0 /
// 16.8, GW 1 9.1 / 22.2 (half its V threads idle). SmolLM2-135M shape (G = 3): GW 1 893-933 tok/s
// against 874-876 with GW 3, 732-735 against 689 at 4,096.
// The next chunk's K and this chunk's V are loaded into registers before the chunk's barriers, so their
// latency overlaps the softmax; three barriers per chunk. Per-thread registers are named variables
// (k0..k3, v0..v3, a0..a7) behind constant guards, not indexed arrays, which GPU compilers may spill
// (NVIDIA's Vulkan compiler did in the GEMV) and lavapipe keeps in memory (1.5x slower here).
// Bindings: 0 step; 1 q [NQ*HD] act; 2 k_cache [capacity, NKV, HD] act (position-major); 3 v_cache;
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
const RG: u32 = 16u;                      // row groups of the V phase: rows vrg, vrg + 16, ... of a chunk
const VT: u32 = NS * NHB * RG;            // threads with V work
const NEG: f32 = -1e30;

@group(0) @binding(1) var<storage, read> q: array<act>;
@group(0) @binding(2) var<storage, read> k_cache: array<{{KV_ELEM}}>;
@group(0) @binding(3) var<storage, read> v_cache: array<{{KV_ELEM}}>;
@group(0) @binding(4) var<storage, read_write> part_o: array<act>;
@group(0) @binding(5) var<storage, read_write> part_lse: array<f32>;

// 8 dims of a row as loaded (RAW: f16 pairs in a vec4<u32>, or two vec4<f32>), and as f32
struct S8 { a: vec4<f32>, b: vec4<f32> }
// a V thread's running sums for one head: sum_j p_j v[j, 8 dims] and sum_j p_j
struct Acc { a: vec4<f32>, b: vec4<f32>, l: f32 }
alias RAW = {{RAW}};
fn k_raw(i: u32) -> RAW { {{K_LOAD}} }  // i: slot index, (position * NKV + kh) * NS + slot
fn v_raw(i: u32) -> RAW { {{V_LOAD}} }
fn unpack8(r: RAW) -> S8 { {{UNPACK}} }

var<workgroup> qs: array<vec4<f32>, GW * QH>;  // q * SCALE of the GW heads
var<workgroup> scratch: array<f32, 2048>;     // partial dots [GW][CH][TPR]; at the end, V sums
var<workgroup> ps: array<f32, GW * CH>;        // the chunk's scores, then its softmax weights
var<workgroup> mx: array<f32, GW * 8u>;        // maxima of 8-row blocks
var<workgroup> alpha: array<f32, GW>;          // exp(m_old - m_new): rescales the running sums
var<workgroup> mrun: array<f32, GW>;           // running max
var<workgroup> lred: array<f32, NHB * RG>;    // softmax sums of the row groups

// This thread's registers.
var<private> klane: u32;
var<private> k0: RAW;  // K slots klane, klane + 4, ... of this thread's row of the next chunk
var<private> k1: RAW;
var<private> k2: RAW;
var<private> k3: RAW;
var<private> v0: RAW;  // V rows vrg, vrg + 16, vrg + 32, vrg + 48 of the chunk, at slot vslot
var<private> v1: RAW;
var<private> v2: RAW;
var<private> v3: RAW;
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

fn scale_acc(a: ptr<private, Acc>, h: u32, hb: u32) {
    let al = alpha[hb * HB + h];
    (*a).a *= al;
    (*a).b *= al;
    (*a).l *= al;
}

// one V row (raw r, chunk row `row`) into the sums of the HB heads of block hb
fn add_row(r: RAW, row: u32, hb: u32) {
    let v = unpack8(r);
    let pb = hb * HB * CH + row;
    add_to(&a0, ps[pb], v);
    if (HB > 1u) { add_to(&a1, ps[pb + CH], v); }
    if (HB > 2u) { add_to(&a2, ps[pb + 2u * CH], v); }
    if (HB > 3u) { add_to(&a3, ps[pb + 3u * CH], v); }
    if (HB > 4u) { add_to(&a4, ps[pb + 4u * CH], v); }
    if (HB > 5u) { add_to(&a5, ps[pb + 5u * CH], v); }
    if (HB > 6u) { add_to(&a6, ps[pb + 6u * CH], v); }
    if (HB > 7u) { add_to(&a7, ps[pb + 7u * CH], v); }
}

fn add_to(a: ptr<private, Acc>, p: f32, v: S8) {
    (*a).a += p * v.a;
    (*a).b += p * v.b;
    (*a).l += p;
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
        let qb = h0 * HD + 4u * i;  // heads h0 .. h0 + GW - 1 are consecutive in q
        qs[i] = vec4<f32>(f32(q[qb]), f32(q[qb + 1u]), f32(q[qb + 2u]), f32(q[qb + 3u])) * SCALE;
    }
    let krow = lid / TPR;
    klane = lid % TPR;
    let vslot = lid % NS;
    let vhb = (lid / NS) % NHB;
    let vrg = lid / (NS * NHB);
    let vlive = lid < VT;
    let vb = kh * NS + vslot;  // slot of V row j: j * NKV * NS + vb
    let ib = min(lid, GW * CH - 1u);  // this thread's softmax weights: ib, and lid + T when GW > 4
    var m0 = NEG;
    var m1 = NEG;
    if (a + krow < b) { load_k(((a + krow) * NKV + kh) * NS + klane); }
    workgroupBarrier();  // qs

    for (var c0 = a; c0 < b; c0 += CH) {
        // this chunk's V rows, used after the softmax below
        if (vlive) {
            if (c0 + vrg < b) { v0 = v_raw((c0 + vrg) * NKV * NS + vb); }
            if (c0 + vrg + 16u < b) { v1 = v_raw((c0 + vrg + 16u) * NKV * NS + vb); }
            if (c0 + vrg + 32u < b) { v2 = v_raw((c0 + vrg + 32u) * NKV * NS + vb); }
            if (c0 + vrg + 48u < b) { v3 = v_raw((c0 + vrg + 48u) * NKV * NS + vb); }
        }
        // partial dots of this thread's slots of K row krow
        pd0 = vec4<f32>(0.0);
        pd1 = vec4<f32>(0.0);
        dots(k0, klane);
        if (KPT > 1u && klane + 4u < NS) { dots(k1, klane + 4u); }
        if (KPT > 2u && klane + 8u < NS) { dots(k2, klane + 8u); }
        if (KPT > 3u && klane + 12u < NS) { dots(k3, klane + 12u); }
        scratch[lid] = pd0.x;
        if (GW > 1u) { scratch[T + lid] = pd0.y; }
        if (GW > 2u) { scratch[2u * T + lid] = pd0.z; }
        if (GW > 3u) { scratch[3u * T + lid] = pd0.w; }
        if (GW > 4u) { scratch[4u * T + lid] = pd1.x; }
        if (GW > 5u) { scratch[5u * T + lid] = pd1.y; }
        if (GW > 6u) { scratch[6u * T + lid] = pd1.z; }
        if (GW > 7u) { scratch[7u * T + lid] = pd1.w; }
        // the next chunk's K rows, in flight during the barriers
        if (c0 + CH + krow < b) { load_k(((c0 + CH + krow) * NKV + kh) * NS + klane); }
        workgroupBarrier();
        // scores: thread (g, block of 8 rows)
        if (lid < GW * 8u) {
            let g = lid / 8u;
            let r0 = (lid % 8u) * 8u;
            var bm = NEG;
            for (var r = r0; r < r0 + 8u; r++) {
                var s = NEG;
                if (c0 + r < b) {
                    let o = g * T + r * TPR;
                    s = (scratch[o] + scratch[o + 1u]) + (scratch[o + 2u] + scratch[o + 3u]);
                }
                ps[g * CH + r] = s;
                bm = max(bm, s);
            }
            mx[lid] = bm;
        }
        workgroupBarrier();
        // softmax weights against the new running max (every thread of head g computes the same max)
        if (lid < GW * CH) {
            let g = ib / CH;
            var cm = mx[g * 8u];
            for (var e = 1u; e < 8u; e++) { cm = max(cm, mx[g * 8u + e]); }
            let mn = max(m0, cm);
            ps[ib] = exp(ps[ib] - mn);  // masked rows: exp(-1e30 - mn) = 0
            if (ib % CH == 0u) {
                alpha[g] = exp(m0 - mn);
                mrun[g] = mn;
            }
            m0 = mn;
        }
        if (GW > 4u && lid + T < GW * CH) {  // GW * CH > T: a second weight per thread
            let i = lid + T;
            let g = i / CH;
            var cm = mx[g * 8u];
            for (var e = 1u; e < 8u; e++) { cm = max(cm, mx[g * 8u + e]); }
            let mn = max(m1, cm);
            ps[i] = exp(ps[i] - mn);
            if (i % CH == 0u) {
                alpha[g] = exp(m1 - mn);
                mrun[g] = mn;
            }
            m1 = mn;
        }
        workgroupBarrier();
        // V: rescale the running sums, add this chunk's rows
        if (vlive) {
            scale_acc(&a0, 0u, vhb);
            if (HB > 1u) { scale_acc(&a1, 1u, vhb); }
            if (HB > 2u) { scale_acc(&a2, 2u, vhb); }
            if (HB > 3u) { scale_acc(&a3, 3u, vhb); }
            if (HB > 4u) { scale_acc(&a4, 4u, vhb); }
            if (HB > 5u) { scale_acc(&a5, 5u, vhb); }
            if (HB > 6u) { scale_acc(&a6, 6u, vhb); }
            if (HB > 7u) { scale_acc(&a7, 7u, vhb); }
            if (c0 + vrg < b) { add_row(v0, vrg, vhb); }
            if (c0 + vrg + 16u < b) { add_row(v1, vrg + 16u, vhb); }
            if (c0 + vrg + 32u < b) { add_row(v2, vrg + 32u, vhb); }
            if (c0 + vrg + 48u < b) { add_row(v3, vrg + 48u, vhb); }
        }
        // No barrier needed here: the next writes of scratch, ps, alpha come after the next
        // chunk's first barrier, which every thread reaches only after this V phase.
    }

    // the row groups' sums -> o = acc / l and lse, one head of each head block per pass
    for (var h = 0u; h < HB; h++) {
        if (vlive) {
            let ac = acc_of(h);
            let o = lid * 8u;
            scratch[o] = ac.a.x;
            scratch[o + 1u] = ac.a.y;
            scratch[o + 2u] = ac.a.z;
            scratch[o + 3u] = ac.a.w;
            scratch[o + 4u] = ac.b.x;
            scratch[o + 5u] = ac.b.y;
            scratch[o + 6u] = ac.b.z;
            scratch[o + 7u] = ac.b.w;
            if (vslot == 0u) { lred[vhb * RG + vrg] = ac.l; }
        }
        workgroupBarrier();
        if (lid < NHB * HD) {
            let hb = lid / HD;
            let d = lid % HD;
            var sum = 0.0;
            var l = 0.0;
            for (var r = 0u; r < RG; r++) {
                sum += scratch[((r * NHB + hb) * NS + d / 8u) * 8u + d % 8u];
                l += lred[hb * RG + r];
            }
            let g = hb * HB + h;
            let head = h0 + g;
            part_o[(z * NQ + head) * HD + d] = act(sum / l);
            if (d == 0u) { part_lse[z * NQ + head] = mrun[g] + log(l); }
        }
        workgroupBarrier();
    }
}
