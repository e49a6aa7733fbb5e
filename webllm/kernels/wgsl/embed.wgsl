// Embedding gather: h[t, :] = E[token_ids[t] - ID0, :] for this part's ids ID0 <= id < ID0 + N_ROWS
// (a vocabulary split over binding limits is gathered by one dispatch per part).
// Bindings: 0 step; 1 token_ids [T] u32; 2 h [T, H] f32 (vec4); 3.. table arrays of format {{FORMAT}}.
// Grid: x = ceil(H / 32 / 64) (one group of 32 values per thread), y = T.
{{HEADER}}
const H: u32 = {{K}}u;
const w_KG: u32 = H / 32u;
const ID0: u32 = {{ROW0}}u;
const N_ROWS: u32 = {{N_ROWS}}u;

@group(0) @binding(1) var<storage, read> token_ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> h: array<vec4<f32>>;
{{WEIGHTS}}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wid.y;
    let g = wid.x * 64u + lid;
    if (t >= step.n_tokens || g >= w_KG) { return; }
    let id = token_ids[t];
    if (id < ID0 || id >= ID0 + N_ROWS) { return; }
    let w = w_load_group(id - ID0, g);
    for (var i = 0u; i < 8u; i++) {
        h[t * (H / 4u) + g * 8u + i] = w[i];
    }
}
