// Rope epilogue of the qkv matmul (ROPE). The package orders each head's rows in rope pairs: rows
// 2i, 2i + 1 of head h are its dims i and i + HD/2. Given both values (a, b) of token t at position
// p: query heads write rope(a, b) to q_out; key heads append rope(a, b) to k_cache; value heads append
// (a, b) to v_cache. rope (HF rotate_half): (a cos - b sin, b cos + a sin), (cos, sin) = rope_table[p, i].
// The KV cache holds f16 in both profiles (half the bytes of f32 for the f32 profile, which has no f16
// type): a row of a head is HD/2 words, word i the f16 pair (dim i, dim i + HD/2), the pair this
// thread has; readers unpack it with unpack2x16float.
const NQ: u32 = {{NQ}}u;
const NKV: u32 = {{NKV}}u;
const HD: u32 = {{HD}}u;
const HALF: u32 = HD / 2u;

@group(0) @binding({{B}}) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding({{B1}}) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding({{B2}}) var<storage, read> rope_table: array<vec2<f32>>;

fn rope_store(t: u32, p: u32, pair_row: u32, a: f32, b: f32) {
    let head = pair_row / HD;
    let i = (pair_row % HD) / 2u;
    if (head < NQ + NKV) {
        let cs = rope_table[p * HALF + i];
        let ra = a * cs.x - b * cs.y;
        let rb = b * cs.x + a * cs.y;
        if (head < NQ) {
            let dst = (t * NQ + head) * HD;
            y[dst + i] = act(ra);
            y[dst + i + HALF] = act(rb);
        } else {
            k_cache[(p * NKV + head - NQ) * HALF + i] = pack2x16float(vec2<f32>(ra, rb));  // position-major
        }
    } else {
        v_cache[(p * NKV + head - NQ - NKV) * HALF + i] = pack2x16float(vec2<f32>(a, b));
    }
}
