// Greedy sampling on the GPU: token_ids[0] = argmax_v logits[v] (the first index among equal maxima,
// as torch.argmax). The id stays on the GPU as the next decode step's input.
// Bindings: 0 step; 1 logits [V] f32; 2 token_ids [CHUNK] u32.  Grid: one workgroup of 256.
{{HEADER}}
const V: u32 = {{V}}u;

@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> token_ids: array<u32>;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    var bv = -3.4e38;
    var bi = 0xffffffffu;
    for (var v = lid; v < V; v += 256u) {
        let x = logits[v];
        if (x > bv) { bv = x; bi = v; }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let ov = best_v[lid + s];
            let oi = best_i[lid + s];
            if (ov > best_v[lid] || (ov == best_v[lid] && oi < best_i[lid])) {
                best_v[lid] = ov;
                best_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) { token_ids[0] = min(best_i[0], V - 1u); }
}
