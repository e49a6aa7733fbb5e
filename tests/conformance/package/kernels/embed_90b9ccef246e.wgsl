// Embedding gather: h[t, :] = E[token_ids[t] - ID0, :] for this part's ids ID0 <= id < ID0 + N_ROWS
// (a vocabulary split over binding limits is gathered by one dispatch per part).
// Bindings: 0 step; 1 token_ids [T] u32; 2 h [T, H] f32 (vec4); 3.. table arrays of format q4s.
// Grid: x = ceil(H / 32 / 64) (one group of 32 values per thread), y = T.
// Shared prelude of every kernel. `act` is the activation storage type of the device profile
// (f32, or f16 with shader-f16); arithmetic is always done in f32.

alias act = f32;

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

const H: u32 = 64u;
const w_KG: u32 = H / 32u;
const ID0: u32 = 0u;
const N_ROWS: u32 = 256u;

@group(0) @binding(1) var<storage, read> token_ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> h: array<vec4<f32>>;
// Weight format q4s: symmetric 4-bit, group 32. q [N, K/32] vec4<u32> (nibble i of word j = element
// 8j+i of the group); scales [N*K/32] (f16 pairs in u32). W[n, k] = (nibble - 8) * scale[n*K/32 + k/32].
@group(0) @binding(3) var<storage, read> w_q: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> w_s: array<u32>;

fn w_scale(i: u32) -> f32 { let p = unpack2x16float(w_s[i >> 1u]); return select(p.x, p.y, (i & 1u) == 1u); }

// Prefill (matmul_tiled): a group's words fetched ahead, dequantized a half (16) at a time when staged.
// Nibble n as the f32 1 + n/16 (mant_lo/hi): (n - 8) s = (1 + n/16) 16 s - 24 s, no int-to-float.
struct w_Raw { q: vec4<u32>, s: f32 }

fn w_fetch(row: u32, g: u32) -> w_Raw {
    let i = row * w_KG + g;
    return w_Raw(w_q[i], w_scale(i));
}

fn w_half(r: w_Raw, h: u32) -> mat4x4<f32> {
    let a = select(r.q.x, r.q.z, h == 1u);
    let b = select(r.q.y, r.q.w, h == 1u);
    let s = vec4<f32>(16.0 * r.s);
    let o = vec4<f32>(-24.0 * r.s);
    return mat4x4<f32>(fma(mant_lo(a), s, o), fma(mant_hi(a), s, o), fma(mant_lo(b), s, o), fma(mant_hi(b), s, o));
}

fn w_load_group(row: u32, g: u32) -> array<vec4<f32>, 8> {
    let i = row * w_KG + g;
    let q = w_q[i];
    let s = w_scale(i);
    var o: array<vec4<f32>, 8>;
    for (var j = 0u; j < 4u; j++) {
        let w = q[j];
        o[2u * j] = (nib_lo(w) - 8.0) * s;
        o[2u * j + 1u] = (nib_hi(w) - 8.0) * s;
    }
    return o;
}

// sum_k W[row, k] x[k] over group g (decode): sum (n - 8) x * scale = (16 sum (1 + n/16) x - 24 sum x) * scale,
// with the nibbles as 1 + n/16 (mant_lo/hi, header.wgsl)
fn w_dot(row: u32, g: u32, x: X8) -> f32 {
    let i = row * w_KG + g;
    let q = w_q[i];
    let m = dot(mant_lo(q.x), x.v0) + dot(mant_hi(q.x), x.v1) + dot(mant_lo(q.y), x.v2) + dot(mant_hi(q.y), x.v3)
          + dot(mant_lo(q.z), x.v4) + dot(mant_hi(q.z), x.v5) + dot(mant_lo(q.w), x.v6) + dot(mant_hi(q.w), x.v7);
    return (16.0 * m - 24.0 * x.sum) * w_scale(i);
}


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
