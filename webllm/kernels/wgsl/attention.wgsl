// Causal attention of the step's tokens over the KV cache (GQA), one workgroup per (head, token):
//   out[t, h, :] = sum_j softmax_j(q[t, h, :] . k[j, kh, :] * SCALE) v[j, kh, :],  kh = h / (NQ/NKV)
//   over cache positions j in [max(0, p + 1 - WINDOW), p] where p = step.past + t (WINDOW 0: no window).
// Online softmax over blocks of 64 positions: thread j scores position j0 + j, then every thread
// accumulates its own output dims d = lid, lid + 64, ... over the block.
// DECODE (one token, flash-decoding; the fallback of attention_decode.wgsl): workgroup z covers only
// split z of the KV range (attention_splits.wgsl) and writes its partial, o = acc / l in the
// activation type and lse = m + log(l), which the o matmul combines (gemv.wgsl COMBINE_IN).
// The cache holds f16 pairs (rope_store.wgsl): word i of a row is (dim i, dim i + HD/2).
// Bindings: 0 step; 1 q [T, NQ*HD] act; 2 k_cache [capacity, NKV, HD / 2] f16 pairs (position-major); 3 v_cache; then
//   prefill: 4 out [T, NQ*HD] act;  DECODE: 4 part_o [SPLITS, NQ, HD] act, 5 part_lse [SPLITS, NQ] f32.
// Grid: x = NQ, y = T, z = 1 (DECODE: T = 1, z = SPLITS).
{{HEADER}}
const NQ: u32 = {{NQ}}u;
const NKV: u32 = {{NKV}}u;
const HD: u32 = {{HD}}u;
const WINDOW: u32 = {{WINDOW}}u;
const SCALE: f32 = {{SCALE}};
const DPT: u32 = (HD + 63u) / 64u;  // output dims per thread
const HALF: u32 = HD / 2u;  // words of a K or V row
const DECODE: bool = {{DECODE}};
{{SPLITS_FN}}

@group(0) @binding(1) var<storage, read> q: array<act>;
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;
{{OUT_DECL}}

var<workgroup> qs: array<f32, HD>;
var<workgroup> ps: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let kh = h / (NQ / NKV);
    let p = step.past + t;
    let kv_len = p + 1u;
    var start = 0u;
    if (WINDOW > 0u && kv_len > WINDOW) { start = kv_len - WINDOW; }
    var end = kv_len;
    if (DECODE) {
        let sp = kv_splits(p);
        if (wid.z >= sp.z) { return; }
        start = sp.x + wid.z * sp.y;
        end = min(end, start + sp.y);
    }
    let qbase = t * NQ * HD + h * HD;
    for (var d = lid; d < HD; d += 64u) {
        qs[d] = f32(q[qbase + d]) * SCALE;
    }
    workgroupBarrier();

    let cache = kh * HALF;  // K/V of position j, head kh: (j * NKV + kh) * HALF
    var m = -1e30;
    var l = 0.0;
    var acc: array<f32, DPT>;
    for (var j0 = start; j0 < end; j0 += 64u) {
        let j = j0 + lid;
        var s = -1e30;
        if (j < end) {
            s = 0.0;
            let kb = cache + j * NKV * HALF;
            for (var i = 0u; i < HALF; i++) {
                let k = unpack2x16float(k_cache[kb + i]);
                s += qs[i] * k.x + qs[i + HALF] * k.y;
            }
        }
        ps[lid] = s;
        workgroupBarrier();
        var bm = -1e30;
        for (var i = 0u; i < 64u; i++) { bm = max(bm, ps[i]); }
        let nm = max(m, bm);
        workgroupBarrier();
        ps[lid] = exp(s - nm);
        workgroupBarrier();
        let alpha = exp(m - nm);
        var bl = 0.0;
        for (var i = 0u; i < 64u; i++) { bl += ps[i]; }
        l = l * alpha + bl;
        let n = min(64u, end - j0);
        for (var e = 0u; e < DPT; e++) {
            let d = lid + 64u * e;
            if (d < HD) {
                var a = acc[e] * alpha;
                let vb = cache + d % HALF;
                for (var i = 0u; i < n; i++) {
                    let v = unpack2x16float(v_cache[vb + (j0 + i) * NKV * HALF]);
                    a += ps[i] * select(v.x, v.y, d >= HALF);
                }
                acc[e] = a;
            }
        }
        m = nm;
        workgroupBarrier();
    }
{{WRITE_OUT}}
}
