// Rotary embedding and KV-cache append, for the step's tokens (position p = step.past + t):
//   q_out[t, h, :] = rope(qkv[t, h, :], p)                        for query heads h < NQ
//   k_cache[kh, p, :] = rope(qkv[t, NQ + kh, :], p);  v_cache[kh, p, :] = qkv[t, NQ + NKV + kh, :]
// rope (HF rotate_half convention): out[i] = a*cos - b*sin, out[i + HD/2] = b*cos + a*sin with
// a = x[i], b = x[i + HD/2], (cos, sin) = rope_table[p, i], computed by the compiler in f32.
// Bindings: 0 step; 1 qkv [T, (NQ+2*NKV)*HD] act; 2 q_out [T, NQ*HD] act; 3 k_cache [NKV, CAP, HD] act;
//           4 v_cache (same); 5 rope_table [CAP, HD/2] vec2<f32>.
// Grid: x = ceil((NQ + 2*NKV) * HD/2 / 64), y = T.
{{HEADER}}
const NQ: u32 = {{NQ}}u;
const NKV: u32 = {{NKV}}u;
const HD: u32 = {{HD}}u;
const HALF: u32 = HD / 2u;
const CAP: u32 = {{CAP}}u;
const QKV: u32 = (NQ + 2u * NKV) * HD;

@group(0) @binding(1) var<storage, read> qkv: array<act>;
@group(0) @binding(2) var<storage, read_write> q_out: array<act>;
@group(0) @binding(3) var<storage, read_write> k_cache: array<act>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<act>;
@group(0) @binding(5) var<storage, read> rope_table: array<vec2<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wid.y;
    let idx = wid.x * 64u + lid;
    if (idx >= (NQ + 2u * NKV) * HALF || t >= step.n_tokens) { return; }
    let head = idx / HALF;
    let i = idx % HALF;
    let p = step.past + t;
    let src = t * QKV + head * HD;
    let a = f32(qkv[src + i]);
    let b = f32(qkv[src + i + HALF]);
    if (head < NQ + NKV) {
        let cs = rope_table[p * HALF + i];
        let ra = a * cs.x - b * cs.y;
        let rb = b * cs.x + a * cs.y;
        if (head < NQ) {
            let dst = t * NQ * HD + head * HD;
            q_out[dst + i] = act(ra);
            q_out[dst + i + HALF] = act(rb);
        } else {
            let dst = ((head - NQ) * CAP + p) * HD;
            k_cache[dst + i] = act(ra);
            k_cache[dst + i + HALF] = act(rb);
        }
    } else {
        let dst = ((head - NQ - NKV) * CAP + p) * HD;
        v_cache[dst + i] = act(a);
        v_cache[dst + i + HALF] = act(b);
    }
}
