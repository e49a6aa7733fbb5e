// Decode attention (one token), flash-decoding: one workgroup per (KV head kh, split z) covers the
// SPLIT cache positions [z*SPLIT, (z+1)*SPLIT) for all G = NQ/NKV query heads that share kh, so each
// K and V row is read once per step (not once per query head):
//   s[g, j] = q[kh*G + g, :] . k[j, kh, :] * SCALE            one thread per (g, j)
//   m[g] = max_j s, l[g] = sum_j exp(s - m)                    trees in workgroup memory
//   acc[g, :] = sum_j exp(s[g, j] - m[g]) v[j, kh, :]          thread (d, part): dims d, a share of j
// and writes the unnormalized partial (acc, m, l) for attention_combine.wgsl. Positions outside
// [max(0, p + 1 - WINDOW), p] (p = step.past; WINDOW 0: no window) do not count.
// Bindings: 0 step; 1 q [NQ*HD] act; 2 k_cache [capacity, NKV, HD] act (position-major); 3 v_cache;
//   4 part_acc [splits, NQ, HD] f32; 5 part_ml [splits, NQ] vec2<f32>.
// Grid: x = NKV, y = 1, z = ceil((past + 1) / SPLIT). Needs HD dividing 256.
{{HEADER}}
const NQ: u32 = {{NQ}}u;
const NKV: u32 = {{NKV}}u;
const HD: u32 = {{HD}}u;
const WINDOW: u32 = {{WINDOW}}u;
const SCALE: f32 = {{SCALE}};
const SPLIT: u32 = {{SPLIT}}u;  // a power of two
const G: u32 = NQ / NKV;
const T: u32 = 256u;
const PARTS: u32 = T / HD;      // threads sharing one output dim, each over SPLIT / PARTS positions
const NEG: f32 = -1e30;

@group(0) @binding(1) var<storage, read> q: array<act>;
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<act>>;
@group(0) @binding(3) var<storage, read> v_cache: array<act>;
@group(0) @binding(4) var<storage, read_write> part_acc: array<f32>;
@group(0) @binding(5) var<storage, read_write> part_ml: array<vec2<f32>>;

var<workgroup> qs: array<vec4<f32>, G * HD / 4u>;
var<workgroup> ps: array<f32, G * SPLIT>;    // scores, then exp(s - m)
var<workgroup> red: array<f32, G * SPLIT>;   // max / sum trees
var<workgroup> accs: array<f32, G * T>;      // V partial sums of the PARTS threads of each dim

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let kh = wid.x;
    let z = wid.z;
    let p = step.past;
    var start = 0u;
    if (WINDOW > 0u && p + 1u > WINDOW) { start = p + 1u - WINDOW; }
    let j0 = z * SPLIT;
    let end = min(p + 1u, j0 + SPLIT);
    for (var i = lid; i < G * HD / 4u; i += T) {
        let b = kh * G * HD + 4u * i;  // heads kh*G .. kh*G + G - 1 are consecutive in q
        qs[i] = vec4<f32>(f32(q[b]), f32(q[b + 1u]), f32(q[b + 2u]), f32(q[b + 3u])) * SCALE;
    }
    workgroupBarrier();
    for (var i = lid; i < G * SPLIT; i += T) {
        let g = i / SPLIT;
        let j = j0 + i % SPLIT;
        var s = NEG;
        if (j >= start && j < end) {
            s = 0.0;
            let kb = (j * NKV + kh) * (HD / 4u);
            let qb = g * (HD / 4u);
            for (var d = 0u; d < HD / 4u; d++) {
                s += dot(qs[qb + d], vec4<f32>(k_cache[kb + d]));
            }
        }
        ps[i] = s;
        red[i] = s;
    }
    workgroupBarrier();
    for (var w = SPLIT / 2u; w > 0u; w >>= 1u) {
        for (var i = lid; i < G * SPLIT; i += T) {
            if (i % SPLIT < w) { red[i] = max(red[i], red[i + w]); }
        }
        workgroupBarrier();
    }
    for (var i = lid; i < G * SPLIT; i += T) {
        let m = red[(i / SPLIT) * SPLIT];
        var e = 0.0;
        if (ps[i] > NEG) { e = exp(ps[i] - m); }
        ps[i] = e;
    }
    workgroupBarrier();
    // the max is needed below: keep it in a register before the sum tree reuses `red`
    var m_own = NEG;
    if (lid < G) { m_own = red[lid * SPLIT]; }
    workgroupBarrier();
    for (var i = lid; i < G * SPLIT; i += T) { red[i] = ps[i]; }
    workgroupBarrier();
    for (var w = SPLIT / 2u; w > 0u; w >>= 1u) {
        for (var i = lid; i < G * SPLIT; i += T) {
            if (i % SPLIT < w) { red[i] += red[i + w]; }
        }
        workgroupBarrier();
    }
    // V: thread (d, part) sums positions part, part + PARTS, ... for every head of the group
    let d = lid % HD;
    let part = lid / HD;
    var acc: array<f32, G>;
    for (var jj = part; jj < SPLIT; jj += PARTS) {
        let j = j0 + jj;
        if (j >= end) { break; }
        let v = f32(v_cache[(j * NKV + kh) * HD + d]);
        for (var g = 0u; g < G; g++) { acc[g] += ps[g * SPLIT + jj] * v; }
    }
    for (var g = 0u; g < G; g++) { accs[g * T + lid] = acc[g]; }
    workgroupBarrier();
    if (part == 0u) {
        for (var g = 0u; g < G; g++) {
            var a = 0.0;
            for (var r = 0u; r < PARTS; r++) { a += accs[g * T + r * HD + d]; }
            part_acc[(z * NQ + kh * G + g) * HD + d] = a;
        }
    }
    if (lid < G) { part_ml[z * NQ + kh * G + lid] = vec2<f32>(m_own, red[lid * SPLIT]); }
}
